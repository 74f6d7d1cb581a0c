import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { connect, type KV } from "nats";
import { authOptions, Broker } from "../../../node/broker/broker";
import { signUnregister } from "../../../node/discovery/announcements";
import { JetStreamProposalStore } from "../../../node/discovery/jetstream-store";
import { decodeRecord, encodeRecord, proposalRecord } from "../../../node/discovery/record";
import { loadReplicaKey, RecordMarker, ReplicaKeyError } from "../../../node/discovery/record-mark";
import { DiscoveryService } from "../../../node/discovery/server";
import { SignatureWorkers } from "../../../node/discovery/signature-workers";
import type { SignerDirectory } from "../../../node/identity/protocol-signature";
import { parseSignedProposal, signProposal, verifySignedProposal } from "../../../node/proposal/proposal";
import { REPLICA_CREDENTIALS } from "../../../scripts/lib/nats-server";
import { ProviderFleet } from "../../../scripts/lib/proposal-fleet";
import { makeProposal } from "../../../scripts/lib/proposals";
import { startNatsServer, type NatsServer } from "../../../scripts/lib/test-network";
import { until } from "../../../scripts/lib/until";

/** The signature threads' contract, counting each signature a replica checks. */
class CountingWorkers extends SignatureWorkers {
  checks = 0;
  override checkSigner(claimed: string, bytes: Uint8Array, signature: Uint8Array, directory: SignerDirectory) {
    this.checks++;
    return super.checkSigner(claimed, bytes, signature, directory);
  }
}

/**
 * Replicas mark what they verified with the replicas' key (record-mark.ts), so a restarted replica,
 * or another replica of the same service, loads a bucket without checking every signature again;
 * anything without a good mark is still verified in full, and refused when it fails.
 */
