import { expect } from "chai";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { IdentityKey } from "../../../node/identity/key";
import { type SignedProposal, signProposal } from "../../../node/proposal/proposal";
import { decodeStunMessage, encodeXorAddress, longTermKey } from "../../../node/nat/stun";
import type { ProxyServiceConfig } from "../../../node/services/proxy/config";
import { ProxyConsumerService, type ProxyTunnel } from "../../../node/services/proxy/consumer";
import { DestinationPolicy } from "../../../node/services/proxy/destination";
import { ProxyProviderService } from "../../../node/services/proxy/provider";
import { ensureCertificate } from "../../../node/services/certificate";
import { RelayProviderService } from "../../../node/services/relay/provider";
import type { RelayServiceConfig } from "../../../node/services/relay/config";
import { RelayGrantService, type RelayGrantTunnel, relayGrantOf } from "../../../node/services/relay/tcp-grant";
import { dialBackOf, TcpHeldService } from "../../../node/services/relay/tcp-held";
import { TURN_ATTR, TurnClient, type TurnServer } from "../../../node/services/relay/turn-client";
import { CONNECTION_ID, connectionAttemptOf, connectionIdOf, encodeConnectionBind, TCP_METHOD } from "../../../node/services/relay/turn-tcp";
import { requirePrerequisites } from "../../../scripts/lib/prereqs";
import { tempDir } from "../../../scripts/lib/tmp";
import { until } from "../../../scripts/lib/until";
import { makeProposal } from "../../../scripts/lib/proposals";

const TX = Buffer.from("0102030405060708090a0b0c", "hex");

describe("TURN TCP relaying codec (RFC 6062)", function () {
  it("reads a hand-laid ConnectionAttempt indication: its CONNECTION-ID and the peer's address", function () {
    // Header: type 0x001C (method 0x00C, class indication), length 20, the magic cookie, the transaction id.
    const header = Buffer.from("001c0014" + "2112a442", "hex");
    // CONNECTION-ID (0x002A), 4 bytes: 0xdeadbeef.
    const id = Buffer.from("002a0004" + "deadbeef", "hex");
    // XOR-PEER-ADDRESS (0x0012), 8 bytes: family 1, port 8443 ^ 0x2112, 198.51.100.9 ^ 0x2112a442.
    const port = (8443 ^ 0x2112).toString(16).padStart(4, "0");
    const ip = ((((198 << 24) | (51 << 16) | (100 << 8) | 9) ^ 0x2112a442) >>> 0).toString(16).padStart(8, "0");
    const peer = Buffer.from(`00120008` + `0001${port}${ip}`, "hex");
    const message = decodeStunMessage(Buffer.concat([header, TX, id, peer]));
    expect(message.cls).to.equal("indication");
    expect(message.method).to.equal(TCP_METHOD.CONNECTION_ATTEMPT);
    expect(connectionIdOf(message)).to.equal(0xdeadbeef);
    expect(connectionAttemptOf(message)).to.deep.equal({ id: 0xdeadbeef, peer: { address: "198.51.100.9", port: 8443 } });
  });

  it("finds no attempt in another method, in one without a peer, or with a CONNECTION-ID that is not 4 bytes", function () {
    const bad = decodeStunMessage(Buffer.concat([Buffer.from("001c0008" + "2112a442", "hex"), TX, Buffer.from("002a0004" + "00000001", "hex")]));
    expect(connectionIdOf(bad)).to.equal(1);
    expect(connectionAttemptOf(bad), "no XOR-PEER-ADDRESS").to.equal(undefined);
    const short = decodeStunMessage(Buffer.concat([Buffer.from("001c0008" + "2112a442", "hex"), TX, Buffer.from("002a0002" + "00010000", "hex")]));
    expect(connectionIdOf(short)).to.equal(undefined);
    const data = decodeStunMessage(Buffer.concat([Buffer.from("00170008" + "2112a442", "hex"), TX, Buffer.from("002a0004" + "00000001", "hex")]));
    expect(connectionAttemptOf(data), "a Data indication").to.equal(undefined);
  });

  it("lays out ConnectionBind as RFC 6062 §6.1 says: method 0x00B request, CONNECTION-ID first, then the long-term credential", function () {
    const key = longTermKey("1:ab", "myst", "pw");
    const bytes = encodeConnectionBind(0x01020304, { username: "1:ab", realm: "myst", nonce: "n0nce", key }, TX);
    expect(bytes.subarray(0, 2).toString("hex")).to.equal("000b");
    expect(bytes.subarray(4, 8).toString("hex")).to.equal("2112a442");
    expect(bytes.subarray(8, 20).equals(TX)).to.equal(true);
    // The first attribute: CONNECTION-ID (0x002A), length 4, the id.
    expect(bytes.subarray(20, 28).toString("hex")).to.equal("002a000401020304");
    expect(CONNECTION_ID).to.equal(0x2a);
    const m = decodeStunMessage(bytes);
    expect(m.attributes.map((a) => a.type)).to.deep.equal([0x2a, 0x06, 0x14, 0x15, 0x08, 0x8028]);
  });
});

