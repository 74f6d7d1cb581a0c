import { expect } from "chai";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { ProxyConsumerService, type ProxyTunnel } from "../../../node/services/proxy/consumer";
import { DestinationPolicy } from "../../../node/services/proxy/destination";
import { ProxyProviderService } from "../../../node/services/proxy/provider";
import { LocalProxy } from "../../../node/services/proxy/local-proxy";
import { Duplex } from "node:stream";

/** A proxy provider on loopback that may dial loopback destinations (the tests' origins). */
async function loopbackProvider(dir: string, limits?: { streamsPerSession: number }): Promise<ProxyProviderService> {
  const provider = new ProxyProviderService({
    dir,
    publicAddress: "127.0.0.1",
    port: 0,
    listen: "127.0.0.1",
    policy: new DestinationPolicy({ allowPrivateRanges: ["127.0.0.1/32"] }),
    limits,
  });
  await provider.start();
  return provider;
}

/**
 * A download's tail reaches an app that reads slower than the proxy brings it: the destination
 * closes after sending everything, while up to a stream window of it is still on its way or unread at
 * the consumer; the provider must not reset the stream then (a reset throws that away).
 */
describe("proxy service: the end of a download reaches a slow reader", function () {
  this.timeout(30_000);
  let dir: string;
  let provider: ProxyProviderService;
  let origin: http.Server;
  let originPort: number;
  let originClosed: Promise<void>;

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-proxy-tail-"));
    let closed: () => void;
    originClosed = new Promise((r) => (closed = r));
    origin = http.createServer((_req, res) => {
      res.socket!.once("close", () => closed());
      res.end(Buffer.alloc(8_000_000, 7));
    });
    await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
    originPort = (origin.address() as net.AddressInfo).port;
    provider = await loopbackProvider(dir);
  });

  after(async function () {
    await provider?.stop();
    origin?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("delivers all 8 MB to an app that reads nothing until the destination has closed", async function () {
    const config = await provider.openSession({ id: "tail", consumer: "0xc", consumerData: {} });
    const tunnel = (await new ProxyConsumerService({ listen: "127.0.0.1:0" }).connect({ id: "tail", provider: "0xp", serviceConfig: config })) as ProxyTunnel;
    try {
      const app = net.connect({ host: "127.0.0.1", port: tunnel.address!.port });
      app.write(`GET http://127.0.0.1:${originPort}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      // The app reads nothing until the destination sent everything and closed (and a moment more for the provider to act on it).
      app.pause();
      await originClosed;
      await new Promise((r) => setTimeout(r, 300));
      const chunks: Buffer[] = [];
      const ended = new Promise<void>((r) => {
        app.on("end", r);
        app.on("close", r);
      });
      app.on("data", (d: Buffer) => chunks.push(d));
      app.resume();
      await ended;
      const got = Buffer.concat(chunks);
      const head = got.indexOf("\r\n\r\n");
      expect(head, "the response's header block").to.be.greaterThan(0);
      expect(got.length - head - 4, "the body's bytes the app received").to.equal(8_000_000);
    } finally {
      await tunnel.stop();
      await provider.closeSession("tail", "done");
    }
  });
});

/**
 * The other direction of the same end: the destination closed cleanly, and the consumer still sends
 * (several DATA frames) before it ends its side. The provider has nowhere to put those bytes; it must
 * drop them and let the stream close, not hold it paused on a socket that will never drain (the
 * stream then stayed open, counted against the session's streams, until the session ended).
 */
describe("proxy service: a stream whose destination has gone closes when the consumer ends it", function () {
  this.timeout(30_000);
  let dir: string;
  let provider: ProxyProviderService;
  let origin: net.Server;

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-proxy-gone-"));
    origin = net.createServer((s) => s.end("hello"));
    await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
    provider = await loopbackProvider(dir, { streamsPerSession: 1 });
  });

  after(async function () {
    await provider?.stop();
    origin?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** An app's CONNECT through the local proxy: the proxy's status line, and the socket (half-open allowed). */
  async function connectThrough(port: number, target: number): Promise<{ status: string; app: net.Socket; body: () => string; ended: Promise<void> }> {
    const app = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    const ended = new Promise<void>((r) => app.once("end", r));
    let text = "";
    app.on("data", (d: Buffer) => (text += d.toString("latin1")));
    app.write(`CONNECT 127.0.0.1:${target} HTTP/1.1\r\nHost: 127.0.0.1:${target}\r\n\r\n`);
    const deadline = Date.now() + 10_000;
    while (!text.includes("\r\n\r\n") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return { status: text.split("\r\n")[0], app, body: () => text.slice(text.indexOf("\r\n\r\n") + 4), ended };
  }

  it("frees the session's only stream for the next one", async function () {
    const config = await provider.openSession({ id: "gone", consumer: "0xc", consumerData: {} });
    const tunnel = (await new ProxyConsumerService({ listen: "127.0.0.1:0" }).connect({ id: "gone", provider: "0xp", serviceConfig: config })) as ProxyTunnel;
    const target = (origin.address() as net.AddressInfo).port;
    try {
      const first = await connectThrough(tunnel.address!.port, target);
      expect(first.status).to.match(/^HTTP\/1\.1 200/);
      await first.ended;
      expect(first.body()).to.equal("hello");
      // The destination is gone; the app still sends, in several writes, then ends its side.
      for (let i = 0; i < 4; i++) {
        first.app.write(Buffer.alloc(64 * 1024, i));
        await new Promise((r) => setTimeout(r, 30));
      }
      first.app.end();
      await new Promise((r) => setTimeout(r, 500));
      const second = await connectThrough(tunnel.address!.port, target);
      second.app.destroy();
      first.app.destroy();
      expect(second.status, "the next stream of a session allowed one at a time").to.match(/^HTTP\/1\.1 200/);
    } finally {
      await tunnel.stop();
      await provider.closeSession("gone", "done");
    }
  });
});

/**
 * The consumer's side of a stream the provider ended cleanly and then reset (its destination closed
 * and it cut the stream after the idle time, or at the session's end): the app has its download to the
 * last byte and its end, and its connection is then closed, not left half open until the app closes it.
 */
describe("proxy consumer: a stream the provider resets after a clean end", function () {
  this.timeout(20_000);

  it("gives the app every byte and the end, then closes the app's connection though the app never closes its side", async function () {
    const body = Buffer.alloc(1_000_000, 9);
    let stream!: Duplex;
    let uploaded = 0;
    const local = new LocalProxy(async () => {
      stream = new Duplex({
        read() {},
        write(chunk: Buffer, _encoding, done) {
          uploaded += chunk.length;
          done();
        },
      });
      stream.push(body);
      stream.push(null);
      return { ok: true, stream };
    });
    const { port } = await local.listen("127.0.0.1", 0);
    // Half open, as an app that goes on sending after the download ends.
    const app = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    app.on("error", () => undefined);
    try {
      app.write("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n");
      let got = Buffer.alloc(0);
      const ended = new Promise<void>((r) => app.once("end", r));
      const closed = new Promise<void>((r) => app.once("close", () => r()));
      app.on("data", (d: Buffer) => (got = Buffer.concat([got, d])));
      // The app keeps its side open and goes on sending while it reads.
      app.write("still sending");
      await ended;
      stream.destroy(new Error("RST_STREAM after the clean end"));
      // Once the proxy has closed the connection, what the app sends next is answered with a reset (and
      // it closes); while the proxy holds it open, nothing ever answers.
      const poke = setInterval(() => app.write("and more after the reset"), 50);
      await closed.finally(() => clearInterval(poke));
      const head = "HTTP/1.1 200 Connection Established\r\n\r\n";
      expect(got.subarray(0, head.length).toString()).to.equal(head);
      expect(got.length - head.length, "the whole body").to.equal(body.length);
      expect(uploaded, "what the app sent before the reset went to the stream").to.equal("still sending".length);
    } finally {
      app.destroy();
      await local.close();
    }
  });
});
