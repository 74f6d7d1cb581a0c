import { expect } from "chai";
import { execFile } from "node:child_process";
import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import netModule from "node:net";
import os from "node:os";
import path from "node:path";
import fs from "node:fs";
import { ProxyConsumerService, type ProxyTunnel, parseListen } from "../../../node/services/proxy/consumer";
import { DestinationPolicy, DestinationRefused, parseAuthority } from "../../../node/services/proxy/destination";
import { ProxyProviderService } from "../../../node/services/proxy/provider";
import { CONNECTION_WINDOW, type ProxyServiceConfig, STREAM_WINDOW } from "../../../node/services/proxy/config";
import { ensureCertificate } from "../../../node/services/certificate";
import { bucketFor } from "../../../node/services/proxy/throttle";
import { checkServiceSpec, startProviderService } from "../../../node/services/catalog";
import type { PublicKeyDirectory } from "../../../node/identity/protocol-signature";
import { silentLogger } from "../../../node/log/logger";
import { until } from "../../../scripts/lib/until";

/** curl's exit code and output (never throws). */
function curl(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) =>
    execFile("curl", ["-sS", "--max-time", "10", ...args], (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout })),
  );
}

const refusalOf = (policy: DestinationPolicy, host: string, port = 443) =>
  policy.addresses({ host, port }).then(
    () => null,
    (err: DestinationRefused) => err.refusal,
  );

describe("proxy service: where a stream may go", function () {
  const names: Record<string, string[]> = {
    "lan.example": ["192.168.77.2"],
    "meta.example": ["169.254.169.254"],
    "both.example": ["10.1.2.3", "198.18.2.2"],
    "v6lan.example": ["fd00::5"],
    "public.example": ["198.18.2.2"],
  };
  const policy = new DestinationPolicy({ publicIp: "198.18.3.2", lookup: async (h) => names[h] ?? [], egress: { blockCidrs: ["203.0.113.0/24"] } });

  it("parses host:port and [v6]:port, and refuses anything else", function () {
    expect(parseAuthority("example.com:443")).to.deep.equal({ host: "example.com", port: 443 });
    expect(parseAuthority("[2001:db8::1]:80")).to.deep.equal({ host: "2001:db8::1", port: 80 });
    for (const bad of ["example.com", "a b:80", "x:0", "x:70000", "[nothost]:80", undefined]) expect(() => parseAuthority(bad)).to.throw(DestinationRefused);
  });

  it("refuses private, loopback, link-local, CGNAT and metadata addresses, IPv4 and IPv6, also inside IPv6", async function () {
    for (const host of [
      "10.0.0.1",
      "172.16.5.5",
      "192.168.1.1",
      "127.0.0.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "224.0.0.1",
      "::1",
      "::",
      "fe80::1",
      "fd00:ec2::254",
      "::ffff:192.168.1.1",
      "::ffff:127.0.0.1",
      "64:ff9b::a9fe:a9fe",
      "2002:c0a8:0101::1",
    ])
      expect(await refusalOf(policy, host), host).to.equal("private-network");
    expect(await refusalOf(policy, "198.18.2.2")).to.equal(null);
    expect(await refusalOf(policy, "2001:db8:2::2")).to.equal(null);
  });

  it("judges a name by what it resolves to at the provider, and connects only to allowed addresses", async function () {
    expect(await refusalOf(policy, "lan.example")).to.equal("private-network");
    expect(await refusalOf(policy, "meta.example")).to.equal("private-network");
    expect(await refusalOf(policy, "v6lan.example")).to.equal("private-network");
    expect(await refusalOf(policy, "nothing.example")).to.equal("unresolved");
    expect(await policy.addresses({ host: "both.example", port: 443 })).to.deep.equal(["198.18.2.2"]);
  });

  it("refuses the provider's own addresses, the egress policy's networks, SMTP and blocked ports", async function () {
    expect(await refusalOf(policy, "198.18.3.2")).to.equal("private-network");
    expect(await refusalOf(policy, "203.0.113.7")).to.equal("blocked-network");
    for (const port of [25, 465, 587]) expect(await refusalOf(policy, "public.example", port)).to.equal("blocked-port");
    const mail = new DestinationPolicy({ egress: { allowSmtp: true, blockPorts: ["6881-6889"] }, lookup: async (h) => names[h] ?? [] });
    expect(await refusalOf(mail, "public.example", 587)).to.equal(null);
    expect(await refusalOf(mail, "public.example", 6885)).to.equal("blocked-port");
  });

  it("lets the operator open private ranges", async function () {
    const open = new DestinationPolicy({ allowPrivateRanges: ["192.168.77.0/24"], lookup: async (h) => names[h] ?? [] });
    expect(await refusalOf(open, "lan.example")).to.equal(null);
    expect(await refusalOf(open, "meta.example")).to.equal("private-network");
  });

  it("reads --listen as host:port, [v6]:port or a port", function () {
    expect(parseListen("127.0.0.1:1080")).to.deep.equal({ host: "127.0.0.1", port: 1080 });
    expect(parseListen("[::1]:1081")).to.deep.equal({ host: "::1", port: 1081 });
    expect(parseListen("1082")).to.deep.equal({ host: "127.0.0.1", port: 1082 });
    expect(() => parseListen("example.com:80")).to.throw(/not host:port/);
  });
});

