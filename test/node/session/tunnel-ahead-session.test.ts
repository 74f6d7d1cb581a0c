import { expect } from "chai";
import { Broker } from "../../../node/broker/broker";
import { Dialogs } from "../../../node/dialog/dialogs";
import type { IdentityKey } from "../../../node/identity/key";
import type { DirectOffer } from "../../../node/nat/direct/candidates";
import { DirectPeering } from "../../../node/nat/direct/peering";
import { signProposal } from "../../../node/proposal/proposal";
import { NoopConsumerService, NoopProviderService } from "../../../node/services/noop/noop";
import { ConsumerSessions } from "../../../node/session/consumer";
import type { DirectRoute, Tunnel } from "../../../node/session/service";
import { ProviderSessions } from "../../../node/session/provider";
import { makeProposal } from "../../../scripts/lib/proposals";
import { startNatsServer, TestNetwork, type NatsServer } from "../../../scripts/lib/test-network";
import { until } from "../../../scripts/lib/until";

/** A peering whose offers say what a router measured (`mapping`, `candidates`): loopback addresses nothing listens on. */
class MeasuredAs extends DirectPeering {
  constructor(
    private readonly measured: Pick<DirectOffer, "mapping" | "candidates">,
    deadlineMs = 1000,
  ) {
    super({
      reachability: () => ({ mapping: measured.mapping }),
      localAddresses: () => [],
      bindAddress: "127.0.0.1",
      allowLoopback: true,
      hardSockets: 2,
      sprayPorts: 8,
      deadlineMs,
    });
  }

  override async prepare(tunnelPort?: number, o?: { unmeasured?: boolean }) {
    const prepared = await super.prepare(tunnelPort, o);
    Object.assign(prepared.offer, this.measured);
    return prepared;
  }
}

/** A provider whose tunnel can send from the probe that met the consumer's (as WireGuard's punch route does). */
class MeetingProvider extends NoopProviderService {
  readonly tunnelPort = 51820;
  async directRoute(): Promise<void> {}
  async punchRoute(): Promise<void> {}
}

/** A consumer tunnel that sprays and answers the provider's first handshake (the no-op tunnel's connect comes up at once). */
class SprayingConsumer extends NoopConsumerService {
  readonly routes: (DirectRoute | undefined)[] = [];
  tunnelPortFor(): number {
    return 40200;
  }
  async expectPeer(): Promise<void> {}
  async sprayFromTunnel(): Promise<undefined> {
    return undefined; // no count: the spray "sent" nothing to judge by
  }
  override async connect(session: { id: string; provider: string; serviceConfig: unknown; route?: DirectRoute }): Promise<Tunnel> {
    this.routes.push(session.route);
    return super.connect(session);
  }
}

/**
 * A provider whose router maps per destination and a consumer whose router keeps one port per socket:
 * the tunnels meet by their own search (docs/direct-channel.md, "The tunnels meet first"). Real NATS
 * and registry, loopback UDP where nothing answers (neither search meets here), no-op tunnel.
 */
describe("the consumer's tunnel when the tunnels meet by their own search", function () {
  const net = new TestNetwork();
  let providerKey: IdentityKey;
  let consumerKey: IdentityKey;
  let nats: NatsServer;
  const stops: (() => unknown)[] = [];

  before(async function () {
    await net.start();
    [providerKey, consumerKey] = [await net.registeredIdentity(), await net.registeredIdentity()];
    nats = await startNatsServer();
  });
  after(async function () {
    for (const s of stops.splice(0).reverse()) await s();
    await nats?.stop();
    await net.stop();
  });

  async function dialogsOf(key: IdentityKey, subject?: string): Promise<Dialogs> {
    const broker = new Broker({ servers: [nats.url] });
    await broker.start();
    stops.push(() => broker.stop());
    const dialogs = new Dialogs({ broker, key, directory: net.registry, ...(subject ? { subject } : {}) });
    await dialogs.start();
    stops.push(() => dialogs.stop());
    return dialogs;
  }

  it("is brought up (kill switch, routes, its peer) while the search runs, before either search met", async function () {
    const proposal = makeProposal(providerKey);
    const provider = new ProviderSessions({
      dialogs: await dialogsOf(providerKey),
      services: new Map([["noop", new MeetingProvider()]]),
      currentProposal: (type) => (type === proposal.serviceType ? proposal : undefined),
      direct: new MeasuredAs({ mapping: "endpoint-dependent", candidates: [{ kind: "reflexive", address: "127.0.9.2", port: 3000 }] }),
    });
    provider.start();
    stops.push(() => provider.stop());
    const consumer = new ConsumerSessions(await dialogsOf(consumerKey, "myst.dialog.consumer"), {
      // STUN saw our socket at its own port: our router keeps ports, so our tunnel's public port is known.
      // Its channel searches for 30 s: the code before brought the tunnel up only once the channel met or gave up.
      direct: new MeasuredAs(
        {
          mapping: "endpoint-independent",
          candidates: [
            { kind: "local", address: "127.0.8.2", port: 4000 },
            { kind: "reflexive", address: "127.0.8.3", port: 4000 },
          ],
        },
        30_000,
      ),
    });
    const service = new SprayingConsumer();
    const connecting = consumer.connect({ proposal: signProposal(providerKey, proposal), service });
    connecting.catch(() => undefined);
    // Neither the channel nor the tunnels have met: the tunnel is brought up all the same, its route
    // naming no endpoint (the provider's handshake comes first, from wherever its router maps it).
    await until(() => service.routes.length > 0, "the tunnel brought up before any meeting", 3000);
    expect(service.routes[0]).to.deep.equal({ kind: "punched", address: "127.0.9.2", tunnelPort: 51820, peerSendsFirst: true });
    const session = await connecting;
    expect(session.path.tunnel).to.equal("punched");
    await session.destroy();
  });
});