describe("discovery replicas trust their own marks, and nothing else", function () {
  this.timeout(300_000);
  let nats: NatsServer;
  const fleet = new ProviderFleet(8);
  const key = crypto.randomBytes(32);
  const running: { stop(): Promise<void> }[] = [];
  let buckets = 0;

  before(async () => {
    nats = await startNatsServer();
  });
  after(async () => {
    await nats.stop();
  });
  afterEach(async () => {
    for (const r of running.splice(0).reverse()) await r.stop();
  });

  async function replica(bucket: string, replicaKey: Uint8Array | undefined): Promise<{ d: DiscoveryService; workers: CountingWorkers }> {
    const broker = new Broker({ servers: [nats.url], credentials: REPLICA_CREDENTIALS });
    await broker.start();
    running.push(broker);
    const store = new JetStreamProposalStore({ servers: [nats.url], credentials: REPLICA_CREDENTIALS, bucket, ttlMs: 600_000, checkMs: 250 });
    const workers = new CountingWorkers(1);
    const d = new DiscoveryService({ broker, directory: fleet.directory, port: 0, store, signatureWorkers: workers, replicaKey });
    await d.start();
    running.push({ stop: () => d.stop() });
    return { d, workers };
  }

  async function bucketWriter(bucket: string): Promise<KV> {
    const nc = await connect({ servers: nats.url, name: "bucket-writer", ...authOptions(REPLICA_CREDENTIALS) });
    running.push({ stop: () => nc.close() });
    return nc.jetstream().views.kv(bucket, { history: 1 });
  }

  const providers = async (d: DiscoveryService, query = ""): Promise<string[]> => {
    const body = (await (await fetch(`${d.url}/v1/proposals?limit=500${query}`)).json()) as { proposals: { signed: never }[] };
    const out: string[] = [];
    for (const item of body.proposals) out.push((await verifySignedProposal(item.signed, fleet.directory)).proposal.provider.toLowerCase());
    return out.sort();
  };
  const verifiedBy = async (d: DiscoveryService, by: "mark" | "signature") =>
    Number(new RegExp(`myst_discovery_store_records_verified_total\\{by="${by}"\\} (\\d+)`).exec(await d.metrics.metrics())?.[1] ?? 0);
  const post = async (d: DiscoveryService, body: unknown) =>
    (await fetch(`${d.url}/v1/proposals`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).status;

  it("a replica restarted on a bucket it verified checks no signature again; a replica without the key checks every one", async function () {
    const bucket = `marks-${++buckets}`;
    const first = await replica(bucket, key);
    for (const k of fleet.keys.slice(0, 6)) expect(await post(first.d, signProposal(k, makeProposal(k)))).to.equal(201);
    const gone = fleet.keys[5];
    // One clock reading for both: two could differ by a millisecond, and the stored time would then not be the signed one.
    const at = Date.now();
    // A header that is not the signed text's is refused, not marked and stored.
    const refused = await first.d.withdraw(gone.address, "noop", at, signUnregister(gone, "noop", at - 1)).then(
      () => undefined,
      (err: { code?: string }) => err,
    );
    expect(refused?.code).to.equal("UNREGISTER_MALFORMED");
    expect(await first.d.withdraw(gone.address, "noop", at, signUnregister(gone, "noop", at))).to.equal(true);
    const listed = fleet.keys
      .slice(0, 5)
      .map((k) => k.address.toLowerCase())
      .sort();
    expect(await providers(first.d)).to.deep.equal(listed);
    await first.d.stop();

    const restarted = await replica(bucket, key);
    expect(await providers(restarted.d)).to.deep.equal(listed);
    expect(await providers(restarted.d, `&provider_id=${gone.address}`)).to.deep.equal([], "the withdrawal is loaded too");
    expect(restarted.workers.checks).to.equal(0, "no signature checked again");
    expect(await verifiedBy(restarted.d, "mark")).to.equal(6, "five proposals and one withdrawal, vouched for by the mark");
    expect(await verifiedBy(restarted.d, "signature")).to.equal(0);

    const stranger = await replica(bucket, crypto.randomBytes(32));
    expect(await providers(stranger.d)).to.deep.equal(listed);
    expect(stranger.workers.checks).to.equal(6, "another key's marks vouch for nothing: every signature checked");
    expect(await verifiedBy(stranger.d, "signature")).to.equal(6);
    const unkeyed = await replica(bucket, undefined);
    expect(await providers(unkeyed.d)).to.deep.equal(listed);
    expect(unkeyed.workers.checks).to.equal(6);
  });

  it("refuses what a hostile writer puts in the bucket: marks moved to another key, forged, of another key, or over changed fields", async function () {
    const bucket = `marks-${++buckets}`;
    const honest = await replica(bucket, key);
    const [a, b, c, d, e] = fleet.keys;
    for (const k of [a, b]) expect(await post(honest.d, signProposal(k, makeProposal(k, { location: { country: "DE" } })))).to.equal(201);
    const kv = await bucketWriter(bucket);
    const bucketKey = (address: string) => `${address.toLowerCase()}.noop`;
    const stored = async (address: string) => decodeRecord((await kv.get(bucketKey(address)))!.value);
    const marker = new RecordMarker(key);

    // a's marked value, copied under c's key (the mark covers the key).
    await kv.put(bucketKey(c.address), encodeRecord(await stored(a.address)));
    // b's marked value relabelled US, its mark kept (the mark covers every field).
    const relabelled = { ...(await stored(b.address)), country: "US" };
    await kv.put(bucketKey(b.address), encodeRecord(relabelled));
    // A proposal under a signature its provider never made, "marked" with another key, and with our key's id but a made-up mark.
    const dSigned = signProposal(d, makeProposal(d));
    const forged = { ...proposalRecord(dSigned, parseSignedProposal(dSigned).proposal), signature: `0x${crypto.randomBytes(64).toString("hex")}` };
    await kv.put(bucketKey(d.address), encodeRecord(new RecordMarker(crypto.randomBytes(32)).marked(`${d.address.toLowerCase()}/noop`, forged)));
    await kv.put(bucketKey(e.address), encodeRecord({ ...forged, mark: `${marker.id}.${crypto.randomBytes(32).toString("base64url")}` }));
    // An expired proposal with a genuine mark: times are checked on every load.
    const f = fleet.keys[5];
    const old = Date.now() - 7_200_000;
    const expired = signProposal(f, makeProposal(f, { createdAt: old, expiresAt: old + 60_000 }));
    const expiredRecord = proposalRecord(expired, parseSignedProposal(expired).proposal);
    await kv.put(bucketKey(f.address), encodeRecord(marker.marked(`${f.address.toLowerCase()}/noop`, expiredRecord)));

    const fresh = await replica(bucket, key);
    for (const r of [honest, fresh]) {
      await until(async () => (await r.d.metrics.metrics()).includes('reason="expired"'), "the expired value refused");
      expect(await providers(r.d)).to.deep.equal([a.address.toLowerCase(), b.address.toLowerCase()].sort(), "only the honest providers");
      expect(await providers(r.d, "&country=US")).to.deep.equal([], "the relabelled proposal is served as signed: DE");
    }
    // The relabelled value was verified in full (its mark no longer held) and indexed from its signed text.
    expect(await verifiedBy(fresh.d, "signature")).to.equal(1);
    expect(await verifiedBy(fresh.d, "mark")).to.equal(1, "only a's untouched value");
    const reasons = new Set(
      [...(await fresh.d.metrics.metrics()).matchAll(/myst_discovery_store_records_rejected_total\{reason="([^"]+)"\}/g)].map((m) => m[1]),
    );
    expect([...reasons].sort()).to.deep.equal(["bad-signature", "expired", "wrong-key"].sort());
  });

  describe("the replicas' key file", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-replica-key-"));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("is made once, readable only by its owner, and read back the same", () => {
      const file = path.join(dir, "sub", "replica.key");
      const made = loadReplicaKey(file);
      expect(fs.statSync(file).mode & 0o777).to.equal(0o600);
      expect(Buffer.from(loadReplicaKey(file)).equals(Buffer.from(made))).to.equal(true);
    });

    it("refuses a file that holds no key, with its name", () => {
      const file = path.join(dir, "junk.key");
      fs.writeFileSync(file, "not a key\n");
      expect(() => loadReplicaKey(file))
        .to.throw(ReplicaKeyError)
        .with.property("message")
        .that.includes(file);
    });
  });
});
