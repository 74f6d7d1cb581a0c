import crypto from "node:crypto";
import dgram from "node:dgram";
import fs from "node:fs";
import net from "node:net";
import { expect } from "chai";
import { BINDING, decodeStunMessage, encodeStunMessage, looksLikeStun } from "../../../node/nat/stun";
import { CoturnProcess } from "../../../node/services/relay/coturn";
import { freePort } from "../../../scripts/lib/local-chain";
import { requirePrerequisites } from "../../../scripts/lib/prereqs";
import { rejectionOf } from "../../support/rejection";
import { tempDir } from "../../../scripts/lib/tmp";

/** The relay's address in these tests, as in relay.test.ts. */
const RELAY_IP = "127.0.0.2";

/** A UDP socket bound to the relay's port before coturn starts: another program holding it. */
async function holdUdp(port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => s.once("error", reject).bind(port, RELAY_IP, () => resolve()));
  return s;
}

/** A STUN Binding request to the relay's UDP port: "answer", or how it failed (ECONNREFUSED: nothing listens). */
function stunBinding(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = dgram.createSocket("udp4");
    const request = encodeStunMessage({ method: BINDING, cls: "request", transactionId: crypto.randomBytes(12) });
    const done = (result: string) => {
      clearTimeout(timer);
      s.close();
      resolve(result);
    };
    const timer = setTimeout(() => done("no answer within 2 s"), 2000);
    s.on("error", (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    s.on("message", (m) => {
      const answer = looksLikeStun(m) ? decodeStunMessage(m).cls : "not STUN";
      done(answer === "success" ? "answer" : `an answer: ${answer}`);
    });
    s.connect(port, RELAY_IP, () => s.send(request));
  });
}

/**
 * coturn opens its TCP listeners first and its UDP listeners after them, and retries a port another
 * socket holds once a second. CoturnProcess.start() took the TCP port answering for up: a
 * relay test's first TURN-UDP allocation then failed with ECONNREFUSED (in a run of the relay
 * tests; under load 3-9, 16 of 150 starts on the old code had no UDP listener when start() returned).
 */
describe("coturn: a relay is up when its UDP listener is", function () {
  this.timeout(30_000);
  const dir = tempDir();
  let coturn: CoturnProcess | undefined;
  let held: dgram.Socket | undefined;

  before(function () {
    const missing = [...(fs.existsSync("/usr/bin/turnserver") ? [] : ["coturn (turnserver)"]), ...(process.getuid?.() === 0 ? [] : ["root"])];
    requirePrerequisites(this, "relay", missing);
  });

  afterEach(async function () {
    held?.close();
    held = undefined;
    await coturn?.stop();
    coturn = undefined;
  });

  after(() => dir.cleanup());

  const relay = (port: number) =>
    new CoturnProcess({ dir: dir.dir, listeningIps: [RELAY_IP], port, minPort: 50400, maxPort: 50499, secret: "s", realm: "myst", allowPrivatePeers: true });

  it("does not say it is up while another socket holds its UDP port, and answers on UDP once it is", async function () {
    const port = await freePort();
    const socket = await holdUdp(port);
    held = socket;
    let released = false;
    const release = setTimeout(() => {
      socket.close();
      held = undefined;
      released = true;
    }, 1200);
    coturn = relay(port);
    try {
      await coturn.start();
    } finally {
      clearTimeout(release);
    }
    expect(released, "start() returned while another socket still held the UDP port").to.equal(true);
    expect(await stunBinding(port)).to.equal("answer");
  });

  it("fails with PORT_IN_USE when another program holds its TCP port: that program answering is not coturn listening", async function () {
    const port = await freePort();
    const holder = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => holder.listen(port, RELAY_IP, resolve));
    try {
      coturn = relay(port);
      const err = await rejectionOf(coturn.start(5000));
      expect(err).to.include({ code: "PORT_IN_USE" });
      expect(err.message).to.include(String(port));
      expect(coturn.running).to.equal(false);
    } finally {
      holder.close();
    }
  });

  it("fails with PORT_IN_USE, naming the port, when its UDP port stays taken, and leaves no coturn running", async function () {
    const port = await freePort();
    held = await holdUdp(port);
    coturn = relay(port);
    const err = await rejectionOf(coturn.start(5000));
    expect(err).to.include({ code: "PORT_IN_USE" });
    expect(err.message).to.include(String(port));
    expect(coturn.running).to.equal(false);
  });
});
