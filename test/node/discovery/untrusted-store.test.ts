import http from "node:http";
import type { AddressInfo } from "node:net";
import crypto from "node:crypto";
import { expect } from "chai";
import { connect, type KV, type NatsConnection } from "nats";
import { Broker, authOptions } from "../../../node/broker/broker";
import { signUnregister } from "../../../node/discovery/announcements";
import { ProposalAnnouncer } from "../../../node/discovery/announcer";
import { DiscoveryClient, DiscoveryError } from "../../../node/discovery/client";
import { JetStreamProposalStore } from "../../../node/discovery/jetstream-store";
import { DiscoveryService } from "../../../node/discovery/server";
import { IdentityKey } from "../../../node/identity/key";
import { parseSignedProposal, signProposal, verifySignedProposal, type SignedProposal } from "../../../node/proposal/proposal";
import { ProviderFleet } from "../../../scripts/lib/proposal-fleet";
import { makeProposal } from "../../../scripts/lib/proposals";
import { REPLICA_CREDENTIALS } from "../../../scripts/lib/nats-server";
import { until } from "../../../scripts/lib/until";
import { replicaSuite } from "../../support/replica-suite";

// biome-ignore lint/suspicious/noExplicitAny: each test checks the JSON it reads field by field
type Json = any;

/**
 * Someone with rights on the discovery bucket writes into it directly, bypassing every replica's
 * checks (issue 26: any participant could, before broker permissions; a replica's credential
 * still can). Replicas serve only what they verified themselves.
 */
