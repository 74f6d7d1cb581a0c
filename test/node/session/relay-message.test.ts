import { expect } from "chai";
import { Broker } from "../../../node/broker/broker";
import { Dialogs } from "../../../node/dialog/dialogs";
import type { IdentityKey } from "../../../node/identity/key";
import type { Proposal } from "../../../node/proposal/proposal";
import { signProposal } from "../../../node/proposal/proposal";
import { NoopConsumerService, NoopProviderService } from "../../../node/services/noop/noop";
import type { DirectRoute } from "../../../node/session/service";
import { ConsumerSessions } from "../../../node/session/consumer";
import { SESSION_RELAY, type SessionRelay } from "../../../node/session/messages";
import { checkRelayedAddress } from "../../../node/session/relayed-address";
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

  it("with the registry, takes only an address the relay it names announces in its signed proposal", async function () {
    const [relayKey, otherKey] = [await net.registeredIdentity(), await net.registeredIdentity()];
    // The relay's proposal with its direct contact (its public address, where coturn relays from).
    const withContact = (key: IdentityKey, address: string, serviceType = "relay") => {
      const p = makeProposal(key, { serviceType });
      p.contacts = [
        ...p.contacts,
        {
          type: "direct/v1",
          nat: { mapping: "none", filtering: "endpoint-independent" },
          candidates: [{ kind: "public", address, port: 443, protocol: "udp" }],
        },
      ];
      return signProposal(key, p);
    };
    const base = makeProposal(providerKey);
    const proposal: Proposal = { ...base, contacts: [{ ...base.contacts[0], subject: "myst.dialog.provider-signers" }] } as Proposal;
    const service = new RelayableNoop();
    const provider = new ProviderSessions({
      dialogs: await dialogsOf(providerKey, "myst.dialog.provider-signers"),
      services: new Map([["noop", service]]),
      currentProposal: (type) => (type === proposal.serviceType ? proposal : undefined),
      relaySigners: { publicKeyOf: (id) => net.registry.publicKeyOf(id) },
    });
    provider.start();
    stops.push(() => provider.stop());
    const consumer = new ConsumerSessions(await dialogsOf(consumerKey, "myst.dialog.consumer-signers"));
    const session = await consumer.connect({
      proposal: signProposal(providerKey, proposal),
      service: new NoopConsumerService(),
    });
    stops.push(() => session.destroy("test over"));
    const relay = relayKey.address;
    const tell = (body: Record<string, unknown>) =>
      session.dialog.request(SESSION_RELAY, { sessionId: session.id, port: 50000, ...body }, { timeoutMs: 5000 }).then(
        () => "ok",
        (err: { message?: string }) => String(err.message),
      );
    // Three at most per session (the rate limit counts refused ones too: the check costs a signature's verification).
    expect(await tell({ address: "93.184.216.35", relay, relayProposal: withContact(relayKey, "93.184.216.34") })).to.match(
      /93\.184\.216\.35 is not an address relay .* announces \(93\.184\.216\.34\)/,
    );
    expect(await tell({ address: "93.184.216.34", relay, relayProposal: withContact(otherKey, "93.184.216.34") })).to.match(/not relay .*'s relay service/);
    expect(service.routes, "no route from a refused session.relay").to.deep.equal([]);
    expect(await tell({ address: "93.184.216.34", relay, relayProposal: withContact(relayKey, "93.184.216.34") })).to.equal("ok");
    expect(service.routes.map((r) => r.address)).to.deep.equal(["93.184.216.34"]);
  });

  it("with the registry, refuses a session.relay that carries no relay proposal, and always a private or loopback address", async function () {
    const signers = { publicKeyOf: (id: string) => net.registry.publicKeyOf(id) };
    const body = { sessionId: "a".repeat(32), port: 50000, relay: providerKey.address };
    const refusal = (b: SessionRelay, withSigners = true) =>
      checkRelayedAddress(b, withSigners ? signers : undefined).then(
        () => "ok",
        (err: Error) => err.message,
      );
    expect(await refusal({ ...body, address: "93.184.216.34" })).to.match(/names no relay and its signed proposal/);
    expect(await refusal({ ...body, address: "93.184.216.34" }, false)).to.equal("ok");
    for (const address of ["192.168.1.1", "127.0.0.1", "10.1.2.3"]) expect(await refusal({ ...body, address }, false)).to.match(/not a public IPv4 address/);
  });
});
