import { expect } from "chai";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { buildCli, myst } from "../../support/cli";
import { tempDir } from "../../../scripts/lib/tmp";

/**
 * `myst status` with no myst running reads what a myst that died while connected left behind (its
 * protection record), and never changes it: only `myst disconnect` (or the next start) does.
 */
describe("myst status without a running node, after a consumer crashed while connected", function () {
  this.timeout(120_000);
  const tmp = tempDir("myst-status-");
  after(() => tmp.cleanup());
  before(() => buildCli());

  /** The pid of a process that has exited (the crashed myst). */
  const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!;

  const record = (killSwitch: boolean) => {
    const file = path.join(tmp.dir, "protection.json");
    // In a namespace that does not exist: even a disconnect would touch nothing of this machine.
    fs.writeFileSync(file, JSON.stringify({ version: 1, pid: deadPid(), netns: "myst-status-gone", killSwitch, endpointRoutes: [] }), { mode: 0o600 });
    return file;
  };
  const env = () => ({ MYST_DATA_DIR: tmp.dir, MYST_LOG_LEVEL: "error" });

  it("says the kill switch still blocks all traffic and to run `myst disconnect`, not 'not connected'", async function () {
    const file = record(true);
    const human = await myst(["status"], env());
    expect(human.code, human.stderr).to.equal(0);
    expect(human.stdout).to.include("kill switch on, all traffic blocked").and.include("myst disconnect");
    const json = JSON.parse((await myst(["status", "--json"], env())).stdout);
    expect(json).to.deep.include({ state: "blocked" });
    expect(json.leftBehind).to.include({ killSwitch: true, netns: "myst-status-gone" });
    // Read only: the record (what disconnect undoes) is still there.
    expect(fs.existsSync(file)).to.equal(true);
  });

  it("without the kill switch, says the resolver settings were left behind", async function () {
    record(false);
    const human = await myst(["status"], env());
    expect(human.code, human.stderr).to.equal(0);
    expect(human.stdout).to.include("resolver settings").and.include("myst disconnect");
    expect(JSON.parse((await myst(["status", "--json"], env())).stdout)).to.deep.include({ state: "disconnected" });
  });
});
