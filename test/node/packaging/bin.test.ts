import { expect } from "chai";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { tempDir } from "../../../scripts/lib/tmp";

const ROOT = path.resolve(__dirname, "..", "..", "..");

/**
 * bin/myst, the installed `myst` command: node running the compiled CLI, with a small young
 * generation for a discovery replica only (docs/scale.md). Run here with a `node` on PATH that prints
 * what it was given, through a symlink as npm installs it.
 */
describe("bin/myst (the installed command)", function () {
  const tmp = tempDir("myst-bin-");
  const fakeNode = path.join(tmp.dir, "node");
  const link = path.join(tmp.dir, "installed", "myst");
  before(function () {
    fs.writeFileSync(fakeNode, '#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n', { mode: 0o755 });
    fs.mkdirSync(path.dirname(link));
    fs.symlinkSync(path.join(ROOT, "bin", "myst"), link);
  });
  after(() => tmp.cleanup());
  const run = (...args: string[]) =>
    execFileSync(link, args, { encoding: "utf8", env: { ...process.env, PATH: `${tmp.dir}:${process.env.PATH}` } })
      .trim()
      .split("\n")
      .map((a) => (a.endsWith("main.js") ? path.resolve(a) : a));
  const main = path.join(ROOT, "dist", "node", "cli", "main.js");

  it("runs the compiled CLI with every argument as given, and node's defaults", function () {
    expect(run("status", "--json")).to.deep.equal([main, "status", "--json"]);
    expect(run("proposals", "--country", "DE")).to.deep.equal([main, "proposals", "--country", "DE"]);
  });

  it("gives `myst discovery` a young generation of 2 MB per semi-space, after global flags too", function () {
    expect(run("discovery", "--port", "4050")).to.deep.equal(["--max-semi-space-size=2", main, "discovery", "--port", "4050"]);
    expect(run("--json", "discovery")).to.deep.equal(["--max-semi-space-size=2", main, "--json", "discovery"]);
  });

  it("is what package.json installs as `myst`, and what the package ships", function () {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
    expect(pkg.bin).to.deep.equal({ myst: "bin/myst" });
    expect(pkg.files).to.include("bin/myst");
    expect(fs.statSync(path.join(ROOT, "bin", "myst")).mode & 0o111).to.equal(0o111);
  });
});
