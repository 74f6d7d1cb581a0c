import fs from "node:fs";
import path from "node:path";

/**
 * What runs after the build in package.json `prepare`, which npm runs at `npm ci` and before `npm pack`
 * makes its tarball (prepack → prepare → pack), so the tarball holds the node as
 * built from these sources and nothing else:
 * - drops compiled files under dist/node/ whose source is gone (tsc's incremental build leaves them);
 * - writes the ABI of each contract (and its interfaces) to `dist/abi/<Name>.json` from hardhat's
 *   artifacts: a wallet, an explorer or a relayer reads them without Solidity or hardhat. The node
 *   itself needs none of them: its typechain bindings carry their ABIs.
 */
const ROOT = path.resolve(__dirname, "..");
const ARTIFACTS = path.join(ROOT, "artifacts", "contracts");
const OUT = path.join(ROOT, "dist", "abi");

function artifacts(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    // contracts/test/ holds test doubles (a token that returns false, one that re-enters): not shipped.
    if (e.isDirectory()) return e.name === "test" ? [] : artifacts(p);
    return e.name.endsWith(".json") && !e.name.endsWith(".dbg.json") ? [p] : [];
  });
}

/** Compiled .js under dist/node/ (and its source maps) whose .ts under node/ no longer exists. */
function pruneStale(dir = path.join(ROOT, "dist", "node")): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return pruneStale(p);
    const source = path.join(ROOT, path.relative(path.join(ROOT, "dist"), p)).replace(/\.js(\.map)?$|\.d\.ts$/, ".ts");
    if (!/\.(js|js\.map|d\.ts)$/.test(e.name) || fs.existsSync(source)) return [];
    fs.rmSync(p);
    return [path.relative(ROOT, p)];
  });
}

function main(): void {
  const stale = pruneStale();
  if (stale.length) console.log(`prepack: removed ${stale.length} compiled file(s) without a source: ${stale.join(", ")}`);
  if (!fs.existsSync(ARTIFACTS)) throw new Error(`no ${path.relative(ROOT, ARTIFACTS)}: run \`npx hardhat compile\` first`);
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  const written = artifacts(ARTIFACTS).map((file) => {
    const { contractName, sourceName, abi } = JSON.parse(fs.readFileSync(file, "utf8"));
    fs.writeFileSync(path.join(OUT, `${contractName}.json`), `${JSON.stringify({ contractName, sourceName, abi }, null, 2)}\n`);
    return contractName as string;
  });
  console.log(`prepack: ABIs of ${written.sort().join(", ")} → ${path.relative(ROOT, OUT)}/`);
}

if (require.main === module) main();
