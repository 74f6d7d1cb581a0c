import { expect } from "chai";
import { connect } from "nats";
import { authOptions } from "../../../node/broker/broker";
import { PromiseDigests, vaultDomain } from "../../../node/chain/eip712";
import { QualityBook, type QualityReport, type RawEvidence } from "../../../node/discovery/quality";
import { JetStreamReceiptStore, LocalReceiptStore, type ReceiptLimits } from "../../../node/discovery/receipt-store";
import { IdentityKey } from "../../../node/identity/key";
import { probeScoreOf } from "../../../node/quality/probe-score";
import { type Receipt, type Stage, STAGES, signReceipt, verifySignedReceipt } from "../../../node/quality/receipt";
import { promiseCheckOf, scoreOf } from "../../../node/quality/score";
import { ADMIN_CREDENTIALS, REPLICA_CREDENTIALS, startNatsServer, type NatsServer } from "../../../scripts/lib/nats-server";
import { until } from "../../../scripts/lib/until";

const VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const CHAIN = 31337n;
const digests = new PromiseDigests(vaultDomain(CHAIN, VAULT));
const otherVault = new PromiseDigests(vaultDomain(CHAIN, "0x0000000000000000000000000000000000000001"));
const check = promiseCheckOf(CHAIN, VAULT);
const MYST = 10n ** 18n;
const HOUR = 3_600_000;
/** The middle of a 6 h probe period: every record of a test lands in one period. */
const T0 = Math.floor(Date.now() / (6 * HOUR)) * 6 * HOUR - 3 * HOUR;

const providers = [IdentityKey.generate(), IdentityKey.generate(), IdentityKey.generate()];
const consumers = Array.from({ length: 6 }, () => IdentityKey.generate());
const probers = Array.from({ length: 4 }, () => IdentityKey.generate());
const everyone = [...providers, ...consumers, ...probers];
const known = new Map(everyone.map((k) => [k.address.toLowerCase(), k.publicKey]));
const directory = { publicKeyOf: async (id: string) => known.get(id.toLowerCase()) ?? null };

function promiseOf(signer: IdentityKey, to: string, amount: bigint, digest = digests) {
  const sig = signer.signDigest(digest.digest(signer.address, to, amount));
  return { provider: to.toLowerCase(), amount, signature: `0x${Buffer.from(sig).toString("hex")}` };
}

const minWei = (a: bigint, b: bigint) => (a < b ? a : b);

/** A small deterministic generator: every run signs the same mix. */
function randomOf(seed: number): (n: number) => number {
  let x = seed;
  return (n) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x % n;
  };
}

/**
 * `count` receipts and probe results of every kind the score weighs differently: paid sessions,
 * failures at each stage, slow and starved ones, promises of another vault, none, to the provider
 * itself, receipts by the provider about itself, unpaid probers, and same-millisecond ties.
 */
function mixedEvidence(count: number, seed: number): { signer: IdentityKey; r: Receipt; kind: "receipt" | "probe" }[] {
  const rand = randomOf(seed);
  const out: { signer: IdentityKey; r: Receipt; kind: "receipt" | "probe" }[] = [];
  for (let i = 0; i < count; i++) {
    const provider = providers[rand(providers.length)];
    const kind = rand(4) === 0 ? "probe" : "receipt";
    const signer = kind === "probe" ? probers[rand(probers.length)] : rand(12) === 0 ? provider : consumers[rand(consumers.length)];
    const fail: Stage | null = rand(3) === 0 ? STAGES[rand(STAGES.length)] : null;
    const promise = [
      () => promiseOf(signer, provider.address, MYST / BigInt(100 + rand(2000))),
      () => promiseOf(signer, providers[(providers.indexOf(provider) + 1) % providers.length].address, 3n * 10n ** 15n),
      () => promiseOf(signer, provider.address, MYST, otherVault),
      () => null,
    ][rand(10) < 7 ? 0 : 1 + rand(3)]();
    const paidHere = !fail && promise?.provider === provider.address.toLowerCase();
    out.push({
      signer,
      kind,
      r: {
        sessionId: `${kind}-${seed}-${i}`,
        consumer: signer.address.toLowerCase(),
        provider: provider.address.toLowerCase(),
        serviceType: rand(5) === 0 ? "wireguard" : "noop",
        path: fail === "dialog" ? "none" : "public",
        reached: fail ? (STAGES[STAGES.indexOf(fail) - 1] ?? null) : "throughput",
        failed: fail,
        connectMs: fail ? 0 : 50 + rand(5000),
        bytesIn: 1000,
        bytesOut: 200,
        throughputKbps: fail ? 0 : 1000 + rand(40_000),
        advertisedMbps: 20,
        durationMs: 2000,
        promisedWei: paidHere && promise ? minWei(BigInt(rand(3)) * 7n * 10n ** 14n, promise.amount) : 0n,
        promise,
        // Few distinct times: one consumer's receipts often share a millisecond (the tie-break counts).
        at: T0 + rand(40) * 1000,
      },
    });
  }
  return out;
}

