import dgram from "node:dgram";
import { expect } from "chai";
import { isCarrierAddress, isPublicAddress } from "../../../node/nat/addresses";
import type { PortMapper, RouterMapping } from "../../../node/nat/port-mapping";
import { ReachabilityMonitor } from "../../../node/nat/monitor";
import { measureReachability, type Reachability } from "../../../node/nat/reachability";
import { until } from "../../../scripts/lib/until";
import { ATTR, BINDING, decodeStunMessage, encodeAddress, encodeStunMessage, encodeXorAddress, type StunMessage } from "../../../node/nat/stun";

/**
 * A STUN server pair in the manner of RFC 5780 on loopback (127.0.0.2 and 127.0.0.3, two ports each),
 * that reports whatever mapping the test says the NAT made — the NAT itself is the e2e's
 * (test/e2e/reachability.test.ts); here the classifier's reading of the answers is under test.
 */
async function natLikeServers(nat: {
  /** The mapping the NAT gave the client's socket toward a server address. */
  mappedFor: (server: { address: string; port: number }, client: { address: string; port: number }) => { address: string; port: number };
  /** Which CHANGE-REQUEST answers get through the NAT's filter. */
  letsIn: (change: { ip: boolean; port: boolean }) => boolean;
  /** Nothing gets through now (a kill switch that lets only the tunnel out). */
  silent?: () => boolean;
}) {
  const sockets = new Map<string, dgram.Socket>();
  const requests: { at: string; change?: number }[] = [];
  for (const address of ["127.0.0.2", "127.0.0.3"])
    for (const slot of [0, 1]) {
      const s = dgram.createSocket("udp4");
      await new Promise<void>((r) => s.bind(0, address, r));
      sockets.set(`${address}/${slot}`, s);
    }
  const addressOf = (k: string) => ({ address: k.split("/")[0], port: sockets.get(k)!.address().port });
  for (const [k, s] of sockets) {
    s.on("message", (b, from) => {
      if (nat.silent?.()) return;
      const req: StunMessage = decodeStunMessage(b);
      const changeAttr = req.attributes.find((a) => a.type === ATTR.CHANGE_REQUEST);
      const change = changeAttr ? changeAttr.value.readUInt32BE(0) : 0;
      requests.push({ at: k, change });
      const [address, slot] = k.split("/");
      const ip = (change & 4) !== 0;
      const port = (change & 2) !== 0;
      const replyFrom = `${ip ? (address === "127.0.0.2" ? "127.0.0.3" : "127.0.0.2") : address}/${port ? 1 - Number(slot) : slot}`;
      if (change && !nat.letsIn({ ip, port })) return;
      const mapped = nat.mappedFor(addressOf(k), { address: from.address, port: from.port });
      const other = addressOf(`${address === "127.0.0.2" ? "127.0.0.3" : "127.0.0.2"}/${1 - Number(slot)}`);
      const reply = encodeStunMessage(
        {
          method: BINDING,
          cls: "success",
          transactionId: req.transactionId,
          attributes: [
            { type: ATTR.XOR_MAPPED_ADDRESS, value: encodeXorAddress({ family: 4, ...mapped }, req.transactionId) },
            { type: ATTR.OTHER_ADDRESS, value: encodeAddress({ family: 4, ...other }) },
          ],
        },
        { fingerprint: true },
      );
      sockets.get(replyFrom)!.send(reply, from.port, from.address);
    });
  }
  return {
    primary: `127.0.0.2:${addressOf("127.0.0.2/0").port}`,
    requests,
    close: () => Promise.all([...sockets.values()].map((s) => new Promise<void>((r) => s.close(() => r())))),
  };
}

const FAST = { stun: { rtoMs: 20, requests: 2, lastWaitFactor: 2 }, filteringProbe: { rtoMs: 20, requests: 2, lastWaitFactor: 2 } };

class FakeMapper implements PortMapper {
  unmapped: number[] = [];
  constructor(private readonly answer: (port: number) => RouterMapping | Error) {}
  async map(port: number): Promise<RouterMapping> {
    const a = this.answer(port);
    if (a instanceof Error) throw a;
    return a;
  }
  async unmap(port: number): Promise<void> {
    this.unmapped.push(port);
  }
  async stop(): Promise<void> {}
}

const routerMapping = (port: number, externalAddress: string): RouterMapping => ({
  protocol: "udp",
  internalPort: port,
  externalAddress,
  externalPort: 41000,
  method: "nat-pmp",
  gateway: "192.168.1.1",
  lifetimeS: 7200,
});

