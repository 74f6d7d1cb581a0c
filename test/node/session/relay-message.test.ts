import { expect } from "chai";
import { Broker } from "../../../node/broker/broker";
import { Dialogs } from "../../../node/dialog/dialogs";
import type { IdentityKey } from "../../../node/identity/key";
import type { Proposal } from "../../../node/proposal/proposal";
import { signProposal } from "../../../node/proposal/proposal";
import { NoopConsumerService, NoopProviderService } from "../../../node/services/noop/noop";
import type { DirectRoute } from "../../../node/session/service";
import { ConsumerSessions } from "../../../node/session/consumer";
import { SESSION_RELAY } from "../../../node/session/messages";
import { ProviderSessions } from "../../../node/session/provider";
import { makeProposal } from "../../../scripts/lib/proposals";
import { startNatsServer, TestNetwork, type NatsServer } from "../../../scripts/lib/test-network";

/** A provider service that records where `session.relay` pointed its tunnel. */
class RelayableNoop extends NoopProviderService {
  readonly routes: DirectRoute[] = [];
  async directRoute(_sessionId: string, route: DirectRoute): Promise<void> {
    this.routes.push(route);
  }
}

/**
 * `session.relay` points the provider's tunnel at an address the consumer chose (and kicks it to
 * send at once): a consumer must not make a provider spray packets at a stream of targets.
 * Real NATS, real registry, a no-op service that records the routes.
 */
describe("session.relay on the provider", function () {
  const net = new TestNetwork();
  let providerKey: IdentityKey;
  let consumerKey: IdentityKey;
  let nats: NatsServer;
  const stops: (() => Promise<void> | void)[] = [];

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

  it("takes a few relayed addresses per session, then refuses more (RATE_LIMITED)", async function () {
    const proposal: Proposal = makeProposal(providerKey);
    const service = new RelayableNoop();
    const provider = new ProviderSessions({
      dialogs: await dialogsOf(providerKey),
      services: new Map([["noop", service]]),
      currentProposal: (type) => (type === proposal.serviceType ? proposal : undefined),
    });
    provider.start();
    stops.push(() => provider.stop());
    const consumer = new ConsumerSessions(await dialogsOf(consumerKey, "myst.dialog.consumer"));
    const session = await consumer.connect({ proposal: signProposal(providerKey, proposal), service: new NoopConsumerService() });
    stops.push(() => session.destroy("test over"));
    const results: string[] = [];
    for (let i = 1; i <= 6; i++) {
      const answer = await session.dialog.request(SESSION_RELAY, { sessionId: session.id, address: `1.2.3.${i}`, port: 40000 + i }, { timeoutMs: 5000 }).then(
        () => "ok",
        (err: { code?: string; message?: string }) => `${err.code}: ${err.message}`,
      );
      results.push(answer);
    }
    expect(results.slice(0, 3)).to.deep.equal(["ok", "ok", "ok"]);
    for (const r of results.slice(3)) expect(r).to.match(/RATE_LIMITED|at most 3 relayed addresses/);
    expect(service.routes.map((r) => r.address)).to.deep.equal(["1.2.3.1", "1.2.3.2", "1.2.3.3"]);
  });
});