describe("a proxy consumer's relay grant (the credential it hands a provider nobody can dial)", function () {
  const grant = {
    relay: `0x${"ab".repeat(20)}`,
    server: { address: "198.51.100.7", port: 443, transport: "tcp" },
    username: `1796586766:${"0".repeat(32)}`,
    password: "cGFzcw==",
    realm: "myst",
    peers: ["203.0.113.5"],
  };
  it("takes a well-formed one, none, and refuses a malformed one or a TLS server without a certificate (BAD_CONSUMER_DATA)", function () {
    expect(relayGrantOf({ client: "proxy/1", relay: grant })).to.deep.equal(grant);
    expect(relayGrantOf({ client: "proxy/1" })).to.equal(undefined);
    for (const bad of [
      { ...grant, peers: [] },
      { ...grant, peers: ["a", "b", "c", "d", "e"] },
      { ...grant, server: { ...grant.server, address: "relay.example" } },
      { ...grant, extra: 1 },
      { ...grant, server: { ...grant.server, transport: "tls" } },
    ])
      expect(() => relayGrantOf({ relay: bad }), JSON.stringify(bad).slice(0, 80)).to.throw(/relay grant/);
  });
});

/** A relay identity and its signed proposal (the one a dial-back carries), known to a one-entry registry. */
const relayKey = IdentityKey.generate();
const relayProposal = signProposal(relayKey, makeProposal(relayKey, { serviceType: "relay" }));
const relayRegistry = { publicKeyOf: async (id: string) => (id.toLowerCase() === relayKey.address.toLowerCase() ? relayKey.publicKey : null) };

describe("a proxy consumer's dial-back address (a TCP allocation it holds itself)", function () {
  const back = { relay: `0x${"ab".repeat(20)}`, address: "198.51.100.7", port: 50123, turnPort: 443, proposal: relayProposal };
  it("takes a well-formed one, none, and refuses a malformed one, or one beside a relay grant (BAD_CONSUMER_DATA)", function () {
    expect(dialBackOf({ client: "proxy/1", dialBack: back })).to.deep.equal(back);
    expect(dialBackOf({ client: "proxy/1" })).to.equal(undefined);
    for (const bad of [
      { ...back, address: "relay.example" },
      { ...back, port: 0 },
      { ...back, turnPort: 70_000 },
      { ...back, extra: 1 },
      { address: back.address, port: back.port },
    ])
      expect(() => dialBackOf({ dialBack: bad }), JSON.stringify(bad)).to.throw(/dial-back address is malformed/);
    expect(() => dialBackOf({ dialBack: back, relay: {} })).to.throw(/both a relay grant and a dial-back/);
  });
});

/**
 * The proxy through a relay's TCP allocation, against Debian's coturn on loopback: the provider
 * holds the allocation over TLS with the credential the consumer's relay session got, the consumer
 * dials the relayed address, TLS runs end to end (pinned to the provider's certificate), coturn
 * counts the bytes, and the relay's peer policy bounds what a TCP allocation may reach.
 */
