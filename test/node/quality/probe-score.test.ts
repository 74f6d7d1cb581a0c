import { expect } from "chai";
import { PromiseDigests, vaultDomain } from "../../../node/chain/eip712";
import { QualityBook } from "../../../node/discovery/quality";
import { LocalReceiptStore } from "../../../node/discovery/receipt-store";
import { IdentityKey } from "../../../node/identity/key";
import { median, probeScoreOf, probeWords } from "../../../node/quality/probe-score";
import { encodeReceipt, type Receipt, receiptId, signReceipt, verifySignedReceipt } from "../../../node/quality/receipt";
import { promiseCheckOf, scoreOf } from "../../../node/quality/score";

const VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const CHAIN = 31337n;
const digests = new PromiseDigests(vaultDomain(CHAIN, VAULT));
const check = promiseCheckOf(CHAIN, VAULT);
const HOUR = 3_600_000;
/** The middle of a 6 h period (every probe of a test lands in one period). */
const T0 = Math.floor(Date.now() / (6 * HOUR)) * 6 * HOUR - 3 * HOUR;

function directoryOf(keys: IdentityKey[]) {
  const known = new Map(keys.map((k) => [k.address.toLowerCase(), k.publicKey]));
  return { publicKeyOf: async (id: string) => known.get(id.toLowerCase()) ?? null };
}

function promiseOf(signer: IdentityKey, provider: string, amount: bigint) {
  const sig = signer.signDigest(digests.digest(signer.address, provider, amount));
  return { provider: provider.toLowerCase(), amount, signature: `0x${Buffer.from(sig).toString("hex")}` };
}

let n = 0;
/** A probe result by `prober` about `provider`: every stage passed, paid, unless `over` says otherwise. */
function probe(prober: IdentityKey, provider: IdentityKey, over: Partial<Receipt> = {}): Receipt {
  return {
    sessionId: `p-${++n}`,
    consumer: prober.address.toLowerCase(),
    provider: provider.address.toLowerCase(),
    serviceType: "noop",
    path: "public",
    reached: "throughput",
    failed: null,
    connectMs: 100 + n,
    bytesIn: 1000,
    bytesOut: 200,
    throughputKbps: 20_000,
    advertisedMbps: 20,
    durationMs: 2000,
    promisedWei: 10n ** 15n,
    promise: promiseOf(prober, provider.address, 10n ** 15n),
    at: T0 + n,
    ...over,
  };
}

/** A lying prober's result: it says the provider never answered, backed by a real promise to someone else. */
function lie(liar: IdentityKey, provider: IdentityKey, someone: IdentityKey): Receipt {
  return probe(liar, provider, {
    path: "none",
    reached: null,
    failed: "dialog",
    connectMs: 0,
    throughputKbps: 0,
    promisedWei: 0n,
    promise: promiseOf(liar, someone.address, 10n ** 15n),
  });
}

