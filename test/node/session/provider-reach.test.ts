import { expect } from "chai";
import { Broker } from "../../../node/broker/broker";
import { ConsumerNode } from "../../../node/daemon/consumer-node";
import { DiscoveryService } from "../../../node/discovery/server";
import { ProviderNode, type ProvidedService } from "../../../node/daemon/provider-node";
import type { IdentityKey } from "../../../node/identity/key";
import { DirectPeering } from "../../../node/nat/direct/peering";
import type { Reachability } from "../../../node/nat/reachability";
import { signProposal, unreachableReason } from "../../../node/proposal/proposal";
import { OpenVpnProviderService } from "../../../node/services/openvpn/provider";
import { ProxyProviderService } from "../../../node/services/proxy/provider";
import { NoopConsumerService, NoopProviderService } from "../../../node/services/noop/noop";
import { openDatabase, type Db } from "../../../node/store/database";
import { REPLICA_CREDENTIALS } from "../../../scripts/lib/nats-server";
import { TestNetwork, providerPayments, startNatsServer, type NatsServer } from "../../../scripts/lib/test-network";
import { tempDir } from "../../../scripts/lib/tmp";

/** A service that, as OpenVPN, needs its consumers to reach the provider unasked (the no-op service playing OpenVPN's part). */
class UnpunchableService extends NoopProviderService {
  readonly reach = "public-or-mapped" as const;
  readonly listenPort = { port: 1194, protocol: "udp" as const };
}

const measured = (contacts: Reachability["contacts"], mapping: Reachability["mapping"] = "endpoint-independent"): Reachability => ({
  mapping,
  filtering: "address-and-port-dependent",
  publicAddress: "198.18.3.2",
  contacts,
  measuredAt: Date.now(),
  summary: "",
});
const punchOnly = measured([{ kind: "punch-only", address: "198.18.3.2", port: 40000, protocol: "udp" }]);
const mapped = measured([
  { kind: "mapped", address: "11.3.0.2", port: 40001, protocol: "udp" },
  { kind: "punch-only", address: "11.3.0.2", port: 40000, protocol: "udp" },
]);

/**
 * Proposals say how the provider can be reached, and a tunnel that cannot punch (OpenVPN) says it
 * needs a public or mapped provider: a consumer does not start a session it cannot carry, and says
 * why, instead of waiting for a tunnel that never comes up. Real NATS and registry, no-op tunnel.
 */
describe("a proposal whose tunnel needs a reachable provider (OpenVPN)", function () {
  const net = new TestNetwork();
  let nats: NatsServer;
  let providerKey: IdentityKey;
  let consumerKey: IdentityKey;
  const tmp = tempDir("myst-reach-");
  let db: Db;
  let reachability: Reachability | undefined;
  let provider: ProviderNode;
  let consumer: ConsumerNode;
  let discoveryBroker: Broker;
  let discovery: DiscoveryService;
  const provided: ProvidedService = {
    service: new UnpunchableService(),
    offer: { country: "DE", ipType: "residential", pricePerHour: 1n, pricePerGiB: 1n, bandwidthMbps: 10 },
  };
  const signed = () => {
    const now = Date.now();
    return signProposal(providerKey, { ...provider.proposal(provided), createdAt: now, expiresAt: now + 60_000 });
  };

  before(async function () {
    await net.start();
    nats = await startNatsServer();
    [providerKey, consumerKey] = [await net.registeredIdentity(), await net.registeredIdentity()];
    db = openDatabase(`${tmp.dir}/myst.db`);
    discoveryBroker = new Broker({ servers: [nats.url], credentials: REPLICA_CREDENTIALS });
    await discoveryBroker.start();
    discovery = new DiscoveryService({ broker: discoveryBroker, directory: net.registry, port: 0 });
    await discovery.start();
    provider = new ProviderNode({
      key: providerKey,
      brokerUrls: [nats.url],
      registry: net.registry,
      services: [provided],
      pingMs: 60_000,
      payments: providerPayments(net.conn, db),
      reachability: () => reachability,
    });
    consumer = new ConsumerNode({ key: consumerKey, brokerUrls: [nats.url], discoveryUrls: [discovery.url], registry: net.registry });
    await provider.start();
    await consumer.start();
  });
  after(async function () {
    await consumer?.stop();
    await provider?.stop();
    await discovery?.stop();
    await discoveryBroker?.stop();
    db?.close();
    await nats?.stop();
    await net.stop();
    tmp.cleanup();
  });

  it("is what OpenVPN's provider side says of itself, and what its proposal carries", function () {
    const openvpn = new OpenVpnProviderService({ dir: tmp.dir, directory: net.registry, publicAddress: "198.18.3.2" });
    expect(openvpn.reach).to.equal("public-or-mapped");
    // The proxy is a TCP server: no punch helps it either.
    const proxy = new ProxyProviderService({ dir: tmp.dir, publicAddress: "198.18.3.2", port: 8443, policy: {} as never });
    expect([proxy.reach, proxy.listenPort]).to.deep.equal(["public-or-mapped", { port: 8443, protocol: "tcp" }]);
    reachability = punchOnly;
    expect(provider.proposal(provided).reach).to.equal("public-or-mapped");
    expect(provider.proposal({ ...provided, service: new NoopProviderService() }).reach).to.equal(undefined);
  });

  it("is refused at once by the consumer when the provider can be reached only by punching, saying why, and no session starts", async function () {
    reachability = punchOnly;
    const before = (provided.service as NoopProviderService).open.size;
    const err = await consumer.sessions.connect({ proposal: signed(), service: new NoopConsumerService() }).then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).to.equal("PROVIDER_UNREACHABLE");
    expect(err?.message).to.include("can be reached only by hole punching").and.include("a public address or a port its router maps");
    expect((provided.service as NoopProviderService).open.size).to.equal(before);
  });

  it("closes the paid TCP relay leg it opened for a punch-only provider when the session fails before the provider is asked", async function () {
    reachability = punchOnly;
    const closed: string[] = [];
    const leg = { close: async (reason: string) => void closed.push(reason) };
    // A service carried over a relay's TCP allocation (as the proxy is) whose consumer data fail.
    const service = Object.assign(new NoopConsumerService(), {
      relayedTcp: true,
      consumerData: async () => {
        throw new Error("no consumer data");
      },
    });
    const err = await consumer.sessions.connect({ proposal: signed(), service, relay: async () => leg as never }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).to.equal("no consumer data");
    expect(closed).to.deep.equal(["the session did not come up"]);
  });

  it("is not picked by filter from a provider reachable only by punching: connect says how many matched and why", async function () {
    reachability = punchOnly;
    const listed = async () => (await consumer.discovery.search({ serviceType: "noop" }, { limit: 5 })).proposals[0]?.proposal;
    // Announced again with the measured contacts (a refresh counts once the first announcement is in).
    for (let i = 0; i < 100 && !(await listed())?.contacts.some((c) => c.type === "direct/v1"); i++) {
      provider.reannounce();
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await listed())?.reach).to.equal("public-or-mapped");
    expect((await listed())?.contacts.some((c) => c.type === "direct/v1")).to.equal(true);
    const err = await consumer.connect({ filter: {}, service: new NoopConsumerService() }).then(
      (c) => c.session.destroy().then(() => undefined),
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).to.equal("PROVIDER_UNREACHABLE");
    expect(err?.message).to.match(
      /^1 noop proposal\(s\) match the filters, but none can be reached: provider 0x[0-9a-fA-F]{40} can be reached only by hole punching/,
    );
  });

  it("says why in words for a provider behind a router that maps per destination", function () {
    reachability = measured([{ kind: "punch-only", address: "198.18.3.2", port: 40000, protocol: "udp" }], "endpoint-dependent");
    const { proposal } = JSON.parse(JSON.stringify({ proposal: { ...provider.proposal(provided), createdAt: 1, expiresAt: 2 } }));
    expect(unreachableReason(proposal)).to.include("a router that gives each destination a new port");
  });

  it("connects when the provider has a port its router maps, or measured nothing (its address as the operator gave it)", async function () {
    for (const r of [mapped, undefined]) {
      reachability = r;
      const session = await consumer.sessions.connect({ proposal: signed(), service: new NoopConsumerService() });
      expect(session.state).to.equal("active");
      await session.destroy();
    }
  });
});

