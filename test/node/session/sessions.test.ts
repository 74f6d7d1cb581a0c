import { expect } from "chai";
import { Broker } from "../../../node/broker/broker";
import { Dialogs } from "../../../node/dialog/dialogs";
import { IdentityKey } from "../../../node/identity/key";
import type { Proposal } from "../../../node/proposal/proposal";
import { NoopConsumerService, NoopProviderService } from "../../../node/services/noop/noop";
import { ConsumerSessions } from "../../../node/session/consumer";
import { ProviderSessions, providerSessionPath, type Admission, type ProviderSession } from "../../../node/session/provider";
import { SESSION_RELAY } from "../../../node/session/messages";
import type { DirectRoute, ProviderService, SessionProtection } from "../../../node/session/service";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { makeProposal, signedProposal } from "../../../scripts/lib/proposals";
import { rejectionOf } from "../../support/rejection";
import { signProposal } from "../../../node/proposal/proposal";

describe("sessions: negotiation over dialogs (real NATS, real registry, no-op service)", function () {
  const net = new TestNetwork();
  let providerKey: IdentityKey;
  let consumerKey: IdentityKey;
  const brokers: Broker[] = [];
  let providerDialogs: Dialogs;
  let providerSessions: ProviderSessions;
  let providerService: NoopProviderService;
  let consumerSessions: ConsumerSessions;
  let consumerService: NoopConsumerService;
  let current: Proposal;

  before(async function () {
    await net.start();
    [providerKey, consumerKey] = [await net.registeredIdentity(), await net.registeredIdentity()];
  });
  after(async () => net.stop());

  async function broker(): Promise<Broker> {
    const b = new Broker({ servers: [net.nats.url] });
    await b.start();
    brokers.push(b);
    return b;
  }

  async function consumerSide(key: IdentityKey = consumerKey, directory = net.registry): Promise<ConsumerSessions> {
    const dialogs = new Dialogs({ broker: await broker(), key, directory, subject: `myst.dialog.c${brokers.length}` });
    await dialogs.start();
    return new ConsumerSessions(dialogs);
  }

  async function providerSide(options: { maxSessions?: number; keepaliveMs?: number; admission?: Admission } = {}) {
    providerDialogs = new Dialogs({ broker: await broker(), key: providerKey, directory: net.registry });
    providerService = new NoopProviderService();
    current = makeProposal(providerKey);
    providerSessions = new ProviderSessions({
      dialogs: providerDialogs,
      services: new Map([["noop", providerService]]),
      currentProposal: (type) => (type === current.serviceType ? current : undefined),
      keepaliveMs: options.keepaliveMs ?? 200,
      maxSessions: options.maxSessions,
      admission: options.admission,
    });
    await providerDialogs.start();
    providerSessions.start();
  }

  beforeEach(async function () {
    await providerSide();
    consumerService = new NoopConsumerService();
    consumerSessions = await consumerSide();
  });
  afterEach(async function () {
    await providerSessions.stop();
    providerDialogs.stop();
    await Promise.all(brokers.splice(0).map((b) => b.stop()));
  });

  const ended = (sessions: ProviderSessions) => new Promise<ProviderSession>((resolve) => sessions.once("session-ended", resolve));

  it("admits exactly --max-sessions when 55 creates arrive together against 50", async function () {
    await providerSessions.stop();
    providerDialogs.stop();
    // An admission that takes a moment, as the payment check's chain read does.
    await providerSide({ maxSessions: 50, keepaliveMs: 5000, admission: () => new Promise((r) => setTimeout(() => r(null), 20)) });
    const consumers = await Promise.all(Array.from({ length: 55 }, async () => consumerSide(await net.registeredIdentity())));
    const outcomes = await Promise.all(
      consumers.map((c) =>
        c.connect({ proposal: signProposal(providerKey, current), service: new NoopConsumerService() }).then(
          (s) => ({ ok: true as const, session: s }),
          (err) => ({ ok: false as const, refusal: (err as { refusal?: string }).refusal }),
        ),
      ),
    );
    const accepted = outcomes.filter((o) => o.ok);
    expect(accepted).to.have.length(50);
    expect(outcomes.filter((o) => !o.ok).map((o) => (o as { refusal?: string }).refusal)).to.deep.equal(Array(5).fill("CAPACITY_REACHED"));
    expect(providerSessions.liveCount).to.equal(50);
    await Promise.all(accepted.map((o) => (o as { session: { destroy(): Promise<void> } }).session.destroy()));
  });

  it("goes create → accepted → confirmed → destroyed, on both sides", async function () {
    const session = await consumerSessions.connect({ proposal: signProposal(providerKey, current), service: consumerService });
    expect(session.id).to.match(/^[0-9a-f]{32}$/);
    expect(session.serviceConfig).to.deep.equal({ greeting: `hello ${consumerKey.address}`, sessionId: session.id });
    const onProvider = providerSessions.get(session.id)!;
    expect(onProvider.state).to.equal("active");
    expect(onProvider.consumer).to.equal(consumerKey.address);
    expect(providerService.open.get(session.id)?.consumerData).to.deep.equal({ client: "noop/1" });

    const providerEnded = ended(providerSessions);
    await session.destroy("done browsing");
    expect((await providerEnded).endReason).to.equal("consumer ended it: done browsing");
    expect(session.state).to.equal("ended");
    expect(consumerService.tunnels[0].stopped).to.equal(true);
    expect(providerService.closed).to.deep.equal([{ id: session.id, reason: "consumer ended it: done browsing" }]);
  });

  it("tells the provider the session's path: the tunnel's in the confirmation, the relay's identity and transport with the relayed address", async function () {
    const session = await consumerSessions.connect({ proposal: signProposal(providerKey, current), service: consumerService });
    const onProvider = providerSessions.get(session.id)!;
    expect(providerSessionPath(onProvider)).to.deep.equal({ tunnel: "public" });
    // A relay replacing the direct path (a noop tunnel takes the route as any relayable one does).
    const routes: unknown[] = [];
    (providerService as ProviderService).directRoute = async (_id: string, route: DirectRoute) => void routes.push(route);
    const changed = new Promise<ProviderSession>((resolve) => providerSessions.once("session-path", resolve));
    const relay = "0x3333333333333333333333333333333333333333";
    await session.dialog.request(SESSION_RELAY, { sessionId: session.id, address: "198.18.20.2", port: 50000, relay, transport: "tcp" });
    expect((await changed).id).to.equal(session.id);
    expect(routes).to.deep.equal([{ kind: "relayed", address: "198.18.20.2", tunnelPort: 50000 }]);
    expect(providerSessionPath(onProvider)).to.deep.equal({ tunnel: "relayed", relay: { provider: relay, address: "198.18.20.2", transport: "tcp" } });
    // A relay named in anything but an identity's form is refused by the schema, and changes nothing.
    const bad = await rejectionOf(
      session.dialog.request(SESSION_RELAY, { sessionId: session.id, address: "198.18.21.2", port: 50000, relay: "\u001b[31mevil", transport: "udp" }),
    );
    expect(String(bad)).to.match(/does not match the schema/);
    expect(providerSessionPath(onProvider)?.relay?.address).to.equal("198.18.20.2");
    await session.destroy("done");
  });

  it("tells the consumer when the provider ends the session, and the consumer tears down", async function () {
    const session = await consumerSessions.connect({ proposal: signProposal(providerKey, current), service: consumerService });
    await providerSessions.end(session.id, "maintenance");
    expect(await session.ended).to.equal("provider ended it: maintenance");
    expect(consumerService.tunnels[0].stopped).to.equal(true);
  });

  it("tells the consumer why before it closes the tunnel, so the consumer reports the reason, not a dead tunnel", async function () {
    const session = await consumerSessions.connect({ proposal: signProposal(providerKey, current), service: consumerService });
    // The tunnel's closing waits (up to 2 s) for the consumer to have been told: told only after the
    // closing, the consumer would first see its tunnel die (a real tunnel does at once).
    let toldFirst = false;
    const close = providerService.closeSession.bind(providerService);
    providerService.closeSession = async (id, reason) => {
      const deadline = Date.now() + 2000;
      while (session.state !== "ended" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      toldFirst = session.state === "ended";
      return close(id, reason);
    };
    await providerSessions.end(session.id, "the provider's daily traffic cap is reached");
    expect({ toldFirst, reason: await session.ended }).to.deep.equal({
      toldFirst: true,
      reason: "provider ended it: the provider's daily traffic cap is reached",
    });
  });

  it("reports a tunnel that would not come up as failed, and the provider releases the session", async function () {
    consumerService.failConnect = "TLS handshake failed";
    const providerEnded = ended(providerSessions);
    const err = await rejectionOf(consumerSessions.connect({ proposal: signProposal(providerKey, current), service: consumerService }));
    expect(err.code).to.equal("TUNNEL_FAILED");
    const s = await providerEnded;
    expect(s.endReason).to.equal("consumer failed to connect: TLS handshake failed");
    expect(providerService.open.size).to.equal(0);
  });

  describe("with a kill switch", function () {
    const events: string[] = [];
    const protection: SessionProtection = {
      prepare: () => void events.push("prepare"),
      discard: async () => void events.push("discard"),
      engage: async () => void events.push("engage"),
      tunnelUp: async () => void events.push("tunnel up"),
      abandon: async () => void events.push("abandon"),
    };
    /** A no-op tunnel with a plan (so the session engages protection), through dialogs whose opening is logged beside it. */
    async function guardedSide(directory = net.registry) {
      const service = Object.assign(new NoopConsumerService(), { plan: async () => ({ device: "noop0", endpoints: [] }) });
      const dialogs = new Dialogs({ broker: await broker(), key: consumerKey, directory, subject: `myst.dialog.c${brokers.length}` });
      await dialogs.start();
      const open = dialogs.open.bind(dialogs);
      dialogs.open = (to, subject) => {
        events.push("dialog opened");
        return open(to, subject);
      };
      return { service, sessions: new ConsumerSessions(dialogs) };
    }
    beforeEach(() => void events.splice(0));

    it("prepares it before the dialog with the provider is opened (its install runs beside the opening too)", async function () {
      const { service, sessions } = await guardedSide();
      const session = await sessions.connect({ proposal: signProposal(providerKey, current), service, protection });
      await session.destroy();
      expect(events.slice(0, 4)).to.deep.equal(["prepare", "dialog opened", "engage", "tunnel up"]);
    });

    it("starts no spray sender for a provider behind a symmetric router while the kill switch already holds (a reconnect: no punch goes out)", async function () {
      const { service, sessions } = await guardedSide();
      const sprays: (boolean | undefined)[] = [];
      const spraying = Object.assign(service, { prepare: (_data: unknown, o?: { spray?: boolean }) => void sprays.push(o?.spray) });
      const direct = {
        type: "direct/v1",
        nat: { mapping: "endpoint-dependent", filtering: "address-and-port-dependent" },
        candidates: [{ kind: "punch-only", address: "198.18.6.2", port: 40000, protocol: "udp" }],
      };
      const symmetric = signProposal(providerKey, { ...current, contacts: [...current.contacts, direct] } as Proposal);
      for (const holds of [false, true]) {
        const session = await sessions.connect({ proposal: symmetric, service: spraying, protection: { ...protection, holds: () => holds } });
        await session.destroy();
      }
      expect(sprays).to.deep.equal([true, false]);
    });

    it("discards what it prepared when the dialog cannot be opened (the provider is not registered)", async function () {
      const directory = { publicKeyOf: async (id: string) => (id === providerKey.address ? undefined : net.registry.publicKeyOf(id)) };
      const { service, sessions } = await guardedSide(directory as typeof net.registry);
      const err = await rejectionOf(sessions.connect({ proposal: signProposal(providerKey, current), service, protection }));
      expect(err.code).to.equal("PEER_UNREGISTERED");
      expect(events).to.deep.equal(["prepare", "dialog opened", "discard"]);
    });
  });

  describe("refuses, with a code and a reason", function () {
    async function refusal(options: Partial<Parameters<ConsumerSessions["connect"]>[0]> = {}, sessions = consumerSessions) {
      const err = await rejectionOf(sessions.connect({ proposal: signProposal(providerKey, current), service: consumerService, ...options }));
      // Our code says "refused"; the provider's reason is data.
      expect(err.code).to.equal("SESSION_REFUSED");
      return err.refusal;
    }

    it("an unknown proposal", async function () {
      const proposal = signedProposal(providerKey, { serviceType: "wireguard" });
      const err = await rejectionOf(
        consumerSessions.connect({
          proposal,
          service: { ...consumerService, type: "wireguard", consumerData: async () => ({}), connect: consumerService.connect },
        }),
      );
      expect([err.code, err.refusal]).to.deep.equal(["SESSION_REFUSED", "PROPOSAL_UNKNOWN"]);
    });

    it("a proposal whose terms changed", async function () {
      const old = signProposal(providerKey, current);
      current = makeProposal(providerKey, { price: { perHour: "999" } });
      expect(await refusal({ proposal: old })).to.equal("PROPOSAL_CHANGED");
    });

    it("but accepts a re-signed proposal with the same terms", async function () {
      const old = signProposal(providerKey, { ...current, createdAt: current.createdAt - 1000 });
      const session = await consumerSessions.connect({ proposal: old, service: consumerService });
      await session.destroy();
    });

    it("a service that is not running", async function () {
      providerService.running = false;
      expect(await refusal()).to.equal("SERVICE_NOT_RUNNING");
    });

    it("a consumer that is not registered", async function () {
      const stranger = IdentityKey.generate();
      const directory = { publicKeyOf: async (id: string) => (id === stranger.address ? stranger.publicKey : net.registry.publicKeyOf(id)) };
      expect(await refusal({}, await consumerSide(stranger, directory as typeof net.registry))).to.equal("CONSUMER_UNREGISTERED");
    });

    it("a session past capacity", async function () {
      await providerSessions.stop();
      providerDialogs.stop();
      await providerSide({ maxSessions: 1 });
      const first = await consumerSessions.connect({ proposal: signProposal(providerKey, current), service: consumerService });
      expect(await refusal()).to.equal("CAPACITY_REACHED");
      await first.destroy();
    });

    it("a consumer whose price limit is below the price", async function () {
      expect(await refusal({ maxPrice: { perHour: "1", perGiB: "200000000000000000" } })).to.equal("PRICE_NOT_ACCEPTED");
    });
  });

  it("notices a provider that died mid-session within the keepalive window", async function () {
    const session = await consumerSessions.connect({ proposal: signProposal(providerKey, current), service: consumerService });
    providerDialogs.stop();
    await brokers[0].stop();
    // Only the keepalive loop ends a session with this reason: two missed answers in a row.
    expect(await session.ended).to.match(/^provider silent/);
    expect(consumerService.tunnels[0].stopped).to.equal(true);
  });

  it("ends the session of a consumer that went silent", async function () {
    const session = await consumerSessions.connect({ proposal: signProposal(providerKey, current), service: consumerService });
    const providerEnded = ended(providerSessions);
    await brokers[1].stop();
    const s = await providerEnded;
    expect(s.id).to.equal(session.id);
    expect(s.endReason).to.equal("consumer silent (no keepalive)");
    expect(providerService.open.size).to.equal(0);
  });

  it("does not let one consumer touch another's session", async function () {
    const session = await consumerSessions.connect({ proposal: signProposal(providerKey, current), service: consumerService });
    const other = await net.registeredIdentity();
    const otherDialogs = new Dialogs({ broker: await broker(), key: other, directory: net.registry, subject: "myst.dialog.other" });
    await otherDialogs.start();
    const dialog = await otherDialogs.open(providerKey.address, providerDialogs.subject);
    const err = await rejectionOf(dialog.request("session.destroy", { sessionId: session.id }));
    expect([err.code, err.peerCode]).to.deep.equal(["PEER_ERROR", "SESSION_UNKNOWN"]);
    expect(providerSessions.get(session.id)!.state).to.equal("active");
    await session.destroy();
  });
});
