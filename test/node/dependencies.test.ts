import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";

/**
 * The direction of dependencies in node/ (docs/ARCHITECTURE.md): each folder may import its own
 * layer's and lower layers' folders, never a higher one; the base folders may be used by anyone
 * but import only base folders. Only chain/ imports the contract bindings.
 */
const LAYERS: string[][] = [
  ["cli"],
  ["api"],
  ["daemon"],
  ["consumer-protection", "payments", "services", "discovery"],
  ["session"],
  ["dialog"],
  ["broker", "nat"],
];
const BASE = ["identity", "proposal", "config", "errors", "log", "values", "store", "chain", "http", "lifecycle"];
const ROOT = path.join(__dirname, "..", "..", "node");

function imports(): { from: string; to: string; file: string }[] {
  const found: { from: string; to: string; file: string }[] = [];
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir)) {
      const file = path.join(dir, name);
      if (fs.statSync(file).isDirectory()) walk(file);
      else if (file.endsWith(".ts")) {
        const from = path.relative(ROOT, file).split(path.sep)[0];
        for (const m of fs.readFileSync(file, "utf8").matchAll(/from "(\.[^"]+)"/g)) {
          const target = path.relative(ROOT, path.resolve(path.dirname(file), m[1]));
          const to = target.startsWith("..") ? target : target.split(path.sep)[0];
          if (to !== from) found.push({ from, to, file: path.relative(ROOT, file) });
        }
      }
    }
  };
  walk(ROOT);
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
