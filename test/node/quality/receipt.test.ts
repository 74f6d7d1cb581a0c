import { expect } from "chai";
import { PromiseDigests, vaultDomain } from "../../../node/chain/eip712";
import { IdentityKey } from "../../../node/identity/key";
import { encodeReceipt, parseReceipt, type Receipt, ReceiptRejected, signReceipt, verifySignedReceipt } from "../../../node/quality/receipt";
import { promiseCheckOf, scoreOf, weights } from "../../../node/quality/score";
import { orderCandidates } from "../../../node/daemon/consumer-receipts";
import type { FoundProposal } from "../../../node/discovery/client";

const VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const CHAIN = 31337n;
const digests = new PromiseDigests(vaultDomain(CHAIN, VAULT));
const check = promiseCheckOf(CHAIN, VAULT);
const MYST = 10n ** 18n;

/** Every identity of these tests is "registered" here (the registry's port, with its keys). */
function directoryOf(keys: IdentityKey[]) {
  const known = new Map(keys.map((k) => [k.address.toLowerCase(), k.publicKey]));
  return { publicKeyOf: async (id: string) => known.get(id.toLowerCase()) ?? null };
}

function promiseOf(consumer: IdentityKey, provider: string, amount: bigint) {
  const sig = consumer.signDigest(digests.digest(consumer.address, provider, amount));
  return { provider: provider.toLowerCase(), amount, signature: `0x${Buffer.from(sig).toString("hex")}` };
}

function receipt(consumer: IdentityKey, provider: IdentityKey, over: Partial<Receipt> = {}): Receipt {
  return {
    sessionId: `s-${Math.random().toString(36).slice(2, 10)}`,
    consumer: consumer.address.toLowerCase(),
    provider: provider.address.toLowerCase(),
    serviceType: "noop",
    path: "public",
    reached: "throughput",
    failed: null,
    connectMs: 120,
    bytesIn: 1000,
    bytesOut: 200,
    throughputKbps: 20_000,
    advertisedMbps: 20,
    durationMs: 2000,
    promisedWei: 0n,
    promise: null,
    at: Date.now(),
    ...over,
  };
}