describe("discovery replicas trust nothing in the store they did not verify", function () {
  this.timeout(300_000);
  const fleet = new ProviderFleet(10);
  const suite = replicaSuite("untrusted");
  const { workers, running } = suite;

  /**
   * A plain NATS connection to the test's broker, using the JetStream API on the bucket as any
   * client with those rights can: one that holds a replica's credential.
   */
  async function bucketWriter(bucket: string): Promise<{ nc: NatsConnection; kv: KV }> {
    // Written with the replica's credential: the broker lets only replicas write the bucket, and
    // what a holder of that credential writes must still never be served.
    const nc = await connect({ servers: suite.nats.url, name: "bucket-writer", ...authOptions(REPLICA_CREDENTIALS) });
    running.push({ stop: () => nc.close() });
    return { nc, kv: await nc.jetstream().views.kv(bucket, { history: 1 }) };
  }

  async function replica(bucket: string, ttlMs = 600_000): Promise<DiscoveryService> {
    const broker = new Broker({ servers: [suite.nats.url], credentials: REPLICA_CREDENTIALS });
    await broker.start();
    running.push(broker);
    const store = new JetStreamProposalStore({ servers: [suite.nats.url], credentials: REPLICA_CREDENTIALS, bucket, ttlMs, checkMs: 250 });
    const d = new DiscoveryService({ broker, directory: fleet.directory, port: 0, store, signatureWorkers: workers });
    running.push(d);
    await d.start();
    return d;
  }

  /** The answer's text must be JSON, whatever the store holds. */
  const get = async (d: DiscoveryService, path: string): Promise<{ status: number; body: Json }> => {
    const r = await fetch(d.url + path);
    const text = await r.text();
    let body: Json;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`${path} answered ${r.status} with text that is not JSON: ${text.slice(0, 120)}…`);
    }
    return { status: r.status, body };
  };
  const post = async (d: DiscoveryService, body: unknown): Promise<{ status: number; body: Json }> => {
    const r = await fetch(d.url + "/v1/proposals", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  };

  /** Every proposal of a page: each must verify, as a consumer checks it. */
  const served = async (d: DiscoveryService, query = ""): Promise<{ provider: string; country: string }[]> => {
    const page = await get(d, `/v1/proposals?limit=500${query}`);
    expect(page.status).to.equal(200);
    const out: { provider: string; country: string }[] = [];
    for (const item of page.body.proposals) {
      const { proposal } = await verifySignedProposal(item.signed, { publicKeyOf: fleet.directory.publicKeyOf });
      expect(item.proposal).to.deep.equal(proposal, "the served proposal is the signed one");
      out.push({ provider: proposal.provider.toLowerCase(), country: proposal.location.country });
    }
    return out;
  };

  const bucketKey = (provider: string, serviceType = "noop") => `${provider.toLowerCase()}.${serviceType}`;
  /** A value as the bucket's format lays it out (record.ts), with any header. */
  const raw = (header: unknown[], signature: string, text: string) => `${JSON.stringify(header)}\n${signature}\n${text}`;
  const header = (country = "US", createdAt = Date.now(), expiresAt = Date.now() + 3_600_000) => [
    "p",
    createdAt,
    expiresAt,
    country,
    "residential",
    "1",
    "1",
    100,
    "open",
  ];
  const randomAddress = (first = "") => `0x${first}${crypto.randomBytes(20).toString("hex")}`.slice(0, 42);
  /** A proposal text for `provider` (any address) as a provider would sign it. */
  const textFor = (provider: string, country = "US") => JSON.stringify({ ...makeProposal(fleet.keys[0], { location: { country } }), provider });
  const forgedSignature = () => `0x${crypto.randomBytes(64).toString("hex")}`;

  /** Writes an honest provider's value last and waits until `d` serves it: the replica has then seen every value before it. */
  async function writeMarker(kv: KV, d: DiscoveryService): Promise<string> {
    const marker = fleet.keys[9];
    const signed = signProposal(marker, makeProposal(marker));
    await kv.put(bucketKey(marker.address), raw(header("DE"), signed.signature, signed.proposal));
    await until(async () => (await get(d, `/v1/proposals/${marker.address}/noop`)).status === 200, "the replica to see every value written");
    return marker.address.toLowerCase();
  }

  it("serves none of the forged, unsigned, oversized, malformed, expired, relabelled or unsigned-tombstone records written into the bucket", async function () {
    const bucket = suite.bucket();
    const a = await replica(bucket);
    const [relabelled, tombstoned, deleted, untouched] = fleet.keys;
    for (const key of [relabelled, tombstoned, deleted, untouched]) expect((await post(a, signProposal(key, makeProposal(key)))).status).to.equal(201);
    const honest = [relabelled, tombstoned, deleted, untouched].map((k) => k.address.toLowerCase()).sort();
    expect((await served(a)).map((p) => p.provider).sort()).to.deep.equal(honest);

    const { kv } = await bucketWriter(bucket);
    const forged = randomAddress("00");
    const unsigned = randomAddress("00");
    const malformed = randomAddress("00");
    const oversized = randomAddress("00");
    const expired = fleet.keys[5];
    const unregistered = IdentityKey.generate();
    const relabelledSigned = signProposal(relabelled, makeProposal(relabelled));
    await kv.put(bucketKey(forged), raw(header(), forgedSignature(), textFor(forged)));
    await kv.put(bucketKey(unsigned), raw(header(), "", textFor(unsigned)));
    await kv.put(bucketKey(malformed), raw(header(), forgedSignature(), `{"format":"myst-proposal/1","provider":"${malformed}"`));
    // Under the broker's 1 MB payload limit; the bucket a replica makes refuses it (see the next test for one that gets in).
    await kv.put(bucketKey(oversized), raw(header(), forgedSignature(), textFor(oversized) + " ".repeat(900_000))).catch(() => {});
    const old = Date.now() - 7_200_000;
    const expiredSigned = signProposal(expired, makeProposal(expired, { createdAt: old, expiresAt: old + 60_000 }));
    await kv.put(bucketKey(expired.address), raw(header("DE", old, old + 60_000), expiredSigned.signature, expiredSigned.proposal));
    const strangers = signProposal(unregistered, makeProposal(unregistered));
    await kv.put(bucketKey(unregistered.address), raw(header("DE"), strangers.signature, strangers.proposal));
    // The honest provider's own signed DE proposal, its header saying US.
    await kv.put(bucketKey(relabelled.address), raw(header("US"), relabelledSigned.signature, relabelledSigned.proposal));
    // A withdrawal nobody signed, and a deletion marker, over two honest providers' keys.
    await kv.put(bucketKey(tombstoned.address), JSON.stringify(["w", Date.now()]));
    await kv.delete(bucketKey(deleted.address));

    honest.push(await writeMarker(kv, a));
    honest.sort();

    const fresh = await replica(bucket);
    for (const d of [a, fresh]) {
      const listed = await served(d);
      const providers = listed.map((p) => p.provider);
      for (const junk of [forged, unsigned, malformed, oversized, expired.address, unregistered.address]) expect(providers).to.not.include(junk.toLowerCase());
      expect((await served(d, "&country=US")).length).to.equal(0, "nothing is US: the relabelled proposal is DE");
      for (const p of listed) expect(p.country).to.equal("DE");
    }
    // The running replica keeps every honest provider listed; the fresh one lists what the bucket still holds honestly.
    expect((await served(a)).map((p) => p.provider).sort()).to.deep.equal(honest);
    expect((await served(fresh)).map((p) => p.provider)).to.include(untouched.address.toLowerCase());
    expect((await get(a, `/v1/proposals/${tombstoned.address}/noop`)).status).to.equal(200);
    for (const d of [a, fresh]) expect((await get(d, `/v1/proposals/${forged}/noop`)).status).to.equal(404);
    // The unsigned tombstone does not make a fresh announcement a withdrawn one, on either replica.
    for (const d of [a, fresh]) {
      const again = await post(d, signProposal(tombstoned, makeProposal(tombstoned)));
      expect(again.status, JSON.stringify(again.body)).to.be.oneOf([200, 201]);
    }
    // The providers' next announcements put them back in the bucket for every replica.
    for (const key of [relabelled, deleted]) expect((await post(a, signProposal(key, makeProposal(key)))).status).to.be.oneOf([200, 201]);
    await until(async () => (await served(fresh)).length === 5, "every honest provider on the fresh replica");
    expect((await served(fresh)).map((p) => p.provider).sort()).to.deep.equal(honest);
    // Each refusal is counted by its reason.
    const reasons = async () =>
      new Set([...(await a.metrics.metrics()).matchAll(/myst_discovery_store_records_rejected_total\{reason="([^"]+)"\}/g)].map((m) => m[1]));
    for (const reason of ["bad-signature", "malformed", "expired", "unregistered", "unsigned-withdrawal", "unreadable"])
      await until(async () => (await reasons()).has(reason), `a refusal counted as ${reason}`);
  });

  it("a withdrawal or a deletion nobody signed unlists no one, and the provider's fresh announcement is taken, not refused as withdrawn", async function () {
    const bucket = suite.bucket();
    const a = await replica(bucket);
    const [tombstoned, deleted] = fleet.keys;
    for (const key of [tombstoned, deleted]) expect((await post(a, signProposal(key, makeProposal(key)))).status).to.equal(201);
    const { kv } = await bucketWriter(bucket);
    // Dated an hour ahead: were it believed, every announcement of the next hour would be "withdrawn".
    await kv.put(bucketKey(tombstoned.address), JSON.stringify(["w", Date.now() + 3_600_000]));
    await kv.delete(bucketKey(deleted.address));
    await writeMarker(kv, a);
    const again = await post(a, signProposal(tombstoned, makeProposal(tombstoned)));
    expect(again.status, JSON.stringify(again.body)).to.be.oneOf([200, 201]);
    for (const key of [tombstoned, deleted]) expect((await get(a, `/v1/proposals/${key.address}/noop`)).status).to.equal(200);
    const fresh = await replica(bucket);
    for (const d of [a, fresh]) {
      const again = await post(d, signProposal(tombstoned, makeProposal(tombstoned)));
      expect(again.status, JSON.stringify(again.body)).to.be.oneOf([200, 201]);
    }
    await until(async () => (await get(fresh, `/v1/proposals/${tombstoned.address}/noop`)).status === 200, "the fresh announcement on the fresh replica");
  });

  it("a provider's signed DE proposal relabelled US in the bucket is served as DE, and a country=US query does not find it", async function () {
    const bucket = suite.bucket();
    const a = await replica(bucket);
    const key = fleet.keys[2];
    const signed = signProposal(key, makeProposal(key, { location: { country: "DE" } }));
    const { kv } = await bucketWriter(bucket);
    await kv.put(bucketKey(key.address), raw(header("US"), signed.signature, signed.proposal));
    await until(async () => (await get(a, `/v1/proposals/${key.address}/noop`)).status === 200, "the proposal on the replica");
    const fresh = await replica(bucket);
    for (const d of [a, fresh]) {
      expect((await served(d, "&country=US")).length).to.equal(0);
      expect((await served(d, "&country=DE")).map((p) => p.provider)).to.deep.equal([key.address.toLowerCase()]);
    }
  });

  it("a fresh replica loads a bucket someone filled with 20,000 junk records, serves none of them, and keeps honest providers on the first page", async function () {
    const bucket = suite.bucket();
    // The bucket made by someone else, without the value size limit a replica sets.
    const { nc, kv } = await bucketWriter(bucket);
    const honest = fleet.keys.slice(0, 3);
    for (const key of honest) {
      const s = signProposal(key, makeProposal(key));
      await kv.put(bucketKey(key.address), raw(header("DE"), s.signature, s.proposal));
    }
    // Keys that sort before every honest provider: kept, they would fill the first page.
    const victim = signProposal(honest[0], makeProposal(honest[0]));
    const junk = (i: number): [string, string] => {
      const provider = `0x0000${i.toString(16).padStart(8, "0")}${"0".repeat(28)}`;
      switch (i % 5) {
        case 0: // someone else's signed proposal under another key
          return [bucketKey(provider), raw(header(), victim.signature, victim.proposal)];
        case 1: // not JSON at all
          return [bucketKey(provider), `{{{${i}`];
        case 2: // a proposal text with no signature
          return [bucketKey(provider), raw(header(), "", textFor(provider))];
        case 3: // text that is not JSON, which a reply would carry verbatim
          return [bucketKey(provider), raw(header(), forgedSignature(), `{"provider":"${provider}",`)];
        default: // a forged signature (one in fifty: each costs a key recovery)
          return [bucketKey(provider), raw(header(), i % 50 === 4 ? forgedSignature() : "0x00", textFor(provider))];
      }
    };
    for (let i = 0; i < 20_000; i += 1000) await Promise.all(Array.from({ length: 1000 }, (_, j) => kv.put(...junk(i + j))));
    // One record of 900 KB (a replica-made bucket would refuse it; this one takes it).
    const big = randomAddress("00");
    await kv.put(bucketKey(big), raw(header(), forgedSignature(), textFor(big) + " ".repeat(900_000)));
    expect((await kv.status()).values).to.equal(20_004);
    await nc.flush();

    const d = await replica(bucket);
    const health = await get(d, "/health");
    expect(health.body.status).to.equal("ok");
    expect(health.body.proposals).to.equal(3);
    const first = await get(d, "/v1/proposals");
    expect(first.body.proposals.map((p: Json) => p.proposal.provider.toLowerCase()).sort()).to.deep.equal(honest.map((k) => k.address.toLowerCase()).sort());
    expect(first.body.next_cursor).to.equal(null);
  });

  /** A replica on a new bucket, a provider that pings every second, one that pings rarely, and a plain connection to the bucket. */
  async function pingingProviders() {
    const bucket = suite.bucket();
    const a = await replica(bucket);
    const key = fleet.keys[6];
    const broker = new Broker({ servers: [suite.nats.url] });
    await broker.start();
    running.push(broker);
    const announcer = new ProposalAnnouncer({ broker, key, proposal: () => makeProposal(key), pingMs: 1000, retryMinMs: 200, retryMaxMs: 500 });
    announcer.start();
    running.push({ stop: () => announcer.stop() });
    await until(async () => announcer.state === "announced", "the announcement");
    // A provider that pings rarely: a purge takes it out of the bucket until its next ping.
    const rare = fleet.keys[8];
    expect((await post(a, signProposal(rare, makeProposal(rare)))).status).to.equal(201);
    const { nc, kv } = await bucketWriter(bucket);
    return { bucket, a, key, rare, announcer, kv, jsm: await nc.jetstreamManager() };
  }

  it("a purged bucket: the replica says so on /health, keeps what it verified, and the providers' next pings refill it", async function () {
    const { bucket, a, key, rare, kv, jsm } = await pingingProviders();
    await jsm.streams.purge(`KV_${bucket}`);
    expect((await kv.status()).values).to.equal(0);
    await until(async () => (await kv.get(bucketKey(key.address)))?.operation === "PUT", "the provider's next ping in the bucket");
    const afterPurge = await replica(bucket);
    expect((await served(afterPurge)).map((p) => p.provider)).to.deep.equal([key.address.toLowerCase()]);
    await until(async () => (await get(a, "/health")).body.store === "refilling", "/health saying the store is refilling");
    expect((await get(a, "/health")).body.store_event).to.match(/purged/);
    // The running replica still lists both: what it verified stays listed until it expires.
    expect((await served(a)).map((p) => p.provider).sort()).to.deep.equal([key, rare].map((k) => k.address.toLowerCase()).sort());
  });

  it("a deleted stream: the replica makes it again, says so on /health, and the provider's next ping refills it", async function () {
    const { bucket, a, key, rare, announcer, kv, jsm } = await pingingProviders();
    await jsm.streams.delete(`KV_${bucket}`);
    await until(async () => (await jsm.streams.info(`KV_${bucket}`).catch(() => null)) !== null, "the stream made again");
    await until(async () => (await kv.get(bucketKey(key.address)).catch(() => null))?.operation === "PUT", "the provider's next ping in the new stream");
    await until(async () => announcer.state === "announced", "the announcer announced again");
    const afterDelete = await replica(bucket);
    expect((await served(afterDelete)).map((p) => p.provider)).to.deep.equal([key.address.toLowerCase()]);
    await until(async () => (await get(a, "/health")).body.store_event?.includes("deleted"), "/health saying the stream was deleted");
    expect((await get(a, "/health")).body.store).to.equal("refilling");
    expect((await served(a)).map((p) => p.provider).sort()).to.deep.equal([key, rare].map((k) => k.address.toLowerCase()).sort());
  });

  describe("the consumer", () => {
    /** A discovery replica that answers every query with `proposals` (a lying or broken one). */
    async function lyingReplica(proposals: SignedProposal[]): Promise<string> {
      const server = http.createServer((req, res) => {
        res.setHeader("content-type", "application/json");
        const items = proposals.map((signed) => ({ signed, proposal: parseSignedProposal(signed).proposal }));
        if (req.url?.startsWith("/v1/proposals/")) return res.end(JSON.stringify(items[0]));
        res.end(JSON.stringify({ proposals: items, next_cursor: null }));
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      running.push({ stop: () => new Promise<void>((resolve) => server.close(() => resolve())) });
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }

    it("drops a proposal, signed by its provider, that does not match the filter it asked for", async function () {
      const [de, us] = fleet.keys;
      const url = await lyingReplica([
        signProposal(de, makeProposal(de, { location: { country: "DE" } })),
        signProposal(us, makeProposal(us, { location: { country: "US" }, price: { perHour: "5" } })),
        signProposal(us, makeProposal(us, { serviceType: "wireguard", location: { country: "US" } })),
      ]);
      const client = new DiscoveryClient(url, fleet.directory.publicKeyOf);
      const found = await client.search({ country: "US", serviceType: "noop", maxPricePerHour: 10n });
      expect(found.proposals.map((p) => [p.proposal.provider, p.proposal.location.country])).to.deep.equal([[us.address, "US"]]);
      expect(found.rejected).to.equal(2);
    });

    it("refuses another provider's proposal as the answer to a lookup", async function () {
      const [asked, other] = fleet.keys;
      const url = await lyingReplica([signProposal(other, makeProposal(other))]);
      const client = new DiscoveryClient(url, fleet.directory.publicKeyOf);
      const err = await client.get(asked.address, "noop").catch((e) => e);
      expect(err).to.be.instanceOf(DiscoveryError);
      expect(err.code).to.equal("DISCOVERY_BAD_RESPONSE");
    });
  });

  it("a withdrawal the provider signed still unlists it on every replica, also one started later", async function () {
    const bucket = suite.bucket();
    const a = await replica(bucket);
    const key = fleet.keys[7];
    const signed = signProposal(key, makeProposal(key, { createdAt: Date.now() - 1000 }));
    expect((await post(a, signed)).status).to.equal(201);
    const broker = new Broker({ servers: [suite.nats.url] });
    await broker.start();
    running.push(broker);
    await broker.request("myst.discovery.unregister", Buffer.from(JSON.stringify(signUnregister(key, "noop"))), 5000);
    await until(async () => (await get(a, `/v1/proposals/${key.address}/noop`)).status === 404, "the withdrawal");
    const fresh = await replica(bucket);
    expect((await get(fresh, `/v1/proposals/${key.address}/noop`)).status).to.equal(404);
    const replay = await post(fresh, signed);
    expect(replay.status).to.equal(409);
    expect(replay.body.code).to.equal("PROPOSAL_WITHDRAWN");
  });
});
