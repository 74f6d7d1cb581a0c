import { expect } from "chai";
import { spawnSync } from "node:child_process";
import path from "node:path";

const ROOT = path.join(__dirname, "..");

describe("guards on the code itself", function () {
  it("passes the linter (Biome, biome.json; warnings fail too)", function () {
    this.timeout(60_000);
    const r = spawnSync(process.execPath, [require.resolve("@biomejs/biome/bin/biome"), "lint", "--error-on-warnings", "--max-diagnostics=20"], {
      cwd: ROOT,
      encoding: "utf8",
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).to.equal(0);
  });
});
