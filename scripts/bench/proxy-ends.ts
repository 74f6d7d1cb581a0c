// The two ends of the proxy benchmark, each run inside its namespace (`ip netns exec`) by scripts/bench/proxy.ts:
//   provider <dir> <public address>: the proxy service, one session opened; prints its service config as a JSON line.
//   consumer <config base64> <connects>: `connects` new connections, each timed to its first byte, then one
//   that stays, listening on 127.0.0.1:1080; prints the times as a JSON line.
//   relay <port> <host> <target port>: a plain TCP relay (no TLS, no HTTP/2) on <port> to <host>:<target port>; prints a JSON line.
import http from "node:http";
import net from "node:net";
import { ProxyTunnel } from "../../node/services/proxy/consumer";
import type { ProxyServiceConfig } from "../../node/services/proxy/config";
import { DestinationPolicy } from "../../node/services/proxy/destination";
import { ProxyProviderService } from "../../node/services/proxy/provider";
import { silentLogger } from "../../node/log/logger";

async function provider(dir: string, publicAddress: string): Promise<void> {
  const service = new ProxyProviderService({ dir, publicAddress, port: 8443, policy: new DestinationPolicy({ publicIp: publicAddress }) });
  await service.start();
  const config = await service.openSession({ id: "bench", consumer: "0xbench", consumerData: {} });
  process.stdout.write(`${JSON.stringify(config)}\n`);
  process.stdin.resume();
  process.stdin.once("end", () => void service.stop().then(() => process.exit(0)));
}

/** A plain request for one byte through the local proxy: resolves when the byte arrived. */
function oneByte(port: number, url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path: url, agent: false }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`the proxy answered ${res.statusCode} ${res.statusMessage}`));
        res.once("data", () => resolve());
        res.on("error", reject);
        res.resume();
      })
      .on("error", reject);
  });
}

async function consumer(configText: string, connects: number, url: string): Promise<void> {
  const config = JSON.parse(Buffer.from(configText, "base64").toString()) as ProxyServiceConfig;
  const samples: number[] = [];
  for (let i = 0; i < connects; i++) {
    const t0 = process.hrtime.bigint();
    const tunnel = new ProxyTunnel(config, silentLogger);
    await tunnel.start({ host: "127.0.0.1", port: 0 });
    await oneByte(tunnel.address!.port, url);
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await tunnel.stop();
  }
  const tunnel = new ProxyTunnel(config, silentLogger);
  await tunnel.start({ host: "127.0.0.1", port: 1080 });
  process.stdout.write(`${JSON.stringify({ firstByteMs: samples })}\n`);
  process.stdin.resume();
  process.stdin.once("end", () => void tunnel.stop().then(() => process.exit(0)));
}

/**
 * Each connection to `port` copied to `host:targetPort` and back by this process, as Node copies any
 * socket (64 KiB reads, one write each): what a process at each end costs a stream before any TLS or
 * HTTP/2, the bench's floor for a proxy with two ends (docs/proxy.md "The floor").
 */
async function relay(port: number, host: string, targetPort: number): Promise<void> {
  const server = net.createServer((app) => {
    const onward = net.connect({ host, port: targetPort, noDelay: true });
    app.setNoDelay(true);
    for (const [from, to] of [
      [app, onward],
      [onward, app],
    ]) {
      from.pipe(to);
      from.on("error", () => to.destroy());
      from.once("close", () => to.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(port, resolve));
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  process.stdin.resume();
  process.stdin.once("end", () => process.exit(0));
}

if (require.main === module) {
  const [role, ...args] = process.argv.slice(2);
  const run =
    role === "provider"
      ? provider(args[0], args[1])
      : role === "relay"
        ? relay(Number(args[0]), args[1], Number(args[2]))
        : consumer(args[0], Number(args[1]), args[2]);
  run.catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