describe("measuring reachability", function () {
  let servers: Awaited<ReturnType<typeof natLikeServers>> | undefined;
  afterEach(async function () {
    await servers?.close();
    servers = undefined;
  });

  it("behind a NAT that keeps one port per socket and filters by address and port: a punch-only contact on the public mapping", async function () {
    servers = await natLikeServers({ mappedFor: () => ({ address: "198.51.100.7", port: 40000 }), letsIn: () => false });
    const r = await measureReachability({ stunServers: [servers.primary], localAddresses: ["192.168.1.20"], ...FAST });
    expect(r.mapping).to.equal("endpoint-independent");
    expect(r.filtering).to.equal("address-and-port-dependent");
    expect(r.publicAddress).to.equal("198.51.100.7");
    expect(r.contacts).to.deep.equal([{ kind: "punch-only", address: "198.51.100.7", port: 40000, protocol: "udp" }]);
    expect(r.summary).to.equal("behind a home router that keeps one port per app: reachable by hole punching");
  });

  it("behind a NAT that gives each destination a new port: endpoint-dependent, and says who can still reach it", async function () {
    servers = await natLikeServers({
      mappedFor: (server) => ({ address: "198.51.100.7", port: server.address === "127.0.0.2" ? 40000 : 40001 }),
      letsIn: () => false,
    });
    const r = await measureReachability({ stunServers: [servers.primary], localAddresses: ["192.168.1.20"], ...FAST });
    expect(r.mapping).to.equal("endpoint-dependent");
    expect(r.summary).to.include("symmetric NAT").and.include("need a relay");
  });

  it("tells address-dependent filtering (an answer from the other port gets in) from endpoint-independent (from anywhere)", async function () {
    servers = await natLikeServers({ mappedFor: () => ({ address: "198.51.100.7", port: 40000 }), letsIn: (c) => !c.ip });
    expect((await measureReachability({ stunServers: [servers.primary], localAddresses: [], ...FAST })).filtering).to.equal("address-dependent");
    await servers.close();
    servers = await natLikeServers({ mappedFor: () => ({ address: "198.51.100.7", port: 40000 }), letsIn: () => true });
    expect((await measureReachability({ stunServers: [servers.primary], localAddresses: [], ...FAST })).filtering).to.equal("endpoint-independent");
  });

  it("with its own address seen and nothing filtered: no NAT, a public contact on its own port", async function () {
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
    try {
      servers = await natLikeServers({ mappedFor: (_s, client) => client, letsIn: () => true });
      // 127.0.0.1 stands for a public address here: the classifier compares with the machine's own.
      const r = await measureReachability({ stunServers: [servers.primary], socket, localAddresses: ["127.0.0.1"], ...FAST });
      expect(r.mapping).to.equal("none");
      expect(r.filtering).to.equal("endpoint-independent");
      // …but a loopback address is never a contact.
      expect(r.contacts).to.deep.equal([]);
      expect(r.details.localPort).to.equal(socket.address().port);
    } finally {
      socket.close();
    }
  });

  it("never names a private or carrier address: a STUN server inside the same private network yields no contact", async function () {
    servers = await natLikeServers({ mappedFor: () => ({ address: "100.64.7.9", port: 40000 }), letsIn: () => false });
    const r = await measureReachability({ stunServers: [servers.primary], localAddresses: ["192.168.1.20"], ...FAST });
    expect(r.contacts).to.deep.equal([]);
    expect(r.publicAddress).to.equal(undefined);
  });

  it("with no STUN server answering: unknown, no contacts, and the summary says why", async function () {
    const silent = dgram.createSocket("udp4");
    await new Promise<void>((r) => silent.bind(0, "127.0.0.2", r));
    try {
      const r = await measureReachability({ stunServers: [`127.0.0.2:${silent.address().port}`, "stun.invalid:3478"], ...FAST });
      expect([r.mapping, r.filtering, r.contacts]).to.deep.equal(["unknown", "unknown", []]);
      expect(r.summary).to.match(/^reachability unknown: no STUN server answered/);
      expect(r.details.unanswered).to.have.length(2);
    } finally {
      silent.close();
    }
  });

  describe("with a port mapping from the router", function () {
    beforeEach(async function () {
      servers = await natLikeServers({ mappedFor: () => ({ address: "198.51.100.7", port: 40000 }), letsIn: () => false });
    });

    it("advertises the mapped port first when the router's address is the one the internet sees", async function () {
      const mapper = new FakeMapper((port) => routerMapping(port, "198.51.100.7"));
      const r = await measureReachability({ stunServers: [servers!.primary], localAddresses: [], portMapper: mapper, ...FAST });
      expect(r.contacts.map((c) => `${c.kind} ${c.address}:${c.port}`)).to.deep.equal(["mapped 198.51.100.7:41000", "punch-only 198.51.100.7:40000"]);
      expect(r.summary).to.equal("behind a home router that opened port 41000 for this node on 198.51.100.7: reachable directly");
    });

    for (const [what, external, words] of [
      ["inside a carrier's NAT", "100.64.0.9", "carrier's NAT"],
      ["private", "10.1.2.3", "private"],
      ["public but not what the internet sees", "203.0.113.77", "the internet sees 198.51.100.7"],
    ] as const) {
      it(`does not advertise, and gives the mapping back, when the router's own address is ${what}`, async function () {
        const mapper = new FakeMapper((port) => routerMapping(port, external));
        const r = await measureReachability({ stunServers: [servers!.primary], localAddresses: [], portMapper: mapper, ...FAST });
        expect(r.contacts.map((c) => c.kind)).to.deep.equal(["punch-only"]);
        expect(mapper.unmapped).to.deep.equal([r.details.localPort]);
        expect(r.details.portMapping).to.include({ advertised: false });
        expect(r.summary).to.include(words);
      });
    }

    it("says why when the router maps nothing", async function () {
      const mapper = new FakeMapper(() => new Error("the router 192.168.1.1 mapped no port (NAT-PMP: no answer; UPnP: no answer)"));
      const r = await measureReachability({ stunServers: [servers!.primary], localAddresses: [], portMapper: mapper, ...FAST });
      expect(r.contacts.map((c) => c.kind)).to.deep.equal(["punch-only"]);
      expect(r.details.portMapping?.reason).to.include("mapped no port");
    });
  });
});

