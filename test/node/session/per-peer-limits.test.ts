import { expect } from "chai";
import { Broker } from "../../../node/broker/broker";
import { Dialogs, subjectOf } from "../../../node/dialog/dialogs";
import { ProposalIndex } from "../../../node/discovery/index";
import type { IdentityKey } from "../../../node/identity/key";
import { signProposal, type Proposal } from "../../../node/proposal/proposal";
import { NoopProviderService } from "../../../node/services/noop/noop";
import { SESSION_CREATE, type CreateResponse } from "../../../node/session/messages";
import { ProviderSessions } from "../../../node/session/provider";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { makeProposal } from "../../../scripts/lib/proposals";
import { rejectionOf } from "../../support/rejection";

describe("per-peer limits: one identity cannot take every slot", function () {
  const net = new TestNetwork();
  let providerKey: IdentityKey;
  let greedy: IdentityKey;
  let honest: IdentityKey;
  let brokers: Broker[];
  let providerDialogs: Dialogs;
  let sessions: ProviderSessions;
  let current: Proposal;

  before(async function () {
    await net.start();
    [providerKey, greedy, honest] = [await net.registeredIdentity(), await net.registeredIdentity(), await net.registeredIdentity()];
  });
  after(async () => net.stop());

  beforeEach(async function () {
    brokers = [];
    providerDialogs = new Dialogs({ broker: await broker(), key: providerKey, directory: net.registry, maxDialogsPerPeer: 3 });
    current = makeProposal(providerKey);
    sessions = new ProviderSessions({
      dialogs: providerDialogs,
      services: new Map([["noop", new NoopProviderService()]]),
      currentProposal: () => current,
      maxSessions: 50,
      maxSessionsPerConsumer: 2,
    });
    await providerDialogs.start();
    sessions.start();
  });
  afterEach(async function () {
    await sessions.stop();
    providerDialogs.stop();
    await Promise.all(brokers.map((b) => b.stop()));
  });

  async function broker(): Promise<Broker> {
    const b = new Broker({ servers: [net.nats.url] });
    await b.start();
    brokers.push(b);
    return b;
  }

  async function peer(key: IdentityKey): Promise<Dialogs> {
    const d = new Dialogs({ broker: await broker(), key, directory: net.registry, subject: `myst.dialog.limits-${brokers.length}` });
    await d.start();
    return d;
  }

  /** A session.create that is never confirmed: the slot an attacker would hold. */
  async function create(from: Dialogs): Promise<CreateResponse> {
    const dialog = await from.open(providerKey.address, subjectOf(providerKey.address));
    return dialog.request<CreateResponse>(SESSION_CREATE, { proposal: signProposal(providerKey, current), correlationId: "c", consumerData: {} });
  }

  it("refuses a consumer's third unconfirmed session with TOO_MANY_SESSIONS, and still accepts another consumer", async function () {
    const attacker = await peer(greedy);
    const answers = [await create(attacker), await create(attacker), await create(attacker)];
    expect(answers.map((a) => ("accepted" in a ? "accepted" : a.refused.code))).to.deep.equal(["accepted", "accepted", "TOO_MANY_SESSIONS"]);
    expect(sessions.list().filter((s) => s.state === "accepted")).to.have.length(2);
    const other = await create(await peer(honest));
    expect(other).to.have.property("accepted");
  });

  it("refuses a peer's dialogs past maxDialogsPerPeer with TOO_MANY_DIALOGS, and serves another peer", async function () {
    providerDialogs.onDialog((d) => d.handle("test.echo", (b) => b));
    const attacker = await peer(greedy);
    for (let i = 0; i < 3; i++) {
      const d = await attacker.open(providerKey.address, subjectOf(providerKey.address));
      expect(await d.request("test.echo", i)).to.equal(i);
    }
    const fourth = await attacker.open(providerKey.address, subjectOf(providerKey.address));
    expect((await rejectionOf(fourth.request("test.echo", 4))).peerCode).to.equal("TOO_MANY_DIALOGS");
    const d = await (await peer(honest)).open(providerKey.address, subjectOf(providerKey.address));
    expect(await d.request("test.echo", "honest")).to.equal("honest");
  });

  it("closes the provider's side of a dialog once its session ended, so past sessions do not use up a consumer's dialogs", async function () {
    current = makeProposal(providerKey);
    const consumer = await peer(honest);
    for (let i = 0; i < 5; i++) {
      const answer = await create(consumer);
      if ("accepted" in answer) await sessions.end(answer.accepted.sessionId, "test");
    }
    // 5 dialogs opened one after another, each left idle: none is still counted against the peer.
    expect(await create(consumer)).to.have.property("accepted");
  });
});

describe("discovery limits per provider, tombstones and replays", function () {
  const net = new TestNetwork();
  let provider: IdentityKey;
  before(async function () {
    await net.start();
    provider = await net.registeredIdentity();
  });
  after(async () => net.stop());

  const entry = (overrides: Partial<Proposal>) => {
    const p = { ...makeProposal(provider), ...overrides } as Proposal;
    return [signProposal(provider, p), p] as const;
  };

  it("refuses a provider's service types past maxPerProvider with PROVIDER_LIMIT", function () {
    const index = new ProposalIndex(60_000, 1000, 3);
    for (const t of ["a", "b", "c"]) index.upsert(...entry({ serviceType: t }));
    expect(() => index.upsert(...entry({ serviceType: "d" })))
      .to.throw()
      .with.property("code", "PROVIDER_LIMIT");
    expect(index.size).to.equal(3);
  });

  it("keeps a withdrawn proposal withdrawn when its announcement is replayed", function () {
    const index = new ProposalIndex(60_000);
    const [signed, proposal] = entry({});
    index.upsert(signed, proposal);
    expect(index.remove(provider.address, proposal.serviceType, proposal.createdAt + 1)).to.equal(true);
    expect(() => index.upsert(signed, proposal))
      .to.throw()
      .with.property("code", "PROPOSAL_WITHDRAWN");
    expect(index.get(provider.address, proposal.serviceType)).to.equal(undefined);
    const [newer, newerProposal] = entry({ createdAt: proposal.createdAt + 10 });
    expect(index.upsert(newer, newerProposal)).to.equal("added");
  });

  it("ignores an announcement older than the last one seen, even after that one lapsed", function () {
    const index = new ProposalIndex(1000);
    const now = Date.now();
    const [old, oldProposal] = entry({ createdAt: now - 5000 });
    const [fresh, freshProposal] = entry({ createdAt: now });
    index.upsert(fresh, freshProposal, now);
    // The fresh one was not pinged: it lapses from the index after the TTL.
    expect(index.get(provider.address, freshProposal.serviceType, now + 2000)).to.equal(undefined);
    expect(() => index.upsert(old, oldProposal, now + 2000))
      .to.throw()
      .with.property("code", "PROPOSAL_STALE");
  });
});
