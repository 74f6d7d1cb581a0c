import { expect } from "chai";
import dgram from "node:dgram";
import net from "node:net";
import { RelayConsumerService, type RelayTunnel } from "../../../node/services/relay/consumer";
import type { RelayServiceConfig } from "../../../node/services/relay/config";
import { CoturnProcess } from "../../../node/services/relay/coturn";
import { RelayProviderService, restPassword } from "../../../node/services/relay/provider";
import { TurnClient, TurnError, encodeChannelData, nextStreamFrame } from "../../../node/services/relay/turn-client";
import { requirePrerequisites } from "../../../scripts/lib/prereqs";
import { tempDir } from "../../../scripts/lib/tmp";
import { until } from "../../../scripts/lib/until";

const hasCoturn = () => {
  try {
    require("node:fs").accessSync("/usr/bin/turnserver");
    return true;
  } catch {
    return false;
  }
};

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const SESSION = (n: number) => n.toString(16).padStart(32, "0");

describe("TURN framing", function () {
  it("pads ChannelData to 4 bytes over a stream and finds whole frames in a TCP buffer", function () {
    const frame = encodeChannelData(0x4000, Buffer.from("abcde"), true);
    expect(frame.length).to.equal(12);
    const two = Buffer.concat([frame, encodeChannelData(0x4001, Buffer.from("xy"), true)]);
    const first = nextStreamFrame(two)!;
    expect(first.frame.subarray(4).toString()).to.equal("abcde");
    expect(nextStreamFrame(first.rest)!.frame.subarray(4).toString()).to.equal("xy");
    expect(nextStreamFrame(two.subarray(0, 7))).to.equal(undefined);
  });
});

/**
 * The relay service against Debian's real coturn on 127.0.0.1 (no namespaces): a paid session's
 * credential allocates, the forwarder carries a "tunnel" both ways, coturn's meter agrees with the
 * consumer's, an expired or forged credential is refused by coturn itself, and ending the session
 * cuts the allocation off through coturn's CLI.
 */