describe("session receipts: canonical text, signature, strict decoder", function () {
  const consumer = IdentityKey.generate();
  const provider = IdentityKey.generate();
  const stranger = IdentityKey.generate();
  const directory = directoryOf([consumer, provider]);

  it("round-trips a signed receipt and names its consumer", async function () {
    const r = receipt(consumer, provider, { promisedWei: 5n, promise: promiseOf(consumer, provider.address, 5n) });
    const signed = signReceipt(consumer, r);
    const { receipt: back } = await verifySignedReceipt(signed, { directory });
    expect(back).to.deep.equal(r);
  });

  it("drops a forged receipt: signed by someone else in the consumer's name", async function () {
    const text = encodeReceipt(receipt(consumer, provider));
    const forged = { receipt: text, signature: `0x${Buffer.from(stranger.signProtocol(Buffer.from(text))).toString("hex")}` };
    const err = await verifySignedReceipt(forged, { directory }).catch((e) => e);
    expect(err).to.be.instanceOf(ReceiptRejected).with.property("code", "RECEIPT_BAD_SIGNATURE");
  });

  it("drops a receipt changed after signing (the provider turns a failure into a success)", async function () {
    const signed = signReceipt(consumer, receipt(consumer, provider, { reached: "negotiation", failed: "reachability" }));
    const changed = { ...signed, receipt: signed.receipt.replace('"negotiation","reachability"', '"throughput",null') };
    expect(changed.receipt).to.not.equal(signed.receipt);
    const err = await verifySignedReceipt(changed, { directory }).catch((e) => e);
    expect(err).to.have.property("code", "RECEIPT_BAD_SIGNATURE");
  });

  it("drops a validly signed text that is not the canonical form (spaces, upper-case address, 1.0 for 1)", async function () {
    const text = encodeReceipt(receipt(consumer, provider));
    const variants = [
      text.replace(",", ", "),
      text.replace(consumer.address.toLowerCase(), consumer.address),
      text.replace(',"public",', ',"public" ,'),
      text.replace(/,120,/, ",120.0,"),
      `${text.slice(0, -1)},"extra"]`,
    ];
    for (const v of variants) {
      expect(v).to.not.equal(text);
      const signed = { receipt: v, signature: `0x${Buffer.from(consumer.signProtocol(Buffer.from(v))).toString("hex")}` };
      const err = await verifySignedReceipt(signed, { directory }).catch((e) => e);
      expect(err, v).to.be.instanceOf(ReceiptRejected).with.property("code", "RECEIPT_MALFORMED");
    }
  });

  it("drops an oversized receipt before parsing it", async function () {
    const big = `["myst-receipt/1","${"a".repeat(1100)}"]`;
    const signed = { receipt: big, signature: `0x${Buffer.from(consumer.signProtocol(Buffer.from(big))).toString("hex")}` };
    const err = await verifySignedReceipt(signed, { directory }).catch((e) => e);
    expect(err).to.have.property("code", "RECEIPT_TOO_LARGE");
  });

  it("drops receipts of unregistered consumers, from the future, or older than the store keeps", async function () {
    const unreg = await verifySignedReceipt(signReceipt(stranger, receipt(stranger, provider)), { directory }).catch((e) => e);
    expect(unreg).to.have.property("code", "RECEIPT_UNREGISTERED");
    const future = await verifySignedReceipt(signReceipt(consumer, receipt(consumer, provider, { at: Date.now() + 3_600_000 })), { directory }).catch((e) => e);
    expect(future).to.have.property("code", "RECEIPT_STALE");
    const old = await verifySignedReceipt(signReceipt(consumer, receipt(consumer, provider, { at: Date.now() - 8 * 86_400_000 })), { directory }).catch(
      (e) => e,
    );
    expect(old).to.have.property("code", "RECEIPT_STALE");
  });

  it("refuses inconsistent stages and money promised without the promise to back it", function () {
    const bad = (r: Receipt) => () => parseReceipt(encodeReceipt(r));
    expect(bad(receipt(consumer, provider, { reached: "tunnel", failed: "dialog" }))).to.throw(/not after/);
    expect(bad(receipt(consumer, provider, { reached: "tunnel", failed: "tunnel" }))).to.throw(/not after/);
    expect(parseReceipt(encodeReceipt(receipt(consumer, provider, { reached: "tunnel", failed: "first-byte" }))).failed).to.equal("first-byte");
    expect(bad(receipt(consumer, provider, { reached: null, failed: null }))).to.throw(/no stage/);
    expect(bad(receipt(consumer, provider, { promisedWei: 10n }))).to.throw(/cumulative promise/);
    const toOther = promiseOf(consumer, stranger.address, 100n);
    expect(bad(receipt(consumer, provider, { promisedWei: 10n, promise: toOther }))).to.throw(/cumulative promise/);
    expect(() => parseReceipt(JSON.stringify({ receipt: 1 }))).to.throw(ReceiptRejected);
  });
});

