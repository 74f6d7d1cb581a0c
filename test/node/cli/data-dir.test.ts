import { expect } from "chai";
import { spawn, spawnSync } from "node:child_process";
import { buildCli, MYST_BIN } from "../../support/cli";
import { tempDir } from "../../../scripts/lib/tmp";
import { requirePrerequisites } from "../../../scripts/lib/prereqs";

/**
 * `myst daemon` on a data dir whose disk is full, or whose file system is read-only: the disk is
 * real (a tiny tmpfs, a read-only bind mount), made in a private mount namespace of the command's
 * own (`unshare --mount`), so nothing of this machine's mounts changes. Root ignores file modes,
 * hence mounts rather than chmod.
 */
describe("myst daemon on a data dir it cannot write", function () {
  this.timeout(120_000);
  const tmp = tempDir("myst-datadir-");
  after(() => tmp.cleanup());
  before(function () {
    requirePrerequisites(this, "data-dir test", [
      ...(process.getuid?.() !== 0 ? ["root (it mounts a tmpfs and a read-only bind mount)"] : []),
      ...(spawnSync("unshare", ["--version"]).status !== 0 ? ["unshare (util-linux)"] : []),
    ]);
    buildCli();
  });

  /** Runs `script` in a private mount namespace with `$MYST` the CLI; resolves its exit code and output. */
  const inMountNamespace = (script: string): Promise<{ code: number | null; stderr: string; stdout: string }> =>
    new Promise((resolve, reject) => {
      const child = spawn("unshare", ["--mount", "--propagation", "private", "sh", "-ec", script], {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          MYST: `${process.execPath} ${MYST_BIN}`,
          MYST_PASSPHRASE: "pw",
          MYST_LOG_LEVEL: "error",
          DIR: tmp.dir,
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", reject);
      child.on("exit", (code) => resolve({ code, stdout, stderr }));
    });

  it("names the dir and 'the disk is full', exits 2, no stack, when the disk is full", async function () {
    const r = await inMountNamespace(`
      mkdir -p "$DIR/full" && mount -t tmpfs -o size=256k tmpfs "$DIR/full"
      MYST_DATA_DIR="$DIR/full" $MYST identities new >/dev/null
      head -c 1000000 /dev/zero > "$DIR/full/fill" 2>/dev/null || true
      MYST_DATA_DIR="$DIR/full" $MYST daemon --api-port 0 || echo "exit=$?"`);
    expect(r.stdout).to.include("exit=2");
    expect(r.stderr).to.include(`data dir ${tmp.dir}/full`).and.include("the disk is full").and.include("ENOSPC");
    expect(r.stderr).to.not.match(/internal error|\n\s+at /);
  });

  it("names the dir and 'read-only', exits 2, no stack, when the file system is read-only", async function () {
    const r = await inMountNamespace(`
      mkdir -p "$DIR/ro"
      MYST_DATA_DIR="$DIR/ro" $MYST identities new >/dev/null
      mount --bind "$DIR/ro" "$DIR/ro" && mount -o remount,bind,ro "$DIR/ro"
      MYST_DATA_DIR="$DIR/ro" $MYST daemon --api-port 0 || echo "exit=$?"`);
    expect(r.stdout).to.include("exit=2");
    expect(r.stderr).to.include(`data dir ${tmp.dir}/ro`).and.include("read-only").and.include("EROFS");
    expect(r.stderr).to.not.match(/internal error|\n\s+at /);
  });
});