/** The score and the probers' median recomputed from the raw signed records a replica serves, as anyone would. */
async function recomputed(raw: { receipts: RawEvidence[]; probes: RawEvidence[] }, provider: string, serviceType: string) {
  const decode = async (list: RawEvidence[], kind: "receipt" | "probe") =>
    (await Promise.all(list.filter((x) => x.serviceType === serviceType).map((x) => verifySignedReceipt(x.signed, { directory, kind })))).map((x) => x.receipt);
  const probe = probeScoreOf(await decode(raw.probes, "probe"), provider, check);
  return { score: scoreOf(await decode(raw.receipts, "receipt"), provider, check, undefined, probe.score), probe };
}

/** A report without the fields made only for the page (the words). */
function figures(r: QualityReport) {
  const { words: _w, probeWords: _p, provider: _pr, serviceType: _s, weightWei, ...rest } = r;
  return { ...rest, weightWei: BigInt(weightWei) };
}

async function expectScoresRecomputable(book: QualityBook): Promise<number> {
  let compared = 0;
  for (const p of providers) {
    const provider = p.address.toLowerCase();
    const raw = await book.evidence(provider);
    for (const type of book.serviceTypes(provider)) {
      const again = await recomputed(raw, provider, type);
      const report = book.report(provider, type, 168);
      expect(figures(report), `${provider}/${type}`).to.deep.equal({ ...again.score, probe: again.probe });
      // What a query reads is the same number, kept as the receipts arrived.
      const rated = book.rated(provider, type);
      expect({ score: rated?.score, rank: rated?.rank, receipts: rated?.receipts }).to.deep.equal({
        score: again.score.score,
        rank: again.score.rank,
        receipts: again.score.receipts,
      });
      compared++;
    }
  }
  return compared;
}

