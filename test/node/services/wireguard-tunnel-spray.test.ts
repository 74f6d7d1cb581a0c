import { expect } from "chai";
import { type ChildProcess, spawn } from "node:child_process";
import dgram from "node:dgram";
import fs from "node:fs";
import { startSprayer } from "../../../node/services/wireguard/tunnel-spray";
import { until } from "../../../scripts/lib/until";

// pidfd_getfd(2) on another process's socket needs root (or ptrace rights over it), as on a node.
/** What a promise was rejected with ("" when it resolved). */
const rejection = (p: Promise<unknown>) =>
  p.then(
    () => "",
    (err: Error) => err.message,
  );

const sprayable = process.getuid?.() === 0 && fs.existsSync("/usr/bin/python3");

/** A process holding a UDP socket, as wireguard-go holds its tunnel's: prints its port. */
const HOLDER = `
  const s = require("node:dgram").createSocket("udp4");
  s.on("message", () => undefined);
  s.bind(0, "127.0.0.1", () => console.log(s.address().port));`;

(sprayable ? describe : describe.skip)("wireguard: the tunnel's spray (datagrams from wireguard-go's own socket)", function () {
  this.timeout(30_000);
  let holder: ChildProcess;
  let holderPort = 0;
  let receiver: dgram.Socket;
  const heard: { from: number; text: string }[] = [];

  before(async function () {
    holder = spawn(process.execPath, ["-e", HOLDER], { stdio: ["ignore", "pipe", "inherit"] });
    holder.stdout!.setEncoding("utf8").on("data", (d: string) => (holderPort = Number(d.trim())));
    await until(() => holderPort > 0, "the holder's port");
    receiver = dgram.createSocket("udp4");
    receiver.on("message", (m, r) => heard.push({ from: r.port, text: m.toString() }));
    await new Promise<void>((r) => receiver.bind(0, "127.0.0.1", () => r()));
  });

  after(function () {
    holder?.kill();
    receiver?.close();
  });

  const datagrams = (n: number, tag: string) =>
    Array.from({ length: n }, (_, i) => ({ address: "127.0.0.1", port: receiver.address().port, bytes: Buffer.from(`${tag} ${i}`) }));

  it("started before its datagrams exist, sends each of them from the tunnel's socket (its port, not one of its own)", async function () {
    const sprayer = startSprayer(holder.pid!, holderPort);
    expect(sprayer.ready).to.equal(true);
    await sprayer.send(datagrams(40, "early"));
    await until(() => heard.filter((h) => h.text.startsWith("early")).length === 40, "the 40 datagrams");
    const got = heard.filter((h) => h.text.startsWith("early"));
    expect(new Set(got.map((h) => h.from))).to.deep.equal(new Set([holderPort]));
    expect(got.map((h) => h.text)).to.deep.equal(datagrams(40, "early").map((d) => d.bytes.toString()));
    // Used once.
    expect(sprayer.ready).to.equal(false);
    expect(await rejection(sprayer.send(datagrams(1, "again")))).to.match(/already sent or cancelled/);
  });

  it("one not needed ends when cancelled, having sent nothing", async function () {
    const sprayer = startSprayer(holder.pid!, holderPort);
    sprayer.cancel();
    expect(sprayer.ready).to.equal(false);
    expect(await rejection(sprayer.send(datagrams(1, "cancelled")))).to.match(/already sent or cancelled/);
    expect(heard.some((h) => h.text.startsWith("cancelled"))).to.equal(false);
  });

  it("says so when the process holds no UDP socket on that port", async function () {
    const sprayer = startSprayer(holder.pid!, holderPort === 1 ? 2 : 1);
    expect(await rejection(sprayer.send(datagrams(1, "nowhere")))).to.match(/could not send from wireguard-go's port/);
  });
});