describe("relay service (real coturn on loopback)", function () {
  this.timeout(30_000);
  const dir = tempDir("myst-relay-");
  let relay: RelayProviderService;
  let port: number;

  before(async function () {
    // Under CI=true a missing coturn or root fails the suite instead of skipping it.
    requirePrerequisites(this, "relay", [...(hasCoturn() ? [] : ["coturn (turnserver)"]), ...(process.getuid?.() === 0 ? [] : ["root"])]);
    port = await freePort();
    relay = new RelayProviderService({ dir: dir.dir, publicIp: "127.0.0.1", port, minPort: 50100, maxPort: 50199, allowPrivatePeers: true });
    await relay.start();
  });

  after(async function () {
    await relay?.stop();
    dir.cleanup();
  });

  /** A provider's "tunnel": a UDP socket that echoes whatever comes to it. */
  async function echoPeer(): Promise<dgram.Socket> {
    const s = dgram.createSocket("udp4");
    await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
    s.on("message", (m, from) => s.send(m, from.port, from.address));
    return s;
  }

  for (const transport of ["udp", "tcp"] as const)
    it(`carries a tunnel's datagrams both ways over TURN-${transport.toUpperCase()}, metered alike by coturn and the consumer`, async function () {
      const id = SESSION(transport === "udp" ? 1 : 2);
      const config = (await relay.openSession({ id, consumer: "0xconsumer", consumerData: {} })) as RelayServiceConfig;
      expect(config.username).to.match(new RegExp(`^\\d+:${id}$`));
      const service = new RelayConsumerService({ transports: [transport] });
      const tunnel = (await service.connect({ id, provider: "0xrelay", serviceConfig: config })) as RelayTunnel;
      expect(tunnel.transport).to.equal(transport);
      expect(tunnel.relayed.address).to.equal("127.0.0.1");
      const provider = await echoPeer();
      await tunnel.permit(["127.0.0.1"]);
      // The provider sends first (as WireGuard's keepalive does), to the relayed address.
      provider.send(Buffer.from("hello"), tunnel.relayed.port, tunnel.relayed.address);
      const local = dgram.createSocket("udp4");
      await new Promise<void>((r) => local.bind(0, "127.0.0.1", () => r()));
      const got: Buffer[] = [];
      local.on("message", (m) => got.push(m));
      local.send(Buffer.from("first"), tunnel.local.port, tunnel.local.address);
      await until(
        () => got.some((g) => g.toString() === "hello") && got.some((g) => g.toString() === "first"),
        "both first datagrams through the relay",
        10_000,
      );
      for (let i = 0; i < 100; i++) {
        local.send(Buffer.alloc(1000, i), tunnel.local.port, tunnel.local.address);
        if (i % 10 === 9) await new Promise((r) => setTimeout(r, 5));
      }
      await until(() => got.length >= 80, "the echoes back through the relay", 10_000);
      await tunnel.stop();
      // coturn's last usage line comes when the allocation ends: then its count and ours agree.
      const ours = tunnel.stats();
      await until(
        () => {
          const u = relay.usage(id)!;
          return u.bytesIn >= ours.bytesOut - 200 && u.bytesIn > 0;
        },
        "coturn's usage line for the closed allocation",
        10_000,
      );
      const theirs = relay.usage(id)!;
      const total = (u: { bytesIn: number; bytesOut: number }) => u.bytesIn + u.bytesOut;
      expect(Math.abs(total(theirs) - total(ours)) / total(ours)).to.be.below(0.05);
      local.close();
      provider.close();
    });

  it("refuses an expired credential (coturn checks the expiry itself)", async function () {
    // Signed with the relay's own secret, the right HMAC: only its expiry (5 s ago) is wrong.
    const expired = relay.credential(SESSION(3), Math.floor(Date.now() / 1000) - 5);
    const fresh = relay.credential(SESSION(3), Math.floor(Date.now() / 1000) + 60);
    const allocated = await TurnClient.allocate({ address: "127.0.0.1", port, transport: "udp" }, fresh);
    await allocated.close();
    const err = await TurnClient.allocate({ address: "127.0.0.1", port, transport: "udp" }, expired).then(
      () => undefined,
      (e) => e,
    );
    expect(err).to.be.instanceOf(TurnError);
    expect((err as TurnError).status).to.equal(401);
  });

  it("refuses a credential that is not the relay's (no paid session, no allocation)", async function () {
    const username = `${Math.floor(Date.now() / 1000) + 300}:${SESSION(4)}`;
    const err = await TurnClient.allocate({ address: "127.0.0.1", port, transport: "udp" }, { username, password: restPassword("guessed", username) }).then(
      () => undefined,
      (e) => e,
    );
    expect((err as TurnError).status).to.equal(401);
  });

  it("cuts the allocation off when the session ends, though its credential has not expired", async function () {
    const id = SESSION(5);
    const config = (await relay.openSession({ id, consumer: "0xc", consumerData: {} })) as RelayServiceConfig;
    const tunnel = (await new RelayConsumerService().connect({ id, provider: "0xrelay", serviceConfig: config })) as RelayTunnel;
    await tunnel.permit(["127.0.0.1"]);
    const provider = dgram.createSocket("udp4");
    await new Promise<void>((r) => provider.bind(0, "127.0.0.1", () => r()));
    const local = dgram.createSocket("udp4");
    await new Promise<void>((r) => local.bind(0, "127.0.0.1", () => r()));
    let got = 0;
    local.on("message", () => got++);
    local.send(Buffer.from("hi"), tunnel.local.port, tunnel.local.address);
    const send = () => provider.send(Buffer.from("x"), tunnel.relayed.port, tunnel.relayed.address);
    send();
    await until(() => got > 0, "the provider's datagram through the relay");
    await relay.closeSession(id, "stopped paying");
    const before = got;
    for (let i = 0; i < 10; i++) {
      send();
      await new Promise((r) => setTimeout(r, 30));
    }
    expect(got).to.equal(before);
    await tunnel.stop();
    local.close();
    provider.close();
  });

  it("cuts off at once a credential used again after its session ended (it stays valid until its expiry)", async function () {
    const id = SESSION(6);
    const config = (await relay.openSession({ id, consumer: "0xc", consumerData: {} })) as RelayServiceConfig;
    await relay.closeSession(id, "ended at once");
    // The same username and password, within their expiry: coturn allocates, and the relay cuts it off.
    const late = await TurnClient.allocate({ address: "127.0.0.1", port, transport: "udp" }, config);
    // Cut off already, coturn may refuse the permission itself (400): either way nothing passes.
    await late.permit(["127.0.0.1"]).catch(() => undefined);
    const provider = dgram.createSocket("udp4");
    await new Promise<void>((r) => provider.bind(0, "127.0.0.1", () => r()));
    let got = 0;
    late.on("data", () => got++);
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < 10; i++) {
      provider.send(Buffer.from("x"), late.relayed.port, late.relayed.address);
      await new Promise((r) => setTimeout(r, 30));
    }
    expect(got, "datagrams relayed on an ended session's credential").to.equal(0);
    await late.close().catch(() => undefined);
    provider.close();
  });

  it("believes no usage line about a username it did not issue, nor one naming another username's session", function () {
    const id = SESSION(7);
    const coturn = new CoturnProcess({ dir: dir.dir, port: 1, minPort: 2, maxPort: 3, secret: "s", realm: "r", issued: (u) => u === `1:${id}` });
    const line = (session: string, user: string, rb: number) => `0: : session ${session}: usage: realm=<r>, username=<${user}>, rp=1, rb=${rb}, sp=1, sb=${rb}`;
    const feed = (text: string) => coturn.read(text);
    feed(line("001000000000000001", `1:${id}`, 100));
    feed(line("001000000000000002", "9:someone-else", 5000));
    feed(line("001000000000000001", "9:someone-else", 5000));
    expect(coturn.usage.get(`1:${id}`)?.clientIn).to.equal(100);
    expect(coturn.usage.has("9:someone-else")).to.equal(false);
  });
});
