import { expect } from "chai";
import { REPLICA_CREDENTIALS } from "../../../scripts/lib/nats-server";
import { Broker } from "../../../node/broker/broker";
import { DISCOVERY_SUBJECTS, signUnregister } from "../../../node/discovery/announcements";
import { ProposalAnnouncer } from "../../../node/discovery/announcer";
import { DiscoveryClient, DiscoveryError } from "../../../node/discovery/client";
import { JetStreamProposalStore } from "../../../node/discovery/jetstream-store";
import { proposalRecord } from "../../../node/discovery/record";
import { DiscoveryService } from "../../../node/discovery/server";
import { LocalProposalStore, type StoreChange } from "../../../node/discovery/store";
import { parseSignedProposal, signProposal, type SignedProposal } from "../../../node/proposal/proposal";
import { freePort } from "../../../scripts/lib/local-chain";
import { until } from "../../../scripts/lib/until";
import { replicaSuite } from "../../support/replica-suite";
import { ProviderFleet } from "../../../scripts/lib/proposal-fleet";
import { makeProposal } from "../../../scripts/lib/proposals";

// biome-ignore lint/suspicious/noExplicitAny: each test checks the JSON it reads field by field
type Json = any;

/** A store whose initial load delivers what it holds and then waits until `release()`. */
class SlowLoadingStore extends LocalProposalStore {
  readonly shared = true;
  #release!: () => void;
  readonly #gate = new Promise<void>((r) => (this.#release = r));
  constructor(private readonly initial: StoreChange[]) {
    super(60_000);
  }
  release(): void {
    this.#release();
  }
  async watch(onChange: (c: StoreChange) => void): Promise<void> {
    for (const c of this.initial) onChange(c);
    await this.#gate;
  }
}

