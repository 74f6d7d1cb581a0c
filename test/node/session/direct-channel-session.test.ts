import { expect } from "chai";
import { once } from "node:events";
import { Broker } from "../../../node/broker/broker";
import { Dialogs } from "../../../node/dialog/dialogs";
import type { IdentityKey } from "../../../node/identity/key";
import { DirectPeering } from "../../../node/nat/direct/peering";
import type { Proposal } from "../../../node/proposal/proposal";
import { signProposal } from "../../../node/proposal/proposal";
import { NoopConsumerService, NoopProviderService } from "../../../node/services/noop/noop";
import { ConsumerSessions } from "../../../node/session/consumer";
import type { ConsumerSession } from "../../../node/session/consumer-session";
import { ProviderSessions } from "../../../node/session/provider";
import { makeProposal } from "../../../scripts/lib/proposals";
import { startNatsServer, TestNetwork, type NatsServer } from "../../../scripts/lib/test-network";

/**
 * A session whose two nodes made a direct channel: its messages (keepalives, the end) travel on
 * the channel, so a broker outage longer than the outage tolerance does not end it. Real NATS
 * (stopped mid-session), real registry, loopback UDP, no-op service.
 */
describe("a session with a direct channel outlives the broker", function () {
  const net = new TestNetwork();
  let providerKey: IdentityKey;
  let consumerKey: IdentityKey;
  let nats: NatsServer;
  const brokers: Broker[] = [];
  const stops: (() => Promise<void> | void)[] = [];
  const peering = () =>
    new DirectPeering({
      reachability: () => ({ mapping: "endpoint-independent" }),
      localAddresses: () => ["127.0.0.1"],
      bindAddress: "127.0.0.1",
      allowLoopback: true,
    });

  before(async function () {
    await net.start();
    [providerKey, consumerKey] = [await net.registeredIdentity(), await net.registeredIdentity()];
  });
  after(async () => net.stop());
  beforeEach(async () => {
    nats = await startNatsServer();
  });
  afterEach(async function () {
    for (const s of stops.splice(0).reverse()) await s();
    await Promise.all(brokers.splice(0).map((b) => b.stop()));
    await nats.stop();
  });

  async function dialogsOf(key: IdentityKey, subject?: string): Promise<Dialogs> {
    const broker = new Broker({ servers: [nats.url] });
    await broker.start();
    brokers.push(broker);
    const dialogs = new Dialogs({ broker, key, directory: net.registry, ...(subject ? { subject } : {}) });
    await dialogs.start();
    stops.push(() => dialogs.stop());
    return dialogs;
  }

  async function setUp(direct: boolean) {
    const proposal: Proposal = makeProposal(providerKey);
    const service = new NoopProviderService();
    const provider = new ProviderSessions({
      dialogs: await dialogsOf(providerKey),
      services: new Map([["noop", service]]),
      currentProposal: (type) => (type === proposal.serviceType ? proposal : undefined),
      keepaliveMs: 200,
      outageToleranceMs: 1000,
      ...(direct ? { direct: peering() } : {}),
    });
    provider.start();
    stops.push(() => provider.stop());
    const consumer = new ConsumerSessions(await dialogsOf(consumerKey, "myst.dialog.consumer"), {
      outageToleranceMs: 1000,
      ...(direct ? { direct: peering() } : {}),
    });
    const session = await consumer.connect({ proposal: signProposal(providerKey, proposal), service: new NoopConsumerService() });
    return { provider, session, service };
  }

  /** Waits until `n` keepalives reached the provider's side of the session after now. */
  async function keepalives(provider: ProviderSessions, session: ConsumerSession, n: number): Promise<void> {
    const s = provider.get(session.id)!;
    let seen = s.lastSeen;
    for (let i = 0; i < n; ) {
      await once(s.channel!, "frame");
      if (s.lastSeen !== seen) {
        seen = s.lastSeen;
        i++;
      }
    }
  }

  it("carries keepalives and the end over the channel while the broker is down for longer than the tolerance", async function () {
    const { provider, session } = await setUp(true);
    const onProvider = provider.get(session.id)!;
    if (!onProvider.channel!.up) await once(onProvider.channel!, "up");
    // Behind a router (measured), the provider is reached by the channel's path: here the shared "LAN" (loopback).
    expect(session.path).to.deep.include({ tunnel: "local", channel: "direct" });
    expect(session.path.direct?.kind).to.equal("local");

    await nats.stop();
    // 15 keepalives at 200 ms: three times the 1 s the session would outlive a broker outage without the channel.
    await keepalives(provider, session, 15);
    expect(session.state).to.equal("active");
    expect(onProvider.state).to.equal("active");

    // The provider's end reaches the consumer over the channel too.
    await provider.end(session.id, "schedule closed");
    expect(await session.ended).to.equal("provider ended it: schedule closed");
  });

  it("without a direct channel, the same outage ends the session (what the channel changes)", async function () {
    const { provider, session } = await setUp(false);
    const ended = once(provider, "session-ended");
    await nats.stop();
    const [s] = await ended;
    expect(s.endReason).to.match(/^broker unreachable for/);
    expect(session.path.channel).to.equal("broker");
  });
});