describe("quality score: weighed by the money really promised", function () {
  const provider = IdentityKey.generate();
  const consumers = [IdentityKey.generate(), IdentityKey.generate(), IdentityKey.generate()];
  const p = provider.address.toLowerCase();
  const other = IdentityKey.generate();

  const paid = (c: IdentityKey, wei: bigint, over: Partial<Receipt> = {}) =>
    receipt(c, provider, { promisedWei: wei, promise: promiseOf(c, provider.address, wei), ...over });

  it("a receipt without a valid promise weighs nothing, and 1,000 of them leave the score unrated", function () {
    const liar = IdentityKey.generate();
    const unpaid = Array.from({ length: 1000 }, () => receipt(liar, provider, { reached: "dialog", failed: "negotiation" }));
    const s = scoreOf(unpaid, p, check);
    expect(s.score).to.equal(null);
    expect(s.weighed).to.equal(0);
    expect(s.failures[0]).to.deep.include({ stage: "negotiation", receipts: 1000, weighed: 0 });
  });

  it("a promise with a bad signature (or another vault's) weighs nothing", function () {
    const c = consumers[0];
    const otherVault = new PromiseDigests(vaultDomain(CHAIN, "0x0000000000000000000000000000000000000001"));
    const sig = `0x${Buffer.from(c.signDigest(otherVault.digest(c.address, provider.address, MYST))).toString("hex")}`;
    const r = receipt(c, provider, { promisedWei: MYST, promise: { provider: p, amount: MYST, signature: sig } });
    expect(weights([r], p, check)).to.deep.equal([0n]);
  });

  it("a provider's receipts about itself weigh nothing", function () {
    const self = receipt(provider, provider, { promisedWei: MYST, promise: promiseOf(provider, provider.address, MYST) });
    expect(weights([self], p, check)).to.deep.equal([0n]);
  });

  it("one consumer's receipts together weigh at most its largest valid promise, and one receipt at most the stake", function () {
    const c = consumers[0];
    // Three sessions each claiming 0.0015 MYST, backed by a cumulative promise of 0.0015 MYST only.
    const claim = (MYST * 15n) / 10_000n;
    const list = [1, 2, 3].map((i) => paid(c, claim, { at: Date.now() - i * 1000 }));
    expect(weights(list, p, check)).to.deep.equal([0n, 5n * 10n ** 14n, 10n ** 15n]);
  });

  it("paid successes raise the score above the neutral 50; paid failures drop it below; failures need a budget", function () {
    const good = scoreOf(
      consumers.map((c) => paid(c, MYST / 10n)),
      p,
      check,
    );
    expect(good.score).to.be.greaterThan(70);
    const failing = consumers.map((c) => ({
      ...receipt(c, provider, { reached: "tunnel", failed: "dns" }),
      // Backed by what each paid another provider.
      promise: promiseOf(c, other.address, MYST / 10n),
    }));
    const bad = scoreOf(failing, p, check);
    expect(bad.score).to.be.lessThan(30);
    expect(bad.failures).to.deep.equal([{ stage: "dns", receipts: 3, consumers: 3, weighed: 3, weighedConsumers: 3 }]);
  });

  it("delivering a tenth of the advertised bandwidth counts as a failed throughput stage", function () {
    const slow = scoreOf(
      consumers.map((c) => paid(c, MYST / 10n, { throughputKbps: 2000, advertisedMbps: 20 })),
      p,
      check,
    );
    expect(slow.bandwidthRatio).to.equal(0.1);
    expect(slow.failures.map((f) => f.stage)).to.deep.equal(["throughput"]);
    expect(slow.score).to.be.lessThan(50);
  });
});

describe("a connect by filters: the order of candidates", function () {
  const keys = Array.from({ length: 4 }, () => IdentityKey.generate());
  const found = (k: IdentityKey, score: number | null, perGiB = "1") =>
    ({
      signed: { proposal: "", signature: "" },
      proposal: { provider: k.address, price: { perGiB, perHour: "0" } },
      quality: { score, receipts: score === null ? 0 : 3 },
    }) as unknown as FoundProposal;
  const order = (list: FoundProposal[], own = new Map()) => orderCandidates(list, own).map((p) => p.proposal.provider);

  it("takes the best score first, an unrated provider before a bad one, price only between equals", function () {
    const [a, b, c, d] = keys;
    expect(order([found(a, 30, "1"), found(b, null, "5"), found(c, 80, "9"), found(d, null, "2")])).to.deep.equal([c.address, d.address, b.address, a.address]);
  });

  it("prefers its own evidence: a provider that just failed it goes last, one that worked for it first, whatever discovery says", function () {
    const [a, b, c] = keys;
    const own = new Map([
      [a.address.toLowerCase(), { successes: 3, failures: 1, lastFailed: "tunnel" }],
      [c.address.toLowerCase(), { successes: 1, failures: 0, lastFailed: null }],
    ]);
    expect(order([found(a, 95), found(b, 70), found(c, 40)], own)).to.deep.equal([c.address, b.address, a.address]);
  });
});