describe("probers: the median of at least 3 independent probers per period", function () {
  const provider = IdentityKey.generate();
  const honest = [IdentityKey.generate(), IdentityKey.generate(), IdentityKey.generate()];
  const liar = IdentityKey.generate();
  const someone = IdentityKey.generate();

  it("takes the median (the mean of the middle two for an even count)", function () {
    expect(median([0, 100, 100])).to.equal(100);
    expect(median([0, 90, 95, 100])).to.equal(92.5);
    expect(median([40])).to.equal(40);
  });

  it("a lying prober alone changes no score: 3 honest + 1 liar give the honest median, and the combined score does not move", function () {
    const honestOnly = honest.flatMap((h) => [probe(h, provider), probe(h, provider)]);
    const withLiar = [...honestOnly, lie(liar, provider, someone), lie(liar, provider, someone)];
    const a = probeScoreOf(honestOnly, provider.address, check);
    const b = probeScoreOf(withLiar, provider.address, check);
    expect(a.score).to.equal(100);
    expect(b.score).to.equal(100);
    expect(b.period!.probers).to.have.length(4);
    expect(scoreOf([], provider.address, check, undefined, b.score).score).to.equal(scoreOf([], provider.address, check, undefined, a.score).score);
    // A liar praising a broken provider moves nothing either.
    const broken = honest.map((h) => probe(h, provider, { reached: "tunnel", failed: "first-byte", throughputKbps: 0 }));
    const praise = probe(liar, provider);
    expect(probeScoreOf(broken, provider.address, check).score).to.equal(0);
    expect(probeScoreOf([...broken, praise], provider.address, check).score).to.equal(0);
  });

  it("keeps a liar inside the range the honest probers span when they disagree", function () {
    // Honest figures 50, 100, 100 (one of them saw one failure in two probes).
    const list = [
      probe(honest[0], provider),
      probe(honest[0], provider, { reached: "tunnel", failed: "first-byte", throughputKbps: 0 }),
      probe(honest[1], provider),
      probe(honest[2], provider),
    ];
    const s = probeScoreOf([...list, lie(liar, provider, someone)], provider.address, check).score!;
    expect(s).to.be.within(50, 100);
  });

  it("needs 3 distinct probers in a period: two say nothing, however many probes they send", function () {
    const two = honest.slice(0, 2).flatMap((h) => [probe(h, provider), probe(h, provider), probe(h, provider)]);
    const s = probeScoreOf(two, provider.address, check);
    expect(s.score).to.equal(null);
    expect(s.periods).to.have.length(1);
    expect(s.periods[0].score).to.equal(null);
    expect(scoreOf([], provider.address, check, undefined, s.score).score).to.equal(null);
  });

  it("counts no probe without a valid promise of the prober's own, nor one by the provider about itself", function () {
    const unpaid = honest.map((h) => probe(h, provider, { promisedWei: 0n, promise: null }));
    const forgedPromise = honest.map((h) => probe(h, provider, { promise: promiseOf(someone, provider.address, 10n ** 15n) }));
    const self = [probe(provider, provider, { promisedWei: 0n, promise: promiseOf(provider, someone.address, 10n ** 15n) })];
    const s = probeScoreOf([...unpaid, ...forgedPromise, ...self], provider.address, check);
    expect(s.counted).to.equal(0);
    expect(s.score).to.equal(null);
  });

  it("scores the latest period that has 3 probers, and keeps every period as the provider's history", function () {
    const old = honest.map((h) => probe(h, provider, { at: T0 - 6 * HOUR, reached: "tunnel", failed: "first-byte", throughputKbps: 0 }));
    const now = honest.map((h) => probe(h, provider));
    const lone = [probe(honest[0], provider, { at: T0 + 6 * HOUR, reached: "tunnel", failed: "first-byte", throughputKbps: 0 })];
    const s = probeScoreOf([...old, ...now, ...lone], provider.address, check);
    expect(s.periods.map((p) => p.score)).to.deep.equal([0, 100, null]);
    expect(s.score).to.equal(100);
    expect(s.period!.start).to.equal(Math.floor(T0 / (6 * HOUR)) * 6 * HOUR);
  });

  it("tells the provider the stage the probers saw fail, in words", function () {
    const s = probeScoreOf(
      honest.map((h) => probe(h, provider, { reached: "tunnel", failed: "first-byte", throughputKbps: 0 })),
      provider.address,
      check,
    );
    expect(probeWords(s)).to.have.length(1);
    expect(probeWords(s)[0]).to.match(/^3 of 3 probers in the 6 h from .*Z had a tunnel but never received a first byte: check your NAT \/ firewall/);
  });

  it("pulls paid receipts toward the probe score instead of the neutral 50", function () {
    const consumer = IdentityKey.generate();
    const receipts: Receipt[] = [
      {
        ...probe(consumer, provider),
        reached: "tunnel",
        failed: "first-byte",
        throughputKbps: 0,
        promisedWei: 0n,
        promise: promiseOf(consumer, someone.address, 10n ** 15n),
      },
    ];
    expect(scoreOf(receipts, provider.address, check).score).to.equal(37.5);
    expect(scoreOf(receipts, provider.address, check, undefined, 100).score).to.equal(75);
  });

  describe("in discovery (QualityBook)", function () {
    const directory = directoryOf([provider, ...honest, liar, someone]);
    const book = () => new QualityBook({ directory, promiseCheck: check, store: new LocalReceiptStore() });
    const fresh = (r: Receipt) => ({ ...r, at: Date.now() - 1000 });

    it("keeps probe results apart from receipts: a receipt's text is no probe result, and one session may have both", async function () {
      const q = book();
      await q.start();
      const r = fresh(probe(honest[0], provider));
      expect(await q.ingest(signReceipt(honest[0], r, "probe"), "probe")).to.equal("stored");
      // The same session as a receipt is another record (another id).
      expect(await q.ingest(signReceipt(honest[0], r), "receipt")).to.equal("stored");
      expect(receiptId(r, "probe")).to.not.equal(receiptId(r));
      // A receipt posted as a probe result (and the other way round) is refused by its version.
      const err = await q.ingest(signReceipt(honest[1], fresh(probe(honest[1], provider))), "probe").catch((e) => e);
      expect(err.code).to.equal("RECEIPT_MALFORMED");
      expect(err.message).to.match(/myst-probe\/1/);
      await q.idle();
      expect(await q.probes(provider.address)).to.have.length(1);
      expect(await q.receipts(provider.address)).to.have.length(1);
    });

    it("drops forged, replayed and oversized probe results", async function () {
      const q = book();
      await q.start();
      const r = fresh(probe(honest[0], provider));
      const signed = signReceipt(honest[0], r, "probe");
      expect(await q.ingest(signed, "probe")).to.equal("stored");
      expect(await q.ingest(signed, "probe")).to.equal("duplicate");
      // The same probe session re-signed with other figures: still a replay of it.
      expect(await q.ingest(signReceipt(honest[0], { ...r, connectMs: 1 }, "probe"), "probe")).to.equal("duplicate");
      const text = encodeReceipt(fresh(probe(honest[1], provider)), "probe");
      const forged = { receipt: text, signature: `0x${Buffer.from(liar.signProtocol(Buffer.from(text))).toString("hex")}` };
      expect((await q.ingest(forged, "probe").catch((e) => e)).code).to.equal("RECEIPT_BAD_SIGNATURE");
      const big = { receipt: `["myst-probe/1",${"1,".repeat(600)}1]`, signature: signed.signature };
      expect((await q.ingest(big, "probe").catch((e) => e)).code).to.equal("RECEIPT_TOO_LARGE");
      await q.idle();
      expect(await q.probes(provider.address)).to.have.length(1);
    });

    it("reports the probers' median with 3 honest probers and a liar, and serves the raw results that recompute it", async function () {
      const q = book();
      await q.start();
      for (const h of honest) await q.ingest(signReceipt(h, fresh(probe(h, provider)), "probe"), "probe");
      await q.idle();
      const before = q.report(provider.address, "noop", 168);
      await q.ingest(signReceipt(liar, fresh(lie(liar, provider, someone)), "probe"), "probe");
      await q.idle();
      const after = q.report(provider.address, "noop", 168);
      expect(before.probe.score).to.equal(100);
      expect(after.probe.score).to.equal(100);
      expect(after.score).to.equal(before.score);
      expect(after.probe.period!.probers).to.have.length(4);
      // Anyone recomputes it from the raw signed results.
      const raw = await Promise.all((await q.probes(provider.address)).map((x) => verifySignedReceipt(x.signed, { directory, kind: "probe" })));
      expect(
        probeScoreOf(
          raw.map((x) => x.receipt),
          provider.address,
          check,
        ).score,
      ).to.equal(after.probe.score);
    });
  });
});
