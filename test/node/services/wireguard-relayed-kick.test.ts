import { expect } from "chai";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { generateKeyPair } from "../../../node/services/wireguard/keys";
import { WireGuardProcess } from "../../../node/services/wireguard/process";
import { relayedKick } from "../../../node/services/wireguard/provider";
import { until } from "../../../scripts/lib/until";

const runnable = fs.existsSync("/usr/bin/wireguard-go") && process.getuid?.() === 0;

/**
 * A provider's tunnel pointed at a relay just after it sent a handshake toward the consumer's direct
 * path (a punch that met while the consumer chose a relay): wireguard-go sends no initiation within 5 s
 * of its last one, so a keepalive's kick sent nothing and the relayed handshake waited for the retry
 * (5.2 and 10.1 s in the relay bench, docs/relay.md). Real wireguard-go in a namespace of its own;
 * the consumer's direct tunnel and the relay are two UDP sockets there that note what reaches them.
 */
(runnable ? describe : describe.skip)("wireguard: the provider's tunnel pointed at a relay sends its handshake at once", function () {
  this.timeout(30_000);
  const tag = crypto.randomBytes(2).toString("hex");
  const netns = `myst-rk${tag}`;
  const device = `mrk${tag}`;
  const pidFile = path.join(os.tmpdir(), `myst-rk${tag}.pid`);
  const ip = (...args: string[]) => execFileSync("/usr/sbin/ip", args, { encoding: "utf8" });
  let listener: ChildProcess;
  let wg: WireGuardProcess;
  /** Each datagram heard: "<port> <WireGuard message type>". */
  const heard: string[] = [];
  const LISTEN = `
    const dgram = require("node:dgram");
    for (const port of [40201, 40202]) {
      const s = dgram.createSocket("udp4");
      s.on("message", (m) => console.log(port + " " + m[0]));
      s.bind(port, "127.0.0.1", () => console.log("ready " + port));
    }`;
  const initiationsAt = (port: number) => heard.filter((h) => h === `${port} 1`).length;

  before(async function () {
    ip("netns", "add", netns);
    ip("-n", netns, "link", "set", "lo", "up");
    listener = spawn("/usr/sbin/ip", ["netns", "exec", netns, process.execPath, "-e", LISTEN], { stdio: ["ignore", "pipe", "inherit"] });
    listener.stdout!.on("data", (d: Buffer) => heard.push(...d.toString().trim().split("\n")));
    await until(() => heard.filter((h) => h.startsWith("ready")).length === 2, "the listeners");
    wg = new WireGuardProcess({ device, netns, pidFile });
    await wg.start();
    await wg.uapi.set({ privateKey: generateKeyPair().privateKey, listenPort: 0 });
    ip("-n", netns, "link", "set", device, "up");
  });

  after(async function () {
    await wg?.stop();
    listener?.kill();
    try {
      ip("netns", "del", netns);
    } catch {
      // already gone
    }
    fs.rmSync(pidFile, { force: true });
  });

  it("makes a peer that has not completed a handshake anew, so its first initiation toward the relay goes before wireguard-go's 5-s retry", async function () {
    const { publicKey } = generateKeyPair();
    const peer = { publicKey, allowedIps: ["10.77.0.2/32"] };
    // Toward the consumer's direct path first: an initiation goes there at once (the keepalive switched on).
    await wg.uapi.set({ peers: [{ ...peer, endpoint: "127.0.0.1:40201", persistentKeepalive: 25 }] });
    await until(() => initiationsAt(40201) === 1, "the initiation toward the direct path");
    // Then the relay: the kick the provider's service sends for a relayed route, and its endpoint.
    const fresh = { ...peer, endpoint: "127.0.0.1:40202", persistentKeepalive: 25 };
    const state = (await wg.uapi.get()).peers.find((p) => p.publicKey === publicKey);
    expect(state?.lastHandshakeMs, "no handshake completed (nobody answers)").to.equal(0);
    const kick = relayedKick(state, fresh);
    await wg.uapi.set({ peers: [...kick, fresh] });
    // wireguard-go's own retry would come 5 s after the first initiation: well before that, the relay hears one.
    await until(() => initiationsAt(40202) === 1, "an initiation toward the relay before the retry", 3000);
    expect((await wg.uapi.get()).peers.map((p) => ({ endpoint: p.endpoint, allowedIps: p.allowedIps }))).to.deep.equal([
      { endpoint: "127.0.0.1:40202", allowedIps: ["10.77.0.2/32"] },
    ]);
  });

  it("keeps a peer that has completed a handshake (its keypair): only the keepalive is switched off and on", function () {
    const fresh = { publicKey: generateKeyPair().publicKey, endpoint: "127.0.0.1:40202", persistentKeepalive: 25 };
    const done = { publicKey: fresh.publicKey, allowedIps: [], lastHandshakeMs: 1, rxBytes: 0, txBytes: 0 };
    expect(relayedKick(done, fresh)).to.deep.equal([{ publicKey: fresh.publicKey, persistentKeepalive: 0 }]);
  });
});