describe("discovery's quality store: scoring rows in memory, raw receipts in the store", function () {
  this.timeout(120_000);

  describe("scores equal the recompute from the raw signed records", function () {
    const limits: ReceiptLimits = { maxAgeMs: 7 * 86_400_000, perSignerPerProvider: 6 };

    it("for a mix of paid, unpaid, self-written, foreign-vault and tied receipts and probe results", async function () {
      const book = new QualityBook({ directory, promiseCheck: check, store: new LocalReceiptStore(limits), limits, perSignerPerHour: 10_000 });
      await book.start();
      const mix = mixedEvidence(400, 7);
      for (const { signer, r, kind } of mix) await book.ingest(signReceipt(signer, r, kind), kind);
      await book.idle();
      // More than 6 of one signer about one provider were sent: the oldest of each went, in the store and in the book.
      expect(book.size).to.be.lessThan(mix.length);
      expect(await expectScoresRecomputable(book)).to.be.greaterThanOrEqual(4);
      const rated = providers.map((p) => book.rated(p.address, "noop")?.score).filter((s) => typeof s === "number");
      expect(rated.length, "some providers are rated").to.be.greaterThan(0);
      await book.stop();
    });

    it("after receipts age out (sweep) the remaining ones still give the served score", async function () {
      const book = new QualityBook({ directory, promiseCheck: check, store: new LocalReceiptStore(limits), limits, perSignerPerHour: 10_000 });
      await book.start();
      for (const { signer, r, kind } of mixedEvidence(150, 11)) await book.ingest(signReceipt(signer, r, kind), kind);
      await book.idle();
      const before = book.size;
      // Half the records' times are past the retention 20 s after T0 + 7 days.
      book.sweep(T0 + limits.maxAgeMs + 20_000);
      await book.idle();
      expect(book.size).to.be.within(1, before - 1);
      // The store still holds the swept ones until its own max_age: the replica serves only what it holds.
      const served = (await Promise.all(providers.map((p) => book.evidence(p.address)))).reduce((n, e) => n + e.receipts.length + e.probes.length, 0);
      expect(served).to.equal(book.size);
      await expectScoresRecomputable(book);
      await book.stop();
    });
  });

  describe("on JetStream", function () {
    let nats: NatsServer;
    before(async () => {
      nats = await startNatsServer();
    });
    after(async () => {
      await nats?.stop();
    });

    const replica = (stream = "quality-store-test", limits?: ReceiptLimits) =>
      new QualityBook({
        directory,
        promiseCheck: check,
        store: new JetStreamReceiptStore({ servers: [nats.url], credentials: REPLICA_CREDENTIALS, stream, limits }),
        limits,
        perSignerPerHour: 10_000,
      });

    it("holds what the stream holds when one signer passes its limit about a provider: across service types, first taken first out", async function () {
      const limits: ReceiptLimits = { maxAgeMs: 7 * 86_400_000, perSignerPerProvider: 3 };
      const live = replica("quality-store-limit", limits);
      await live.start();
      const [c, p] = [consumers[0], providers[0]];
      const paid = { promisedWei: 10n ** 15n, promise: promiseOf(c, p.address, MYST) };
      // Four receipts of one consumer about one provider, two service types, the later ones dated earlier.
      const four = (["noop", "wireguard", "noop", "wireguard"] as const).map((serviceType, i) => ({
        ...mixedEvidence(1, 100 + i)[0].r,
        consumer: c.address.toLowerCase(),
        provider: p.address.toLowerCase(),
        serviceType,
        sessionId: `limit-${i}`,
        reached: "throughput" as const,
        failed: null,
        ...paid,
        at: T0 + 10_000 - i * 1000,
      }));
      for (const r of four) await live.ingest(signReceipt(c, r), "receipt");
      await until(async () => {
        await live.idle();
        return live.size === 3;
      }, "the live replica to hold three");
      const restarted = replica("quality-store-limit", limits);
      await restarted.start();
      await restarted.idle();
      expect(restarted.size).to.equal(3);
      // The first one taken went (the stream's per-subject limit), not the one dated earliest.
      const held = (await live.receipts(p.address)).map((x) => JSON.parse(x.signed.receipt)[1]);
      expect(held.sort()).to.deep.equal(["limit-1", "limit-2", "limit-3"]);
      expect(await restarted.receipts(p.address)).to.deep.equal(await live.receipts(p.address));
      for (const t of ["noop", "wireguard"]) expect(restarted.report(p.address, t, 168)).to.deep.equal(live.report(p.address, t, 168));
      await live.stop();
      await restarted.stop();
      // Streams may not share subjects: the next test makes its own.
      const nc = await connect({ servers: nats.url, ...authOptions(ADMIN_CREDENTIALS) });
      await (await nc.jetstreamManager()).streams.delete("quality-store-limit");
      await nc.close();
    });

    it("receipts survive a restart of the replica and of the broker: a new replica catches up from the stream's disk", async function () {
      const first = replica();
      await first.start();
      const mix = mixedEvidence(120, 3);
      const signed = mix.map(({ signer, r, kind }) => ({ s: signReceipt(signer, r, kind), kind }));
      for (const { s, kind } of signed) await first.ingest(s, kind);
      await until(async () => {
        await first.idle();
        return first.size === mix.length;
      }, "the replica to take every receipt from the stream");
      const reports = providers.flatMap((p) => first.serviceTypes(p.address).map((t) => first.report(p.address, t, 168)));
      const raw = await Promise.all(providers.map((p) => first.evidence(p.address)));
      await first.stop();

      // The broker restarts on the same store directory: the stream is file storage.
      await nats.stop({ keepStore: true });
      await nats.restart();

      const second = replica();
      await second.start();
      await second.idle();
      expect(second.size).to.equal(mix.length);
      expect(providers.flatMap((p) => second.serviceTypes(p.address).map((t) => second.report(p.address, t, 168)))).to.deep.equal(reports);
      expect(await Promise.all(providers.map((p) => second.evidence(p.address)))).to.deep.equal(raw);
      expect(raw.reduce((n, e) => n + e.receipts.length + e.probes.length, 0)).to.equal(mix.length);
      await expectScoresRecomputable(second);
      // Its replay check holds what it caught up on.
      expect(await second.ingest(signed[0].s, signed[0].kind)).to.equal("duplicate");
      await second.stop();
    });
  });
});
