import { expect } from "chai";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { DeviceClaim } from "../../../node/services/wireguard/device-claim";
import { stopChild } from "../../../scripts/lib/local-chain";
import { rejectionOf } from "../../support/rejection";

const ROOT = path.resolve(__dirname, "..", "..", "..");
/** A name no other test uses. */
const unique = () => `mwt${randomBytes(4).toString("hex")}`;

describe("wireguard: a provider's interface name is claimed, never shared", function () {
  const claims: DeviceClaim[] = [];
  afterEach(async function () {
    for (const c of claims.splice(0)) await c.release();
  });

  it("gives claims made at the same moment different default names (mystwgN)", async function () {
    claims.push(...(await Promise.all(Array.from({ length: 8 }, () => DeviceClaim.take({})))));
    const names = claims.map((c) => c.device);
    for (const name of names) expect(name).to.match(/^mystwg\d+$/);
    expect(new Set(names).size).to.equal(names.length);
  });

  it("refuses a named interface another claim holds (DEVICE_IN_USE, naming --device), and gives it once released", async function () {
    const name = unique();
    const first = await DeviceClaim.take({ device: name });
    claims.push(first);
    const err = await rejectionOf(DeviceClaim.take({ device: name }));
    expect(err.code).to.equal("DEVICE_IN_USE");
    expect(err.message).to.include(name).and.include("--device");
    await first.release();
    claims.push(await DeviceClaim.take({ device: name }));
  });

  it("refuses the name of an interface that exists (in the node's own namespace here: lo)", async function () {
    const err = await rejectionOf(DeviceClaim.take({ device: "lo" }));
    expect(err.code).to.equal("DEVICE_IN_USE");
    expect(err.message).to.include("an interface of that name exists");
  });

  it("frees the name of a node that was killed (SIGKILL): no stale lock is left", async function () {
    const name = unique();
    const script = `require(${JSON.stringify(path.join(ROOT, "node/services/wireguard/device-claim.ts"))}).DeviceClaim.take({ device: ${JSON.stringify(name)} }).then(() => { setInterval(() => {}, 60_000); console.log("claimed"); })`;
    const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d) => String(d).includes("claimed") && resolve());
        child.once("exit", (code) => reject(new Error(`the claiming process exited (${code})`)));
      });
      expect((await rejectionOf(DeviceClaim.take({ device: name }))).code).to.equal("DEVICE_IN_USE");
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
      claims.push(await DeviceClaim.take({ device: name }));
      expect(claims[0].device).to.equal(name);
    } finally {
      await stopChild(child, 1000);
    }
  });
});