describe("proxy service: provider and consumer on this host", function () {
  this.timeout(30_000);
  let dir: string;
  let provider: ProxyProviderService;
  let origin: http.Server;
  let originPort: number;
  const lookedUp: string[] = [];
  const sessions: ProxyTunnel[] = [];

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-proxy-"));
    origin = http.createServer((req, res) => {
      const n = Number(new URL(req.url!, "http://x").searchParams.get("bytes") ?? 0);
      res.end(n ? Buffer.alloc(n, 7) : `${req.method} ${req.url} ${req.headers.host} ${req.headers["proxy-authorization"] ?? "-"}`);
    });
    await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
    originPort = (origin.address() as net.AddressInfo).port;
    provider = new ProxyProviderService({
      dir,
      publicAddress: "127.0.0.1",
      port: 0,
      listen: "127.0.0.1",
      // The origin is on loopback: this test opens exactly it, and names resolve to it only here.
      policy: new DestinationPolicy({
        allowPrivateRanges: ["127.0.0.1/32"],
        lookup: async (host) => {
          lookedUp.push(host);
          return host === "origin.test" ? ["127.0.0.1"] : host === "lan.test" ? ["192.168.77.2"] : [];
        },
      }),
    });
    await provider.start();
  });

  after(async function () {
    for (const t of sessions) await t.stop();
    await provider?.stop();
    origin?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function session(id: string): Promise<{ tunnel: ProxyTunnel; config: ProxyServiceConfig; url: string }> {
    const config = await provider.openSession({ id, consumer: "0xc", consumerData: {} });
    const tunnel = (await new ProxyConsumerService({ listen: "127.0.0.1:0" }).connect({ id, provider: "0xp", serviceConfig: config })) as ProxyTunnel;
    sessions.push(tunnel);
    return { tunnel, config, url: `127.0.0.1:${tunnel.address!.port}` };
  }

  it("carries SOCKS5 (names resolved at the provider), HTTP CONNECT and plain HTTP requests, metered the same on both sides", async function () {
    const { tunnel, url } = await session("s1");
    const socks = await curl(["--proxy", `socks5h://${url}`, `http://origin.test:${originPort}/a`]);
    expect(socks.stdout).to.equal(`GET /a origin.test:${originPort} -`);
    expect(lookedUp).to.include("origin.test");
    const tunnelled = await curl(["--proxytunnel", "--proxy", `http://${url}`, `http://origin.test:${originPort}/b`]);
    expect(tunnelled.stdout).to.equal(`GET /b origin.test:${originPort} -`);
    const plain = await curl(["--proxy", `http://${url}`, "--proxy-user", "u:p", `http://origin.test:${originPort}/c?x=1`]);
    expect(plain.stdout).to.equal(`GET /c?x=1 origin.test:${originPort} -`);
    const big = await curl(["--proxy", `socks5h://${url}`, "-o", "/dev/null", "-w", "%{size_download}", `http://origin.test:${originPort}/?bytes=3000000`]);
    expect(big.stdout).to.equal("3000000");
    const p = provider.usage("s1")!;
    const c = tunnel.stats();
    expect(p.bytesOut).to.be.greaterThan(3_000_000);
    expect(p).to.deep.equal({ bytesIn: c.bytesOut, bytesOut: c.bytesIn });
  });

  it("refuses private destinations, by address and by name, over SOCKS5 and HTTP", async function () {
    const { url } = await session("s2");
    const bySocks = await curl(["--proxy", `socks5h://${url}`, "http://lan.test/"]);
    expect(bySocks.code).to.equal(97); // curl: the proxy refused (SOCKS reply 2, not allowed by ruleset)
    const byHttp = await curl(["-o", "/dev/null", "-w", "%{http_code}", "--proxy", `http://${url}`, "http://169.254.169.254/latest/meta-data/"]);
    expect(byHttp.stdout).to.equal("403");
    const smtp = await curl(["-o", "/dev/null", "-w", "%{http_connect}", "--proxytunnel", "--proxy", `http://${url}`, "http://origin.test:25/"]);
    expect(smtp.stdout).to.equal("403");
  });

  it("refuses a stream without the session's credential, and every stream once the session is closed", async function () {
    const { config } = await session("s3");
    const h2 = http2.connect(`https://127.0.0.1:${config.port}`, { ca: config.certificate, checkServerIdentity: () => undefined });
    const status = (credential?: string) =>
      new Promise<number>((resolve) => {
        const req = h2.request({
          ":method": "CONNECT",
          ":authority": `origin.test:${originPort}`,
          ...(credential ? { "proxy-authorization": credential } : {}),
        });
        req.on("response", (h) => resolve(Number(h[":status"])));
        req.on("error", () => resolve(-1));
      });
    expect(await status()).to.equal(407);
    expect(await status(`Bearer ${"A".repeat(43)}`)).to.equal(407);
    expect(await status(`Bearer ${config.credential}`)).to.equal(200);
    h2.destroy();
    await provider.closeSession("s3", "test");
    const again = http2.connect(`https://127.0.0.1:${config.port}`, { ca: config.certificate, checkServerIdentity: () => undefined });
    const after = await new Promise<number>((resolve) => {
      const req = again.request({ ":method": "CONNECT", ":authority": `origin.test:${originPort}`, "proxy-authorization": `Bearer ${config.credential}` });
      req.on("response", (h) => resolve(Number(h[":status"])));
    });
    again.destroy();
    expect(after).to.equal(407);
  });

  it("names a port in use, on either side", async function () {
    const twin = new ProxyProviderService({ dir, publicAddress: "127.0.0.1", port: provider.port, listen: "127.0.0.1", policy: new DestinationPolicy() });
    expect(
      await twin.start().then(
        () => "started",
        (err) => err.code,
      ),
    ).to.equal("PORT_IN_USE");
    const { tunnel } = await session("s5");
    const config = await provider.openSession({ id: "s6", consumer: "0xc", consumerData: {} });
    const second = new ProxyConsumerService({ listen: `127.0.0.1:${tunnel.address!.port}` }).connect({ id: "s6", provider: "0xp", serviceConfig: config });
    expect(
      await second.then(
        () => "connected",
        (err) => err.code,
      ),
    ).to.equal("PORT_IN_USE");
  });

  it("refuses to connect to a server whose certificate is not the pinned one", async function () {
    const config = await provider.openSession({ id: "s4", consumer: "0xc", consumerData: {} });
    const other = await new ProxyConsumerService({ listen: "127.0.0.1:0" })
      .connect({
        id: "s4",
        provider: "0xp",
        serviceConfig: { ...config, fingerprint: config.fingerprint.replace(/^../, config.fingerprint.startsWith("00") ? "11" : "00") },
      })
      .then(
        () => "connected",
        (err: Error) => err.message,
      );
    expect(other).to.match(/does not match its fingerprint/);
  });

  describe("HTTP/2 flow control (a 64 KiB window would cap one stream at 64 KiB per round trip)", function () {
    it("the provider advertises its stream window and opens its connection window to every consumer", async function () {
      const client = http2.connect(`https://127.0.0.1:${provider.port}`, { rejectUnauthorized: false });
      try {
        await new Promise((resolve) => client.once("remoteSettings", resolve));
        expect(client.remoteSettings.initialWindowSize).to.equal(STREAM_WINDOW);
        // The connection's window grows by a WINDOW_UPDATE sent after the settings.
        await until(() => client.state.remoteWindowSize === CONNECTION_WINDOW, "the provider's connection window");
      } finally {
        client.destroy();
      }
    });

    it("the consumer advertises its stream window and opens its connection window to the provider", async function () {
      const certificate = await ensureCertificate(path.join(dir, "window-test"), "proxy");
      const server = http2.createSecureServer({ key: certificate.key, cert: certificate.certificate });
      const sessions: http2.ServerHttp2Session[] = [];
      server.on("session", (s) => sessions.push(s));
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const port = (server.address() as net.AddressInfo).port;
      const config = { address: "127.0.0.1", port, certificate: certificate.certificate, fingerprint: certificate.fingerprint, credential: "c".repeat(43) };
      const tunnel = (await new ProxyConsumerService({ listen: "127.0.0.1:0" }).connect({ id: "w", provider: "0xp", serviceConfig: config })) as ProxyTunnel;
      try {
        await until(() => sessions[0]?.remoteSettings?.initialWindowSize === STREAM_WINDOW, "the consumer's stream window");
        await until(() => sessions[0].state.remoteWindowSize === CONNECTION_WINDOW, "the consumer's connection window");
      } finally {
        await tunnel.stop();
        for (const s of sessions) s.destroy();
        server.close();
      }
    });
  });
});