describe("a provider whose router keeps its tunnel's port mapped (UPnP / NAT-PMP)", function () {
  const net = new TestNetwork();
  let nats: NatsServer;
  let providerKey: IdentityKey;
  let consumerKey: IdentityKey;
  const tmp = tempDir("myst-reach-mapped-");
  let db: Db;
  // Two machines on different LANs (a shared LAN would take the local path instead).
  const peering = (lan: string) =>
    new DirectPeering({
      reachability: () => ({ mapping: "endpoint-independent" }),
      localAddresses: () => [lan],
      bindAddress: "127.0.0.1",
      allowLoopback: true,
    });

  before(async function () {
    await net.start();
    nats = await startNatsServer();
    [providerKey, consumerKey] = [await net.registeredIdentity(), await net.registeredIdentity()];
    db = openDatabase(`${tmp.dir}/myst.db`);
  });
  after(async function () {
    db?.close();
    await nats?.stop();
    await net.stop();
    tmp.cleanup();
  });

  it("asks its router to keep the service's port while it sells it, and says so in the session: the consumer's tunnel takes the mapped port, no punch", async function () {
    const kept: string[] = [];
    const service = new UnpunchableService();
    const provided: ProvidedService = { service, offer: { country: "DE", ipType: "residential", pricePerHour: 1n, pricePerGiB: 1n, bandwidthMbps: 10 } };
    const provider = new ProviderNode({
      key: providerKey,
      brokerUrls: [nats.url],
      registry: net.registry,
      services: [provided],
      pingMs: 60_000,
      payments: providerPayments(net.conn, db),
      reachability: () => mapped,
      direct: peering("127.0.1.1"),
      routerPorts: {
        keep: (port, protocol) => kept.push(`keep ${protocol}/${port}`),
        release: (port, protocol) => kept.push(`release ${protocol}/${port}`),
        maps: (port, protocol) => kept.includes(`keep ${protocol}/${port}`) && !kept.includes(`release ${protocol}/${port}`),
      },
    });
    const consumer = new ConsumerNode({
      key: consumerKey,
      brokerUrls: [nats.url],
      discoveryUrls: ["http://127.0.0.1:9"],
      registry: net.registry,
      direct: peering("127.0.0.1"),
    });
    await provider.start();
    await consumer.start();
    try {
      expect(kept).to.deep.equal(["keep udp/1194"]);
      const now = Date.now();
      const proposal = signProposal(providerKey, { ...provider.proposal(provided), createdAt: now, expiresAt: now + 60_000 });
      const session = await consumer.sessions.connect({ proposal, service: new NoopConsumerService() });
      expect(session.path.tunnel).to.equal("mapped");
      await session.destroy();
      await provider.removeService("noop");
      expect(kept).to.deep.equal(["keep udp/1194", "release udp/1194"]);
    } finally {
      await consumer.stop();
      await provider.stop();
    }
  });
});