describe("discovery on a shared JetStream index", function () {
  this.timeout(180_000);
  const fleet = new ProviderFleet(1000);
  const suite = replicaSuite("shared");
  const { workers, running } = suite;

  async function broker(): Promise<Broker> {
    const b = new Broker({ servers: [suite.nats.url], credentials: REPLICA_CREDENTIALS });
    await b.start();
    running.push(b);
    return b;
  }

  async function replica(
    bucket: string,
    store = new JetStreamProposalStore({ servers: [suite.nats.url], credentials: REPLICA_CREDENTIALS, bucket, ttlMs: 600_000 }),
  ): Promise<DiscoveryService> {
    const d = new DiscoveryService({ broker: await broker(), directory: fleet.directory, port: 0, store, signatureWorkers: workers });
    running.push(d);
    await d.start();
    return d;
  }

  const get = async (d: DiscoveryService | string, path: string): Promise<{ status: number; body: Json }> => {
    const r = await fetch((typeof d === "string" ? d : d.url) + path);
    return { status: r.status, body: await r.json() };
  };
  const post = async (d: DiscoveryService, body: unknown): Promise<{ status: number; body: Json }> => {
    const r = await fetch(d.url + "/v1/proposals", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  };
  const keyOf = (s: SignedProposal) => {
    const p = parseSignedProposal(s).proposal;
    return `${p.provider.toLowerCase()}/${p.serviceType}`;
  };

  it("a replica started after 10,000 announcements answers with all of them on its first query", async function () {
    const bucket = suite.bucket();
    const first = await replica(bucket);
    const announcer = await broker();
    const signed = fleet.sign(10_000);
    let accepted = 0;
    for (let i = 0; i < signed.length; i += 250) {
      const replies = await Promise.all(
        signed.slice(i, i + 250).map((s) => announcer.request(DISCOVERY_SUBJECTS.register, Buffer.from(JSON.stringify(s)), 30_000)),
      );
      accepted += replies.filter((r) => JSON.parse(Buffer.from(r).toString()).ok).length;
    }
    expect(accepted).to.equal(10_000);

    const fresh = await replica(bucket);
    // Its very first answers: everything, before any provider pinged again.
    const ready = await get(fresh, "/ready");
    expect(ready.status).to.equal(200);
    expect(ready.body).to.deep.equal({ status: "ready", proposals: 10_000 });
    const seen = new Set<string>();
    let cursor: string | null = null;
    do {
      const page: { body: Json } = await get(fresh, `/v1/proposals?limit=500${cursor ? `&cursor=${cursor}` : ""}`);
      for (const item of page.body.proposals) seen.add(keyOf(item.signed));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen.size).to.equal(10_000);
    expect([...seen].sort()).to.deep.equal(signed.map(keyOf).sort());
    // The stored text is the provider's, byte for byte: the signature still verifies at the consumer.
    const client = new DiscoveryClient(fresh.url, fleet.directory.publicKeyOf);
    const found = await client.search({ providerIds: [fleet.keys[42].address] });
    expect(found.rejected).to.equal(0);
    expect(found.proposals).to.have.length(10);
    expect(first.index.size).to.equal(10_000);
  });

  it("a fresh replica makes its ranked order while it loads: its first sort=quality query makes none and serves every proposal", async function () {
    const bucket = suite.bucket();
    const first = await replica(bucket);
    const signed = fleet.sign(300);
    for (const s of signed) expect((await post(first, s)).status).to.be.oneOf([200, 201]);
    const fresh = await replica(bucket);
    // Counts the orders made in full from here on (the one the load made is before).
    let made = 0;
    const rankedOrder = fresh.index.rankedOrder.bind(fresh.index);
    fresh.index.rankedOrder = (rate) => {
      made++;
      return rankedOrder(rate);
    };
    const page = await get(fresh, "/v1/proposals?sort=quality&limit=500");
    expect(page.status).to.equal(200);
    expect(page.body.proposals.map((p: Json) => keyOf(p.signed)).sort()).to.deep.equal(signed.map(keyOf).sort());
    expect(made, "orders made in full by the first ranked query").to.equal(0);
  });

  it("says loading with a count on /health, and 503 NOT_READY on /ready and queries, until the store is loaded", async function () {
    const key = fleet.keys[1];
    const signed = signProposal(key, makeProposal(key));
    const record = proposalRecord(signed, parseSignedProposal(signed).proposal);
    const store = new SlowLoadingStore([{ key: keyOf(signed), record, revision: 1, storedAt: Date.now() }]);
    const d = new DiscoveryService({ broker: await broker(), directory: fleet.directory, port: 0, store, signatureWorkers: workers });
    running.push(d);
    const starting = d.start();
    await until(async () => {
      try {
        return d.url !== undefined;
      } catch {
        return false;
      }
    }, "the HTTP listener");
    // The loaded record is verified (on the signature threads) before it counts.
    await until(async () => (await get(d, "/health")).body.proposals === 1, "the loaded proposal verified");
    expect((await get(d, "/health")).body).to.deep.equal({ status: "loading", proposals: 1, broker: "connected", store: "ok" });
    const notReady = await get(d, "/ready");
    expect(notReady.status).to.equal(503);
    expect(notReady.body.code).to.equal("NOT_READY");
    expect((await get(d, "/v1/proposals")).status).to.equal(503);
    expect((await post(d, signed)).status).to.equal(503);
    store.release();
    await starting;
    expect((await get(d, "/health")).body).to.deep.equal({ status: "ok", proposals: 1, broker: "connected", store: "ok" });
    expect((await get(d, "/ready")).status).to.equal(200);
    expect((await get(d, "/v1/proposals")).body.proposals).to.have.length(1);
  });

  it("verifies an announcement on one replica of the queue group, and every replica serves it", async function () {
    const bucket = suite.bucket();
    const [a, b] = [await replica(bucket), await replica(bucket)];
    const key = fleet.keys[2];
    const announcer = new ProposalAnnouncer({ broker: await broker(), key, proposal: () => makeProposal(key, { serviceType: "openvpn" }), pingMs: 60_000 });
    announcer.start();
    running.push({ stop: () => announcer.stop() });
    await until(async () => announcer.state === "announced", "the announcement");
    for (const d of [a, b])
      await until(async () => (await get(d, `/v1/proposals?provider_id=${key.address}`)).body.proposals.length === 1, "the proposal on every replica");
    const verified = async (d: DiscoveryService) =>
      Number(/myst_discovery_announcements_total\{source="nats",result="added"\} (\d+)/.exec(await d.metrics.metrics())?.[1] ?? 0);
    expect((await verified(a)) + (await verified(b))).to.equal(1);
  });

  it("keeps the newest proposal and a withdrawal across replicas", async function () {
    const bucket = suite.bucket();
    const [a, b] = [await replica(bucket), await replica(bucket)];
    const key = fleet.keys[3];
    const older = signProposal(key, makeProposal(key, { createdAt: Date.now() - 5000, price: { perHour: "1" } }));
    const newer = signProposal(key, makeProposal(key, { price: { perHour: "2" } }));
    expect((await post(a, newer)).status).to.equal(201);
    const stale = await post(b, older);
    expect(stale.status).to.equal(409);
    expect(stale.body.code).to.equal("PROPOSAL_STALE");

    const unregister = await (await broker()).request(DISCOVERY_SUBJECTS.unregister, Buffer.from(JSON.stringify(signUnregister(key, "noop"))), 5000);
    expect(JSON.parse(Buffer.from(unregister).toString())).to.deep.equal({ ok: true, result: "removed" });
    for (const d of [a, b]) await until(async () => (await get(d, `/v1/proposals/${key.address}/noop`)).status === 404, "the withdrawal on every replica");
    for (const d of [a, b]) {
      const replay = await post(d, newer);
      expect(replay.status).to.equal(409);
      expect(replay.body.code).to.equal("PROPOSAL_WITHDRAWN");
    }
  });

  it("two replicas writing one provider's proposals at once agree on the newest", async function () {
    const bucket = suite.bucket();
    const [a, b] = [await replica(bucket), await replica(bucket)];
    const key = fleet.keys[4];
    const now = Date.now();
    const versions = Array.from({ length: 12 }, (_, i) =>
      signProposal(key, makeProposal(key, { createdAt: now - 12_000 + i * 1000, price: { perHour: String(i) } })),
    );
    // Newest first on one replica, oldest first on the other, all at once.
    await Promise.all(versions.map((v, i) => post(i % 2 ? a : b, v)));
    for (const d of [a, b]) {
      await until(async () => (await get(d, `/v1/proposals/${key.address}/noop`)).body.proposal?.price.perHour === "11", "the newest on every replica");
    }
  });

  it("the client fails over from a dead URL and a loading replica to one that answers, and on when that one stops", async function () {
    const bucket = suite.bucket();
    const [a, b] = [await replica(bucket), await replica(bucket)];
    const key = fleet.keys[5];
    expect((await post(a, signProposal(key, makeProposal(key)))).status).to.equal(201);
    await until(async () => b.index.size === 1, "the proposal on the second replica");
    const loadingStore = new SlowLoadingStore([]);
    const loading = new DiscoveryService({ broker: await broker(), directory: fleet.directory, port: 0, store: loadingStore, signatureWorkers: workers });
    running.push({ stop: async () => (loadingStore.release(), await loading.stop()) });
    const loadingStarted = loading.start();
    await until(async () => {
      try {
        return (await get(loading.url, "/health")).body.status === "loading";
      } catch {
        return false;
      }
    }, "a replica that is loading");
    const dead = `http://127.0.0.1:${await freePort()}`;
    const client = new DiscoveryClient([dead, loading.url, a.url, b.url], fleet.directory.publicKeyOf, 2000);

    let found = await client.search({});
    expect(found.proposals.map((p) => p.proposal.provider)).to.deep.equal([key.address]);
    expect(client.baseUrl).to.equal(a.url);
    await a.stop();
    found = await client.search({});
    expect(found.proposals.map((p) => p.proposal.provider)).to.deep.equal([key.address]);
    expect(client.baseUrl).to.equal(b.url);
    expect((await client.get(key.address, "noop"))?.proposal.provider).to.equal(key.address);
    await b.stop();
    const err = await client.search({}).catch((e) => e);
    expect(err).to.be.instanceOf(DiscoveryError);
    expect(["DISCOVERY_UNREACHABLE", "NOT_READY"]).to.include(err.code);
    loadingStore.release();
    await loadingStarted;
  });
});