describe("proxy through a relay's TCP allocation (real coturn on loopback)", function () {
  this.timeout(40_000);
  const RELAY_IP = "127.0.0.2";
  const dirs = { relay: tempDir("myst-prelay-r-"), provider: tempDir("myst-prelay-p-") };
  let relay: RelayProviderService;
  let provider: ProxyProviderService;
  let origin: http.Server;
  let originPort: number;
  let relayPort: number;
  let n = 0;
  const session = () => (++n + 0x700).toString(16).padStart(32, "0");

  before(async function () {
    requirePrerequisites(this, "relay", process.getuid?.() === 0 ? [] : ["root"]);
    relayPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    relay = new RelayProviderService({
      dir: dirs.relay.dir,
      publicIp: RELAY_IP,
      port: relayPort,
      minPort: 50300,
      maxPort: 50399,
      allowPrivatePeers: true,
      identity: relayKey.address,
    });
    await relay.start();
    origin = http.createServer((req, res) => res.end(req.url === "/big" ? Buffer.alloc(12_000_000, 7) : `hello ${req.socket.remoteAddress}`));
    await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
    originPort = (origin.address() as net.AddressInfo).port;
    provider = new ProxyProviderService({
      dir: dirs.provider.dir,
      publicAddress: "127.0.0.1",
      port: 0,
      listen: "127.0.0.1",
      policy: new DestinationPolicy({ allowPrivate: true }),
      directory: relayRegistry,
    });
    await provider.start();
  });

  after(async function () {
    await provider?.stop();
    await relay?.stop();
    origin?.close();
    dirs.relay.cleanup();
    dirs.provider.cleanup();
  });

  /** The consumer's relay session as the consumer node makes it: the grant service, the relay's answer (with its proof credential), the grant. */
  async function grantFor(id: string): Promise<RelayGrantTunnel & { config: RelayServiceConfig }> {
    const service = new RelayGrantService({ relay: `0x${"cd".repeat(20)}`, server: { address: RELAY_IP }, allowPrivate: true });
    const consumerData = await service.consumerData();
    const config = await relay.openSession({ id, consumer: "0xc", consumerData });
    return Object.assign(await service.connect({ id, provider: "0xr", serviceConfig: config }), { config });
  }
  const tlsServer = (config: RelayServiceConfig): TurnServer => ({
    address: RELAY_IP,
    port: relayPort,
    transport: "tls",
    pin: { certificate: config.certificate!, fingerprint: config.fingerprint! },
  });
  /** Resolves with the reason once the allocation is closed (by the relay's cut-off). */
  const closedOf = (turn: TurnClient) => (turn.closed ? Promise.resolve("closed") : new Promise<string>((r) => turn.once("closed", r)));

  /** Bytes the provider's relayed address sends 127.0.0.3 (an address no grant names) for a TLS hello's first bytes, until it closes. */
  async function bytesToStranger(config: { address: string; port: number }): Promise<number> {
    const stranger = net.connect({ host: config.address, port: config.port, localAddress: "127.0.0.3" });
    let got = 0;
    stranger.on("data", (d) => (got += d.length));
    stranger.on("error", () => undefined);
    stranger.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]));
    await new Promise((r) => stranger.once("close", r));
    return got;
  }

  async function fetchThrough(listen: string, path: string): Promise<Buffer> {
    const [host, port] = listen.split(":");
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port: Number(port) }, () => s.write(`GET http://127.0.0.1:${originPort}${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
      const chunks: Buffer[] = [];
      s.on("data", (c) => chunks.push(c));
      s.on("end", () => resolve(Buffer.concat(chunks)));
      s.on("error", reject);
    });
  }

  it("takes the one peer from the consumer's proof (a TLS allocation's client address in coturn's listing), cuts the proof off, and cuts off a second use of the proof credential", async function () {
    const id = session();
    const grant = await grantFor(id);
    try {
      expect(grant.grant.peers, "the address coturn's socket had").to.deep.equal(["127.0.0.1"]);
      expect(grant.config.proof!.username).to.match(/:proof-/);
      // The proof credential relays nothing: a new allocation under it is cut off on sight.
      // Cut off on sight: after the allocation was answered, or (a loaded machine) before.
      const cut = await TurnClient.allocate(tlsServer(grant.config), grant.config.proof!, {}).then(closedOf, (err: Error) => err.message);
      expect(cut).to.match(/closed|ECONNRESET/);
      expect(relay.isConnected(id), "the session itself goes on").to.equal(true);
    } finally {
      await relay.closeSession(id, "done");
    }
  });

  it("refuses a proving session that names peers itself, or a provider (BAD_CONSUMER_DATA)", async function () {
    for (const consumerData of [
      { proveSelf: true, peers: ["127.0.0.3"] },
      { proveSelf: true, provider: { proposal: "{}", signature: "0x" } },
      { proveSelf: "yes" },
    ])
      await relay.openSession({ id: session(), consumer: "0xc", consumerData }).then(
        () => expect.fail(`took ${JSON.stringify(consumerData)}`),
        (err) => expect(err.code, JSON.stringify(consumerData)).to.equal("BAD_CONSUMER_DATA"),
      );
  });

  it("takes no address from a proof over UDP (a datagram's source can be forged): the session is cut off, a second proof allocation too, and the provider's allocation that permits a peer", async function () {
    const id = session();
    const config = await relay.openSession({ id, consumer: "0xc", consumerData: { transports: ["udp", "tcp", "tls"], proveSelf: true } });
    try {
      // The relay ends a UDP allocation (no close over UDP: a request under it fails once coturn forgot it).
      const ended = async (a: TurnClient, what: string) => {
        await until(
          () =>
            a.permit(["127.0.0.1"]).then(
              () => false,
              () => true,
            ),
          `the relay to end ${what}`,
          20_000,
        );
        await a.close();
      };
      await ended(await TurnClient.allocate({ address: RELAY_IP, port: relayPort, transport: "udp" }, config.proof!, {}), "the UDP proof allocation");
      expect(relay.isConnected(id), "a proof that proves nothing ends its session").to.equal(false);
      // The proof credential stays valid at coturn until it expires: another allocation under it is refused or cut off on sight.
      const again = await TurnClient.allocate({ address: RELAY_IP, port: relayPort, transport: "udp" }, config.proof!, {}).catch(() => undefined);
      if (again) await ended(again, "a second proof allocation");
      const held = await TurnClient.allocate(tlsServer(config), { username: config.username, password: config.password }, { relayedTransport: "tcp" });
      const closed = closedOf(held);
      await held.permit(["127.0.0.1"]).catch(() => undefined);
      expect(await closed).to.match(/closed|ECONNRESET/);
    } finally {
      await relay.closeSession(id, "done");
    }
  });

  it("gives a consumer that names someone else's address for the provider's allocation no path: the relay cuts the allocation off, and that address gets nothing through it", async function () {
    const id = session();
    const grant = await grantFor(id);
    // The consumer proved 127.0.0.1 and tells the provider to let in 127.0.0.3 (someone else's).
    const forged = { ...grant.grant, peers: ["127.0.0.3"] };
    const opened = provider.openSession({ id, consumer: "0xc", consumerData: { client: "proxy/1", relay: forged } }) as Promise<ProxyServiceConfig>;
    const config = await opened.catch(() => undefined);
    try {
      await until(() => !relay.isConnected(id), "the relay to cut the session off", 20_000);
      if (config) {
        expect(await bytesToStranger(config), "the named stranger got nothing from the provider").to.equal(0);
      }
    } finally {
      await provider.closeSession(id, "done").catch(() => undefined);
      await relay.closeSession(id, "done");
    }
  });

  it("carries a proxy session through the provider's TCP allocation: TLS to the provider's pinned certificate end to end, coturn counting the wire bytes the consumer meters", async function () {
    const id = session();
    const grant = await grantFor(id);
    expect(grant.grant.server.transport, "the control connection goes over TLS").to.equal("tls");
    const config = (await provider.openSession({ id, consumer: "0xc", consumerData: { client: "proxy/1", relay: grant.grant } })) as ProxyServiceConfig;
    expect(config.relayed).to.equal(true);
    expect(config.address).to.equal(RELAY_IP);
    const tunnel = (await new ProxyConsumerService({ listen: "127.0.0.1:0" }).connect({ id, provider: "0xp", serviceConfig: config })) as ProxyTunnel;
    try {
      grant.meterBy(() => tunnel.wireBytes()!);
      const body = await fetchThrough(tunnel.listen!, "/big");
      expect(body.length).to.be.greaterThan(12_000_000);
      expect(provider.usage(id)!.bytesOut).to.be.greaterThan(12_000_000);
      expect(grant.stats().bytesIn, "the consumer's wire meter").to.be.greaterThan(12_000_000);
      // coturn brings its counters up to date every 4,096 reads, and a loaded machine reads in bigger
      // chunks: download again (at most 8 times in all) until they show at least 6 MB.
      let counted = { bytesIn: 0, bytesOut: 0 };
      for (let i = 1; ; i++) {
        await relay.readCounters();
        counted = relay.usage(id)!;
        if (counted.bytesIn + counted.bytesOut > 6_000_000 || i === 8) break;
        expect((await fetchThrough(tunnel.listen!, "/big")).length).to.be.greaterThan(12_000_000);
      }
      const wire = grant.stats();
      expect(counted.bytesIn + counted.bytesOut, "coturn's counters show the spliced bytes").to.be.greaterThan(6_000_000);
      expect(counted.bytesIn + counted.bytesOut, "coturn never counts more than the consumer's wire meter plus the control connection").to.be.at.most(
        wire.bytesIn + wire.bytesOut + 20_000,
      );
    } finally {
      await tunnel.stop();
      await provider.closeSession(id, "done");
      await relay.closeSession(id, "done");
    }
  });

  it("refuses a stream through the relayed address without the session's credential (407), and lets no other address connect", async function () {
    const id = session();
    const grant = await grantFor(id);
    const config = (await provider.openSession({ id, consumer: "0xc", consumerData: { client: "proxy/1", relay: grant.grant } })) as ProxyServiceConfig;
    try {
      const h2 = http2.connect(`https://${config.address}:${config.port}`, { ca: config.certificate, checkServerIdentity: () => undefined });
      const status = await new Promise<number>((resolve, reject) => {
        h2.on("error", reject);
        const req = h2.request({ ":method": "CONNECT", ":authority": `127.0.0.1:${originPort}` });
        req.on("response", (h) => resolve(Number(h[":status"])));
        req.on("error", reject);
      });
      h2.destroy();
      expect(status).to.equal(407);
      // From 127.0.0.3, an address the grant does not name: coturn has no permission for it and closes the connection.
      expect(await bytesToStranger(config), "the stranger got nothing from the provider").to.equal(0);
    } finally {
      await provider.closeSession(id, "done");
      await relay.closeSession(id, "done");
    }
  });

  it("cuts off a TCP allocation that Connects to a peer its session did not name (coturn cannot refuse Connect; the relay's peer policy ends it)", async function () {
    const id = session();
    const grant = await grantFor(id);
    const g = grant.grant;
    const turn = await TurnClient.allocate(
      { address: RELAY_IP, port: relayPort, transport: "tls", pin: { certificate: g.certificate!, fingerprint: g.fingerprint! } },
      { username: g.username, password: g.password },
      { relayedTransport: "tcp" },
    );
    const closed = new Promise<string>((r) => turn.once("closed", r));
    // 127.0.0.3 is not the peer the session named (127.0.0.1): coturn dials it, the relay then cuts the allocation off.
    const stranger = net.createServer((s) => s.on("error", () => undefined).end("x"));
    await new Promise<void>((r) => stranger.listen(0, "127.0.0.3", r));
    const port = (stranger.address() as net.AddressInfo).port;
    await turn
      .request(TCP_METHOD.CONNECT, [{ type: TURN_ATTR.XOR_PEER_ADDRESS, value: encodeXorAddress({ family: 4, address: "127.0.0.3", port }, Buffer.alloc(12)) }])
      .catch(() => undefined);
    expect(await closed).to.match(/closed|ECONNRESET/);
    // Closed once coturn's own listing no longer shows it (the relay's cut-off waits for that).
    await until(() => !relay.isConnected(id), "the relay to end the session", 10_000);
    stranger.close();
    await relay.closeSession(id, "done");
  });

  it("dials back to no port below a relay's (1024): a consumer cannot make the provider connect to a service port before it pays", async function () {
    const err = await provider
      .openSession({
        id: session(),
        consumer: "0xc",
        consumerData: {
          client: "proxy/1",
          dialBack: { relay: relayKey.address, address: "127.0.0.1", port: 25, turnPort: relayPort, proposal: relayProposal },
        },
      })
      .then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
    expect(err?.code).to.equal("BAD_CONSUMER_DATA");
    expect(err?.message).to.match(/relayed port the consumer names \(25\) is not a relay's/);
  });

  it("dials back only to an address whose TURN port shows the relay's certificate: not to a host that serves another, or none", async function () {
    // A host that is not the relay: a TLS server with a certificate of its own, and a port the dial-back names.
    const host = "127.0.0.3";
    const certDir = tempDir("myst-prelay-x-");
    const own = await ensureCertificate(certDir.dir, "other", { commonName: "myst-relay 0x" + "ee".repeat(20) });
    const tlsServer = tls.createServer({ key: own.key, cert: own.certificate }, (s) => s.on("error", () => undefined).end());
    await new Promise<void>((r) => tlsServer.listen(0, host, r));
    let dialled = 0;
    const target = net.createServer((s) => {
      dialled++;
      s.destroy();
    });
    await new Promise<void>((r) => target.listen(0, host, r));
    const refusal = (turnPort: number) =>
      provider
        .openSession({
          id: session(),
          consumer: "0xc",
          consumerData: {
            client: "proxy/1",
            dialBack: { relay: relayKey.address, address: host, port: (target.address() as net.AddressInfo).port, turnPort, proposal: relayProposal },
          },
        })
        .then(
          () => "opened",
          (e: Error & { code?: string }) => `${e.code}: ${e.message}`,
        );
    try {
      // What the handshake met stays in the provider's log: the consumer is told only that it failed.
      const wrongCert = await refusal((tlsServer.address() as net.AddressInfo).port);
      expect(wrongCert).to.match(
        new RegExp(`^BAD_CONSUMER_DATA: ${host}:\\d+ is not shown to run relay ${relayKey.address} \\(the provider's log says why\\)$`),
      );
      // Nothing listens there: refused too (what it tells the consumer is what any HTTPS client learns).
      const closed = await new Promise<number>((resolve) => {
        const s = net.createServer().listen(0, host, () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => resolve(p));
        });
      });
      const closedRefusal = await refusal(closed);
      expect(closedRefusal).to.match(/is not shown to run relay .*\(the provider's log says why\)$/);
      expect(closedRefusal).not.to.match(/ECONNREFUSED/);
      // Nor does the proof go to a port this proxy blocks (mail), on a private address too.
      expect(await refusal(25)).to.match(/^BAD_CONSUMER_DATA: the relayed address the consumer names is refused: .*25/);
      expect(dialled, "the port the dial-back named").to.equal(0);
    } finally {
      tlsServer.close();
      target.close();
      certDir.cleanup();
    }
  });

  it("carries a proxy session through a TCP allocation the consumer holds (a consumer allowed only TCP/443): the provider dials back to the relayed address, TLS end to end over the data connection, coturn counting what the consumer meters", async function () {
    const id = session();
    const held = new TcpHeldService({
      relay: relayKey.address,
      relayProposal,
      server: { address: RELAY_IP },
      peers: ["127.0.0.1"],
      provider: {} as SignedProposal,
    });
    const relayConfig = await relay.openSession({ id, consumer: "0xc", consumerData: await held.consumerData() });
    const allocation = await held.connect({ id, provider: "0xr", serviceConfig: relayConfig });
    expect(allocation.server, "the allocation is held over the relay's TURN port").to.deep.equal({ address: RELAY_IP, port: relayPort });
    const config = (await provider.openSession({
      id,
      consumer: "0xc",
      consumerData: { client: "proxy/1", dialBack: allocation.dialBack },
    })) as ProxyServiceConfig;
    expect(config).to.deep.include({ address: allocation.dialBack.address, port: allocation.dialBack.port, relayed: true });
    const tunnel = (await new ProxyConsumerService({ listen: "127.0.0.1:0" }).connect({
      id,
      provider: "0xp",
      serviceConfig: config,
      stream: () => allocation.next(),
    })) as ProxyTunnel;
    try {
      allocation.meterBy(() => tunnel.wireBytes()!);
      expect((await fetchThrough(tunnel.listen!, "/big")).length).to.be.greaterThan(12_000_000);
      expect(provider.usage(id)!.bytesOut).to.be.greaterThan(12_000_000);
      expect(allocation.stats().bytesIn, "the consumer's wire meter").to.be.greaterThan(12_000_000);
      let counted = { bytesIn: 0, bytesOut: 0 };
      for (let i = 1; ; i++) {
        await relay.readCounters();
        counted = relay.usage(id)!;
        if (counted.bytesIn + counted.bytesOut > 6_000_000 || i === 8) break;
        expect((await fetchThrough(tunnel.listen!, "/big")).length).to.be.greaterThan(12_000_000);
      }
      const wire = allocation.stats();
      expect(counted.bytesIn + counted.bytesOut, "coturn's counters show the spliced bytes").to.be.greaterThan(6_000_000);
      expect(counted.bytesIn + counted.bytesOut).to.be.at.most(wire.bytesIn + wire.bytesOut + 20_000);
      expect(relay.isConnected(id), "the relay's peer policy leaves the session be: the provider is its named peer").to.equal(true);
    } finally {
      await tunnel.stop();
      await allocation.stop();
      await provider.closeSession(id, "done");
      await relay.closeSession(id, "done");
    }
  });
});
