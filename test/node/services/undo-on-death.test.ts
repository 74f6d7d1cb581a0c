import { expect } from "chai";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { until } from "../../../scripts/lib/until";
import { tempDir } from "../../../scripts/lib/tmp";

const ROOT = path.resolve(__dirname, "..", "..", "..");

describe("UndoOnDeath: what a node changed is undone when it dies", function () {
  this.timeout(60_000);
  const tmp = tempDir("myst-undo-");
  after(() => tmp.cleanup());

  /** A node (a child process) that arms an undo writing `marker`, then waits to be killed. */
  function armedNode(marker: string) {
    const script = `const { UndoOnDeath } = require(${JSON.stringify(path.join(ROOT, "node/services/supervision"))});
new UndoOnDeath().arm([["/usr/bin/touch", ${JSON.stringify(marker)}]]);
process.stdout.write("armed\\n");
setInterval(() => {}, 1000);`;
    // Its own process group, as a node started by a shell or a service manager has.
    const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], {
      cwd: ROOT,
      detached: true,
      stdio: ["ignore", "pipe", "inherit"],
    });
    return { child, armed: new Promise<void>((resolve) => child.stdout!.once("data", () => resolve())) };
  }

  for (const [how, kill] of [
    ["SIGKILL of the node alone", (pid: number) => process.kill(pid, "SIGKILL")],
    ["SIGTERM to its whole process group (Ctrl-C, kill -- -pgid, a service manager's stop)", (pid: number) => process.kill(-pid, "SIGTERM")],
  ] as const)
    it(`runs the undo after ${how}`, async function () {
      const marker = path.join(tmp.dir, `undone-${how.length}`);
      const node = armedNode(marker);
      await node.armed;
      kill(node.child.pid!);
      await until(() => node.child.exitCode !== null || node.child.signalCode !== null, "the node to die", 10_000);
      await until(() => fs.existsSync(marker), "the undo to run", 10_000);
      expect(fs.readdirSync(tmp.dir)).to.include(path.basename(marker));
    });
});