describe("proxy service: the provider's controls, as the node hands them over", function () {
  this.timeout(20_000);

  it("takes the egress policy (networks, ports, SMTP) from the service's controls", async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-proxy-"));
    const spec = checkServiceSpec({
      type: "proxy",
      proxy: { publicIp: "127.0.0.1", port: 0, listen: "127.0.0.1" },
      controls: { egress: { blockCidrs: ["198.51.100.0/24"], blockPorts: [8081] } },
    });
    const service = (await startProviderService(spec, {
      dataDir: dir,
      directory: {} as PublicKeyDirectory,
      log: silentLogger,
      bandwidthMbps: 8,
    })) as ProxyProviderService;
    try {
      const config = await service.openSession({ id: "c1", consumer: "0xc", consumerData: {} });
      const h2 = http2.connect(`https://127.0.0.1:${config.port}`, { ca: config.certificate, checkServerIdentity: () => undefined });
      const ask = (authority: string) =>
        new Promise<string>((resolve) => {
          const req = h2.request({ ":method": "CONNECT", ":authority": authority, "proxy-authorization": `Bearer ${config.credential}` });
          req.on("response", (h) => resolve(`${h[":status"]} ${h["myst-refusal"]}`));
        });
      expect(await ask("198.51.100.9:80")).to.equal("403 blocked-network");
      expect(await ask("198.18.2.2:8081")).to.equal("403 blocked-port");
      expect(await ask("198.18.2.2:25")).to.equal("403 blocked-port");
      h2.destroy();
    } finally {
      await service.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("holds a stream back by what its bucket is owed: 1 MB/s owes 100 ms for 100 kB past its burst", function () {
    let now = 1_000;
    const bucket = bucketFor(8, () => now)!;
    expect(bucket.rate).to.equal(1_000_000);
    expect(bucket.take(64 * 1024)).to.equal(0);
    expect(bucket.take(100_000)).to.equal(100);
    // 50 ms later half the debt is paid back.
    now += 50;
    expect(bucket.take(0)).to.equal(50);
    expect(bucketFor(0)).to.equal(undefined);
  });
});

describe("proxy service: a session's limits and idle timeouts", function () {
  this.timeout(30_000);
  let dir: string;
  let silent: net.Server;
  let silentPort: number;
  /** Sockets the silent origin accepted, and whether each has closed. */
  const accepted: { socket: net.Socket; closed: boolean }[] = [];
  const stops: (() => Promise<void>)[] = [];

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-proxy-limits-"));
    // An origin that accepts and says nothing: a stream to it moves no byte until someone writes.
    silent = netModule.createServer((socket) => {
      const entry = { socket, closed: false };
      accepted.push(entry);
      socket.on("error", () => undefined);
      socket.once("close", () => (entry.closed = true));
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    silentPort = (silent.address() as net.AddressInfo).port;
  });

  after(async function () {
    for (const stop of stops.reverse()) await stop();
    silent?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A provider on loopback with `limits`, one session opened and its consumer's local port. */
  async function proxyWith(limits: ConstructorParameters<typeof ProxyProviderService>[0]["limits"], id: string) {
    const provider = new ProxyProviderService({
      dir,
      publicAddress: "127.0.0.1",
      port: 0,
      listen: "127.0.0.1",
      policy: new DestinationPolicy({ allowPrivateRanges: ["127.0.0.1/32"] }),
      limits,
    });
    await provider.start();
    const config = await provider.openSession({ id, consumer: "0xc", consumerData: {} });
    const tunnel = (await new ProxyConsumerService({ listen: "127.0.0.1:0" }).connect({ id, provider: "0xp", serviceConfig: config })) as ProxyTunnel;
    stops.push(async () => {
      await tunnel.stop();
      await provider.stop();
    });
    return { provider, config, tunnel, port: tunnel.address!.port };
  }

  /** An HTTP CONNECT to the silent origin through the local port: the status line, and the socket (left open). */
  function connectThrough(port: number): Promise<{ status: string; socket: net.Socket }> {
    return new Promise((resolve, reject) => {
      const socket = netModule.connect(port, "127.0.0.1", () => socket.write(`CONNECT 127.0.0.1:${silentPort} HTTP/1.1\r\n\r\n`));
      let head = "";
      socket.on("error", reject);
      socket.on("data", function onData(chunk: Buffer) {
        head += chunk.toString("latin1");
        if (!head.includes("\r\n")) return;
        socket.off("data", onData);
        resolve({ status: head.split("\r\n")[0], socket });
      });
    });
  }

  it("refuses a stream past the session's limit with 429 and the reason, and takes one again when a stream closes", async function () {
    const { port } = await proxyWith({ streamsPerSession: 2 }, "l1");
    const first = await connectThrough(port);
    const second = await connectThrough(port);
    expect([first.status, second.status]).to.deep.equal(["HTTP/1.1 200 Connection Established", "HTTP/1.1 200 Connection Established"]);
    const third = await connectThrough(port);
    expect(third.status).to.equal("HTTP/1.1 429 Too Many Requests (too-many-streams)");
    third.socket.destroy();
    first.socket.destroy();
    // Once the provider has seen the first stream close, its place is free again.
    const again = await until(async () => {
      const attempt = await connectThrough(port);
      if (attempt.status.includes(" 200 ")) return attempt;
      attempt.socket.destroy();
      return undefined;
    }, "a stream accepted after one closed");
    again.socket.destroy();
    second.socket.destroy();
  });

  it("refuses a second HTTP/2 connection of a session past its connection limit", async function () {
    const { config } = await proxyWith({ connectionsPerSession: 1 }, "l2");
    // The consumer's own connection is bound already (its first stream binds it; open one).
    const ask = (h2: http2.ClientHttp2Session) =>
      new Promise<string>((resolve) => {
        const req = h2.request({ ":method": "CONNECT", ":authority": `127.0.0.1:${silentPort}`, "proxy-authorization": `Bearer ${config.credential}` });
        req.on("response", (h) => resolve(`${h[":status"]} ${h["myst-refusal"] ?? ""}`.trim()));
        req.on("error", () => resolve("error"));
      });
    const one = http2.connect(`https://127.0.0.1:${config.port}`, { ca: config.certificate, checkServerIdentity: () => undefined });
    const two = http2.connect(`https://127.0.0.1:${config.port}`, { ca: config.certificate, checkServerIdentity: () => undefined });
    try {
      expect(await ask(one)).to.equal("200");
      expect(await ask(two)).to.equal("429 too-many-connections");
      expect(await ask(one)).to.equal("200");
    } finally {
      one.destroy();
      two.destroy();
    }
  });

  it("closes a stream that moves no byte for its idle time, at both ends", async function () {
    const { port } = await proxyWith({ streamIdleMs: 300 }, "l3");
    const before = accepted.length;
    const { status, socket } = await connectThrough(port);
    expect(status).to.equal("HTTP/1.1 200 Connection Established");
    await new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once("close", () => resolve())));
    await until(() => accepted.length > before && accepted[before].closed, "the origin's side of the idle stream to close");
  });

  it("closes a session's connection once it has had no open stream for its idle time, and the consumer is told why", async function () {
    const { provider, tunnel, port } = await proxyWith({ sessionIdleMs: 300 }, "l4");
    const { socket } = await connectThrough(port);
    expect(provider.isConnected("l4")).to.equal(true);
    socket.destroy();
    const reason = await new Promise<string>((resolve) => tunnel.onDown(resolve));
    expect(reason).to.match(/no stream was open/);
    await until(() => !provider.isConnected("l4"), "the provider to count the session disconnected");
  });
});