describe("which addresses may be told to the public", function () {
  it("refuses private, carrier, loopback, link-local, multicast and reserved addresses", function () {
    for (const a of [
      "10.0.0.1",
      "172.16.5.4",
      "172.31.255.255",
      "192.168.88.2",
      "100.64.0.1",
      "100.127.255.254",
      "127.0.0.1",
      "169.254.1.1",
      "0.0.0.0",
      "224.0.0.1",
      "255.255.255.255",
      "::1",
      "fe80::1",
      "fd00::5",
      "ff02::1",
      "::ffff:192.168.1.1",
      // The same addresses spelled otherwise: each reaches loopback or "this host" on Linux.
      "0:0:0:0:0:0:0:1",
      "::0:1",
      "0::",
      "0:0:0:0:0:0:0:0",
      "::ffff:7f00:1",
      "::FFFF:127.0.0.1",
      "::127.0.0.1",
      "FE80:0::1",
      "fe80::1%lo",
      "not an address",
    ])
      expect(isPublicAddress(a), a).to.equal(false);
  });
  it("accepts public ones, and the test network's benchmarking range that stands for the internet", function () {
    for (const a of ["8.8.8.8", "11.3.0.2", "172.32.0.1", "100.128.0.1", "198.18.3.2", "2001:db8::1", "2a00:1450::1", "::ffff:8.8.8.8"])
      expect(isPublicAddress(a), a).to.equal(true);
  });
  it("knows the carriers' shared space", function () {
    expect([isCarrierAddress("100.64.3.2"), isCarrierAddress("100.63.0.1"), isCarrierAddress("100.128.0.1")]).to.deep.equal([true, false, false]);
  });
});

