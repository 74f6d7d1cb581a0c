import { expect } from "chai";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { ProxyConsumerService, type ProxyTunnel } from "../../../node/services/proxy/consumer";
import { DestinationPolicy } from "../../../node/services/proxy/destination";
import { ProxyProviderService } from "../../../node/services/proxy/provider";

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
    provider = new ProxyProviderService({
      dir,
      publicAddress: "127.0.0.1",
      port: 0,
      listen: "127.0.0.1",
      policy: new DestinationPolicy({ allowPrivateRanges: ["127.0.0.1/32"] }),
    });
    await provider.start();
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
      let got = 0;
      const ended = new Promise<void>((r) => {
        app.on("end", r);
        app.on("close", r);
      });
      app.on("data", (d: Buffer) => (got += d.length));
      app.resume();
      await ended;
      expect(got, "bytes the app received (headers and the 8 MB body)").to.be.greaterThan(8_000_000);
    } finally {
      await tunnel.stop();
      await provider.closeSession("tail", "done");
    }
  });
});
