import { benchDialog } from "./bench/dialog";
import { benchDiscovery } from "./bench/discovery";
import { benchNat } from "./bench/nat";
import { benchNatPaths } from "./bench/nat-paths";
import { benchPayments } from "./bench/payments";
import { benchTunnel } from "./bench/tunnel";
import { benchShaping } from "./bench/shaping";
import { benchProxy } from "./bench/proxy";
import { benchRelay } from "./bench/relay";
import { benchQuality } from "./bench/quality";

/**
 * `npm run bench -- <name>...`: each benchmark writes bench/<name>.json and bench/<name>.md.
 * Timings are only compared with a baseline measured in the same run.
 */
const BENCHMARKS: Record<string, () => Promise<void>> = {
  dialog: benchDialog,
  discovery: benchDiscovery,
  tunnel: benchTunnel,
  payments: benchPayments,
  shaping: benchShaping,
  proxy: benchProxy,
  relay: benchRelay,
  quality: benchQuality,
  nat: async () => void (await benchNat()),
  "nat-paths": async () => void (await benchNatPaths()),
};

async function main() {
  const names = process.argv.slice(2);
  const unknown = names.filter((n) => !(n in BENCHMARKS));
  if (unknown.length) {
    console.error(`bench: unknown benchmark ${unknown.join(", ")}; choose from ${Object.keys(BENCHMARKS).join(", ")}`);
    process.exit(2);
  }
  for (const name of names.length ? names : Object.keys(BENCHMARKS)) {
    console.log(`\n== ${name}`);
    await BENCHMARKS[name]();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}`);
    process.exit(1);
  },
);