describe("the reachability monitor", function () {
  it("with no STUN servers set measures nothing, binds nothing and says why", async function () {
    const monitor = new ReachabilityMonitor({ stunServers: [], portMapping: true, port: 0 });
    await monitor.start();
    expect(monitor.socket).to.equal(undefined);
    expect(monitor.view()).to.deep.include({ state: "not-measured", summary: "not measured: no STUN servers are set (MYST_STUN_SERVERS)" });
    await monitor.stop();
  });

  it("measures at start from its own socket, tells listeners, and closes the socket at stop", async function () {
    const servers = await natLikeServers({ mappedFor: () => ({ address: "198.51.100.7", port: 40000 }), letsIn: () => false });
    const monitor = new ReachabilityMonitor({ stunServers: [servers.primary], portMapping: false, port: 0, measure: FAST });
    try {
      const changed = new Promise<Reachability>((resolve) => monitor.onChange(resolve));
      await monitor.start();
      expect(monitor.view().state).to.equal("measuring");
      const r = await changed;
      expect(r.contacts).to.deep.equal([{ kind: "punch-only", address: "198.51.100.7", port: 40000, protocol: "udp" }]);
      expect(monitor.view()).to.deep.include({ state: "measured", mapping: "endpoint-independent" });
      const socket = monitor.socket!;
      await monitor.stop();
      expect(() => socket.address()).to.throw();
    } finally {
      await monitor.stop();
      await servers.close();
    }
  });

  it("keeps the last measurement while a consumer tunnel's kill switch holds this machine's traffic, and measures again once it no longer does", async function () {
    let tunnelled = false;
    const servers = await natLikeServers({ mappedFor: () => ({ address: "198.51.100.7", port: 40000 }), letsIn: () => false, silent: () => tunnelled });
    const monitor = new ReachabilityMonitor({
      stunServers: [servers.primary],
      portMapping: false,
      port: 0,
      measure: FAST,
      watchMs: 20,
      tunnelled: () => tunnelled,
    });
    try {
      const measured = new Promise<Reachability>((resolve) => monitor.onChange(resolve));
      await monitor.start();
      const first = await measured;
      // A session's tunnel comes up with its kill switch (no STUN answer gets through it), and the
      // 10-minute recheck or a network change falls inside the session.
      tunnelled = true;
      await monitor.measure();
      expect(monitor.view()).to.deep.include({ state: "measured", mapping: "endpoint-independent", contacts: first.contacts });
      // The session ends: measured again, at the watch's next look.
      tunnelled = false;
      await until(() => monitor.current()!.measuredAt > first.measuredAt, "a measurement after the tunnel went", 5_000, 10);
      expect(monitor.view()).to.deep.include({ state: "measured", mapping: "endpoint-independent", contacts: first.contacts });
    } finally {
      await monitor.stop();
      await servers.close();
    }
  });

  it("does not keep a measurement during which a kill switch held this machine's traffic for a while, even when it no longer did by the end", async function () {
    let tunnelled = false;
    let silent = false;
    const servers = await natLikeServers({ mappedFor: () => ({ address: "198.51.100.7", port: 40000 }), letsIn: () => false, silent: () => silent });
    const monitor = new ReachabilityMonitor({
      stunServers: [servers.primary],
      portMapping: false,
      port: 0,
      measure: { stun: { rtoMs: 50, requests: 2, lastWaitFactor: 2 }, filteringProbe: { rtoMs: 50, requests: 2, lastWaitFactor: 2 } },
      watchMs: 20,
      tunnelled: () => tunnelled,
    });
    try {
      const measured = new Promise<Reachability>((resolve) => monitor.onChange(resolve));
      await monitor.start();
      const first = await measured;
      // A short session inside one measurement (about 150 ms here): its kill switch holds the traffic
      // (no STUN answer comes back) for 40 ms, and is gone well before the measurement ends.
      silent = true;
      const during = monitor.measure();
      await new Promise((r) => setTimeout(r, 10));
      tunnelled = true;
      await new Promise((r) => setTimeout(r, 40));
      tunnelled = false;
      await during;
      expect(monitor.view()).to.deep.include({ state: "measured", mapping: "endpoint-independent", contacts: first.contacts });
      // Measured again once nothing holds the traffic.
      silent = false;
      await until(() => monitor.current()!.measuredAt > first.measuredAt, "a measurement after the session", 5_000, 10);
      expect(monitor.view()).to.deep.include({ state: "measured", mapping: "endpoint-independent", contacts: first.contacts });
    } finally {
      await monitor.stop();
      await servers.close();
    }
  });

  it("keeps a service's own port mapped on a router whose mappings lead somewhere (OpenVPN's), and gives it back when released", async function () {
    const servers = await natLikeServers({ mappedFor: () => ({ address: "198.51.100.7", port: 40000 }), letsIn: () => false });
    const mapper = new FakeMapper((port) => ({ ...routerMapping(port, "198.51.100.7"), externalPort: port === 1194 ? 1194 : 41000 }));
    const monitor = new ReachabilityMonitor({ stunServers: [servers.primary], portMapping: true, portMapper: mapper, port: 0, measure: FAST });
    try {
      monitor.keep(1194, "udp"); // asked before the first measurement: mapped once the router is known to map usefully
      const changed = new Promise<Reachability>((resolve) => monitor.onChange(resolve));
      await monitor.start();
      expect((await changed).contacts.map((c) => c.kind)).to.deep.equal(["mapped", "punch-only"]);
      await monitor.measure();
      expect(monitor.servicePorts().map((m) => `${m.externalAddress}:${m.externalPort} → ${m.internalPort}`)).to.deep.equal(["198.51.100.7:1194 → 1194"]);
      monitor.release(1194, "udp");
      expect(monitor.servicePorts()).to.deep.equal([]);
      expect(mapper.unmapped).to.include(1194);
    } finally {
      await monitor.stop();
      await servers.close();
    }
  });

  it("does not keep a service's port the router maps to another port (the service's address names its own)", async function () {
    const servers = await natLikeServers({ mappedFor: () => ({ address: "198.51.100.7", port: 40000 }), letsIn: () => false });
    const mapper = new FakeMapper((port) => routerMapping(port, "198.51.100.7"));
    const monitor = new ReachabilityMonitor({ stunServers: [servers.primary], portMapping: true, portMapper: mapper, port: 0, measure: FAST });
    try {
      monitor.keep(1194, "udp");
      await monitor.start();
      await monitor.measure();
      expect(monitor.servicePorts()).to.deep.equal([]);
      expect(mapper.unmapped).to.include(1194);
    } finally {
      await monitor.stop();
      await servers.close();
    }
  });
});
