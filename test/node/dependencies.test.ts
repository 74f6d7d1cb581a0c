import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";

/**
 * The direction of dependencies in node/ (docs/ARCHITECTURE.md): each folder may import its own
 * layer's and lower layers' folders, never a higher one; the base folders may be used by anyone
 * but import only base folders. Only chain/ imports the contract bindings. Each operation group
 * (node/ops/<group>/) counts as a folder of its own: the node (ops/node.ts) composes the groups,
 * the dashboard's group reads the others' answers, and the others know nothing of one another.
 */
const GROUPS = ["identities", "services", "connection", "vault", "earnings", "sessions", "status", "prober"].map((g) => `ops/${g}`);
const LAYERS: string[][] = [
  ["cli"],
  ["api"],
  ["ops"],
  ["ops/dashboard"],
  GROUPS,
  ["daemon"],
  ["consumer-protection", "payments", "services", "discovery"],
  ["session"],
  ["dialog"],
  ["broker", "nat"],
];
const BASE = ["identity", "proposal", "config", "errors", "log", "values", "store", "chain", "http", "lifecycle", "quality"];
const ROOT = path.join(__dirname, "..", "..", "node");

/** The folder a path under node/ belongs to: its first segment, or `ops/<group>` inside an operation group. */
function folderOf(relative: string): string {
  const parts = relative.split(path.sep);
  return parts[0] === "ops" && parts.length > 2 ? `ops/${parts[1]}` : parts[0];
}

/** Every relative import of every file under node/, resolved to the file it names (`typeOnly`: `import type`, gone at run time). */
function edges(): { file: string; target: string; typeOnly: boolean }[] {
  const found: { file: string; target: string; typeOnly: boolean }[] = [];
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir)) {
      const file = path.join(dir, name);
      if (fs.statSync(file).isDirectory()) walk(file);
      else if (file.endsWith(".ts"))
        for (const m of fs.readFileSync(file, "utf8").matchAll(/(?:import|export)(\s+type)?\s[^;]*?from "(\.[^"]+)"/g))
          found.push({ file, target: path.resolve(path.dirname(file), m[2]), typeOnly: !!m[1] });
    }
  };
  walk(ROOT);
  return found;
}

function imports(): { from: string; to: string; file: string }[] {
  const found: { from: string; to: string; file: string }[] = [];
  for (const { file, target } of edges()) {
    const from = folderOf(path.relative(ROOT, file));
    const relative = path.relative(ROOT, target);
    const to = relative.startsWith("..") ? relative : folderOf(relative);
    if (to !== from) found.push({ from, to, file: path.relative(ROOT, file) });
  }
  return found;
}

const layerOf = (folder: string) => LAYERS.findIndex((l) => l.includes(folder));

describe("dependencies between node/ folders point one way", function () {
  it("no folder imports a folder above it, and the base folders import only base folders", function () {
    const wrong = imports()
      .filter(({ from, to }) => {
        if (to.includes("typechain-types")) return false; // checked below
        if (BASE.includes(from)) return !BASE.includes(to);
        if (BASE.includes(to)) return false;
        // The operation groups know nothing of one another (each is one folder plus its routes).
        if (GROUPS.includes(from) && GROUPS.includes(to)) return true;
        const a = layerOf(from);
        const b = layerOf(to);
        return a === -1 || b === -1 || b < a;
      })
      .map(({ file, to }) => `${file} imports ${to}/`);
    expect(wrong).to.deep.equal([]);
  });

  it("cli/ reaches the node only through the API (client, launcher, schemas) and takes config, errors, values, log and its own output", function () {
    const allowed = ["api", "config", "errors", "values", "log"];
    const wrong = imports()
      .filter(({ from, to }) => from === "cli" && !allowed.includes(to))
      .map(({ file, to }) => `${file} imports ${to}/`);
    expect(wrong).to.deep.equal([]);
  });

  it("a group's client methods import only the group's schemas and the requester (the CLI's client carries no node code)", function () {
    const wrong = edges()
      .filter(({ file }) => /ops\/[a-z-]+\/client\.ts$/.test(file))
      .filter(({ file, target }) => target !== path.join(path.dirname(file), "schemas") && target !== path.join(ROOT, "http", "requester"))
      .map(({ file, target }) => `${path.relative(ROOT, file)} imports ${path.relative(ROOT, target)}`);
    expect(wrong).to.deep.equal([]);
  });

  it("no file imports itself through others at run time (no cycles)", function () {
    const graph = new Map<string, string[]>();
    for (const { file, target, typeOnly } of edges()) {
      if (typeOnly) continue;
      const from = file.replace(/\.ts$/, "");
      graph.set(from, [...(graph.get(from) ?? []), target]);
    }
    const cycles: string[] = [];
    const state = new Map<string, "open" | "done">();
    const visit = (node: string, trail: string[]) => {
      if (state.get(node) === "done") return;
      if (state.get(node) === "open") {
        cycles.push([...trail.slice(trail.indexOf(node)), node].map((f) => path.relative(ROOT, f)).join(" → "));
        return;
      }
      state.set(node, "open");
      for (const next of graph.get(node) ?? []) visit(next, [...trail, node]);
      state.set(node, "done");
    };
    for (const node of graph.keys()) visit(node, []);
    expect(cycles).to.deep.equal([]);
  });

  it("scripts/ and test/ share helpers through one place (scripts/lib): nothing in scripts/ imports test/", function () {
    const scripts = path.join(ROOT, "..", "scripts");
    const wrong: string[] = [];
    const walk = (dir: string) => {
      for (const name of fs.readdirSync(dir)) {
        const file = path.join(dir, name);
        if (fs.statSync(file).isDirectory()) walk(file);
        else if (file.endsWith(".ts"))
          for (const m of fs.readFileSync(file, "utf8").matchAll(/from "(\.[^"]+)"/g))
            if (path.resolve(path.dirname(file), m[1]).startsWith(path.join(ROOT, "..", "test"))) wrong.push(`${path.relative(scripts, file)} imports ${m[1]}`);
      }
    };
    walk(scripts);
    expect(wrong).to.deep.equal([]);
  });

  it("only chain/ imports the contract bindings (typechain-types)", function () {
    const wrong = imports().filter(({ from, to }) => to.includes("typechain-types") && from !== "chain");
    expect(wrong.map((w) => w.file)).to.deep.equal([]);
  });
});
