import { expect } from "chai";
import crypto from "node:crypto";
import { getAddress } from "ethers";
import { ProposalIndex } from "../../../node/discovery/index";
import { packText, unpackFast, unpackText } from "../../../node/discovery/index-entry";
import { PROPOSAL_FORMAT, type Proposal } from "../../../node/proposal/proposal";

/**
 * The index keeps its entries in columns (index-entry.ts: typed arrays per slot, the signatures and
 * packed signed texts in one buffer, slots reused once a key is forgotten). What it serves must be
 * what it was given, byte for byte, and slots must carry nothing from the key that held them before.
 */
describe("the discovery index's columns serve exactly what they were given", () => {
  const now = Date.now();
  const address = () => getAddress(`0x${crypto.randomBytes(20).toString("hex")}`);
  const proposal = (provider: string, over: Partial<Proposal> = {}): Proposal =>
    ({
      format: PROPOSAL_FORMAT,
      provider,
      serviceType: "wireguard",
      location: { country: "DE", city: "Berlin", asn: 3320, isp: "Example ISP", ipType: "residential" },
      price: { currency: "MYST", perHour: "100000000000000000", perGiB: "200000000000000000" },
      bandwidthMbps: 100,
      contacts: [{ type: "nats/v1", brokerUrls: ["nats://127.0.0.1:4222"], subject: `myst.dialog.${provider.toLowerCase()}` }],
      createdAt: now,
      expiresAt: now + 3_600_000,
      ...over,
    }) as Proposal;
  const lowerSig = () => `0x${crypto.randomBytes(64).toString("hex")}`;

  it("packs and unpacks any text to itself; a text holding a code character is kept as it is", () => {
    const texts = [
      "",
      JSON.stringify(proposal(address())),
      JSON.stringify({ ...proposal(address()), location: { country: "JP", city: "東京 — Zürich", ipType: "residential" } }),
      '{"format":"myst-proposal/1","provider":"0x\t\n\r residential000000000000nats://',
      "residential".repeat(50),
    ];
    for (const t of texts) {
      const packed = packText(t);
      expect(packed, t).to.not.equal(null);
      expect(unpackText(packed as string)).to.equal(t);
      expect(unpackFast(packed as string)).to.equal(t);
    }
    expect(packText(JSON.stringify(proposal(address()))) as string).to.have.length.below(250);
    expect(packText("a\u0001b")).to.equal(null);
    expect(packText("\u001f")).to.equal(null);
  });

  it("serves the signature and text byte for byte (any signature, non-ASCII text), and json() is the API's shape", () => {
    const index = new ProposalIndex(3_600_000);
    const cases = [
      { p: proposal(address()), signature: lowerSig() },
      { p: proposal(address()), signature: `0x${crypto.randomBytes(64).toString("hex").toUpperCase()}` },
      { p: proposal(address(), { location: { country: "FR", city: "Saint-Étienne 🚀", ipType: "hosting" } }), signature: `0x${"ab".repeat(65)}` },
    ];
    for (const { p, signature } of cases) {
      const text = JSON.stringify(p);
      expect(index.upsert({ proposal: text, signature }, p, now)).to.equal("added");
      const e = index.get(p.provider, p.serviceType, now);
      expect(e?.signed).to.deep.equal({ proposal: text, signature });
      expect(e?.proposal).to.deep.equal(p);
      expect(JSON.parse(e?.json() as string)).to.deep.equal({ signed: { proposal: text, signature }, proposal: p });
      expect(e?.country).to.equal(p.location.country);
      expect(e?.ipType).to.equal(p.location.ipType);
      expect(e?.serviceType).to.equal("wireguard");
      // The same text again is a refresh; another text at the same time is refused.
      expect(index.upsert({ proposal: text, signature }, p, now)).to.equal("refreshed");
      expect(() => index.upsert({ proposal: `${text} `, signature }, p, now)).to.throw(/newer proposal/);
    }
  });

  it("writes a page of the API's JSON byte for byte as the entries' strings give it (packed or not, escapes, any signature)", () => {
    const index = new ProposalIndex(3_600_000);
    const odd = (city: string) => proposal(address(), { location: { country: "FR", city, ipType: "hosting" } });
    const cases = [
      { p: proposal(address()), signature: lowerSig() },
      { p: odd('quote " backslash \\ tab \t newline \n bell \u0007 del \u007f'), signature: `0x${"AB".repeat(64)}` },
      { p: odd("Saint-Étienne 🚀 東京 \u2028"), signature: `0x${"ab".repeat(65)}` },
      { p: odd("residential000000000000nats://"), signature: lowerSig() },
    ];
    const texts = cases.map(({ p }) => JSON.stringify(p));
    // A text with a code character (kept unpacked) and one with JSON whitespace between its tokens.
    texts.push(JSON.stringify(odd("x")).replace('"city":"x"', '"city":"\\u0001"'), JSON.stringify(odd("y"), null, "\t"));
    for (let i = 0; i < texts.length; i++) {
      const p = JSON.parse(texts[i]) as Proposal;
      expect(index.upsert({ proposal: texts[i], signature: cases[i]?.signature ?? lowerSig() }, p, now)).to.equal("added");
    }
    const page = index.querySlots({}, 100, undefined, now);
    const entries = index.query({}, 100, undefined, now).entries;
    expect(entries).to.have.length(texts.length);
    const quality = (key: string) => (key < "0x8" ? { score: 55.5, receipts: 3 } : { score: null, receipts: 0 });
    for (const next of [null, "cXVhbGl0eQ"]) {
      const expected = `{"proposals":[${entries.map((e) => `${e.json().slice(0, -1)},"quality":${JSON.stringify(quality(e.key))}}`).join(",")}],"next_cursor":${JSON.stringify(next)}}`;
      expect(index.pageJson(page.slots, quality, next).toString("utf8")).to.equal(expected);
    }
    expect(index.pageJson([], quality, null).toString()).to.equal('{"proposals":[],"next_cursor":null}');
  });

  it("an entry read before its key took another text refuses to serve a text (never another key's or version's)", () => {
    const index = new ProposalIndex(3_600_000);
    const p = proposal(address());
    const first = { proposal: JSON.stringify(p), signature: lowerSig() };
    index.upsert(first, p, now);
    const read = index.get(p.provider, "wireguard", now);
    const readToo = index.get(p.provider, "wireguard", now);
    expect(readToo?.signed).to.deep.equal(first);
    const newer = { ...p, createdAt: now + 1 };
    index.upsert({ proposal: JSON.stringify(newer), signature: lowerSig() }, newer, now);
    expect(() => read?.json()).to.throw(/changed/);
    // One read before the change keeps what it read.
    expect(readToo?.signed).to.deep.equal(first);
    expect(index.get(p.provider, "wireguard", now)?.proposal).to.deep.equal(newer);
  });

  it("prices over 64 bits filter and serve exactly", () => {
    const index = new ProposalIndex(3_600_000);
    const huge = (2n ** 70n).toString();
    const big = proposal(address(), { price: { currency: "MYST", perHour: huge, perGiB: "0" } });
    const small = proposal(address(), { price: { currency: "MYST", perHour: "5", perGiB: "7" } });
    for (const p of [big, small]) index.upsert({ proposal: JSON.stringify(p), signature: lowerSig() }, p, now);
    const keys = (f: Parameters<ProposalIndex["query"]>[0]) => index.query(f, 10, undefined, now).entries.map((e) => e.provider);
    expect(keys({ maxPricePerHour: 2n ** 70n - 1n })).to.deep.equal([small.provider.toLowerCase()]);
    expect(keys({ maxPricePerHour: 2n ** 70n }).sort()).to.deep.equal([big, small].map((p) => p.provider.toLowerCase()).sort());
    expect(keys({ metering: "gib" })).to.deep.equal([small.provider.toLowerCase()]);
    expect(index.get(big.provider, "wireguard", now)?.perHour).to.equal(2n ** 70n);
  });

  it("expires, forgets and reuses slots: a new key in a forgotten one's slot carries none of it", () => {
    const index = new ProposalIndex(60_000);
    const old = Array.from({ length: 300 }, () => proposal(address(), { ipv6: true, accessPolicy: "allowlist", expiresAt: now + 1000 }) as Proposal);
    for (const p of old) index.upsert({ proposal: JSON.stringify(p), signature: lowerSig() }, p, now);
    // One withdrawn (its history is kept until the store's TTL passes).
    index.remove(old[0].provider, "wireguard", now + 1, now);
    expect(index.size).to.equal(299);
    expect(index.query({ ipv6: true }, 1000, undefined, now).entries).to.have.length(299);
    // Expired: not served before the sweep, unlisted by it; forgotten once the store's TTL passed.
    expect(index.query({}, 1000, undefined, now + 1000).entries).to.have.length(0);
    expect(index.sweep(now + 1000)).to.equal(299);
    expect(index.known).to.equal(300);
    index.sweep(now + 60_001);
    expect(index.known).to.equal(0);
    // New keys take the freed slots: nothing of the old ones (withdrawn, ipv6, allowlist, prices) shows.
    const later = now + 60_002;
    const fresh = Array.from({ length: 300 }, () =>
      proposal(address(), { price: { currency: "MYST", perHour: "0", perGiB: "0" }, createdAt: later, expiresAt: later + 3_600_000 }),
    );
    for (const p of fresh) expect(index.upsert({ proposal: JSON.stringify(p), signature: lowerSig() }, p, later)).to.equal("added");
    expect(index.query({ ipv6: true }, 1000, undefined, later).entries).to.have.length(0);
    expect(index.query({ accessPolicy: "allowlist" }, 1000, undefined, later).entries).to.have.length(0);
    expect(index.query({ metering: "hour" }, 1000, undefined, later).entries).to.have.length(0);
    const all = index.query({ accessPolicy: "open", maxPricePerHour: 0n }, 1000, undefined, later).entries;
    expect(all.map((e) => e.key)).to.deep.equal(fresh.map((p) => `${p.provider.toLowerCase()}/wireguard`).sort());
    for (const e of all) expect(e.withdrawn || e.ipv6).to.equal(false);
  });

  it("replacing texts of changing lengths many times keeps every text right and the texts' buffer bounded", () => {
    const index = new ProposalIndex(3_600_000);
    const providers = Array.from({ length: 200 }, address);
    const latest = new Map<string, { proposal: string; signature: string }>();
    for (let round = 0; round < 60; round++) {
      for (const provider of providers) {
        const p = proposal(provider, {
          createdAt: now + round,
          location: { country: "SE", city: "x".repeat(crypto.randomInt(60)), ipType: "mobile" },
        });
        const signed = { proposal: JSON.stringify(p), signature: lowerSig() };
        index.upsert(signed, p, now);
        latest.set(provider.toLowerCase(), signed);
      }
    }
    const page = index.query({ country: "SE" }, 1000, undefined, now).entries;
    expect(page).to.have.length(200);
    for (const e of page) expect(e.signed).to.deep.equal(latest.get(e.provider));
    const { held, used } = index.textBytes;
    // 12,000 texts were written; the buffer holds the 200 live ones and at most as much again no longer held.
    expect(used).to.be.at.most(3 * held);
  });

  describe("a ranked order (sort=quality) holds slots, not entries", () => {
    it("walks by rank then key, filters, skips and pages like the entries it was made from", () => {
      const index = new ProposalIndex(3_600_000);
      const ps = Array.from({ length: 40 }, (_, i) => proposal(address(), { location: { country: i % 2 ? "DE" : "FR", city: "c", ipType: "residential" } }));
      for (const p of ps) index.upsert({ proposal: JSON.stringify(p), signature: lowerSig() }, p, now);
      // Rank: the provider's first hex digit; scored only when that digit is a letter.
      const rate = (provider: string) => {
        const d = Number.parseInt(provider[2], 16);
        return { rank: d, score: d >= 10 ? d * 5 : null };
      };
      const order = index.rankedOrder(rate);
      const expected = ps
        .map((p) => p.provider.toLowerCase())
        .sort()
        .sort((a, b) => rate(b).rank - rate(a).rank);
      const walkAll = (f: Parameters<ProposalIndex["query"]>[0], keep: (s: number | null) => boolean) => {
        const out: string[] = [];
        for (let offset = 0; ; offset += 7) {
          const page = index.rankedPage(order, f, 7, offset, keep, now);
          out.push(...page.entries.map((e) => e.provider));
          if (!page.more) return out;
        }
      };
      expect(walkAll({}, () => true)).to.deep.equal(expected);
      // Ranks in whole tenths are sorted packed with their position; any other rank by comparison: one order.
      const odd = index.rankedOrder((provider) => ({ rank: rate(provider).rank + 0.013, score: null }));
      const tenths = index.rankedOrder((provider) => ({ rank: rate(provider).rank + 0.1, score: null }));
      expect(index.keysOf(odd)).to.deep.equal(index.keysOf(order));
      expect(index.keysOf(tenths)).to.deep.equal(index.keysOf(order));
      const de = new Set(ps.filter((p) => p.location.country === "DE").map((p) => p.provider.toLowerCase()));
      expect(walkAll({ country: "DE" }, () => true)).to.deep.equal(expected.filter((k) => de.has(k)));
      const atLeast = (min: number) => (s: number | null) => s === null || s >= min;
      expect(walkAll({}, atLeast(70))).to.deep.equal(expected.filter((k) => (rate(k).score ?? 100) >= 70));
      // The same without sorting: key order, the same judgement by provider.
      const keyOrder: string[] = [];
      for (let offset = 0; ; offset += 7) {
        const page = index.filteredPage({}, 7, offset, (provider) => (rate(provider).score ?? 100) >= 70, now);
        keyOrder.push(...page.entries.map((e) => e.provider));
        if (!page.more) break;
      }
      expect(keyOrder).to.deep.equal([...expected.filter((k) => (rate(k).score ?? 100) >= 70)].sort());
    });

    it("moves the keys whose rank changed to where a whole new order puts them", () => {
      const index = new ProposalIndex(3_600_000);
      const ps = Array.from({ length: 60 }, () => proposal(address()));
      for (const p of ps) index.upsert({ proposal: JSON.stringify(p), signature: lowerSig() }, p, now);
      const keys = ps.map((p) => `${p.provider.toLowerCase()}/${p.serviceType}`);
      // Few distinct ranks (many ties), some unrated.
      const ranks = new Map(keys.map((k, i) => [k, i % 4 === 0 ? null : (i * 7) % 5]));
      const rate = (provider: string, serviceType: string) => {
        const r = ranks.get(`${provider}/${serviceType}`) ?? null;
        return { rank: r ?? 2.5, score: r };
      };
      let order = index.rankedOrder(rate);
      for (const round of [1, 2, 3]) {
        const changed = keys.filter((_, i) => (i * round) % 7 === 0);
        for (const [n, k] of changed.entries()) ranks.set(k, n % 3 === 0 ? null : (n + round) % 6);
        order = index.rerankedOrder(order, changed, rate);
        const whole = index.rankedOrder(rate);
        expect(index.keysOf(order), `round ${round}`).to.deep.equal(index.keysOf(whole));
        expect([...order.slots]).to.deep.equal([...whole.slots]);
        expect([...order.scores]).to.deep.equal([...whole.scores]);
        expect([...order.ranks]).to.deep.equal([...whole.ranks]);
      }
    });

    it("puts in the keys listed since and drops the ones unlisted, without making the order again", () => {
      const index = new ProposalIndex(3_600_000);
      const ps = Array.from({ length: 60 }, () => proposal(address()));
      for (const p of ps) index.upsert({ proposal: JSON.stringify(p), signature: lowerSig() }, p, now);
      const rate = (provider: string) => ({ rank: Number.parseInt(provider.slice(2, 4), 16) % 7, score: null });
      let order = index.rankedOrder(rate);
      for (const round of [1, 2, 3]) {
        // Some leave, some come back, newcomers arrive (one taking a freed slot).
        for (const p of ps.filter((_, i) => i % (round + 3) === 0)) index.remove(p.provider, p.serviceType);
        for (const p of ps.filter((_, i) => i % (round + 4) === 1)) index.upsert({ proposal: JSON.stringify(p), signature: lowerSig() }, p, now);
        index.sweep(now + 1);
        for (let n = 0; n < 5; n++) {
          const p = proposal(address());
          index.upsert({ proposal: JSON.stringify(p), signature: lowerSig() }, p, now);
        }
        order = index.rerankedOrder(order, [], rate, index.takeListed() ?? []);
        const whole = index.rankedOrder(rate);
        expect(index.keysOf(order), `round ${round}`).to.deep.equal(index.keysOf(whole));
        expect([...order.slots]).to.deep.equal([...whole.slots]);
        expect(index.keysOf(order)).to.have.length(index.size);
      }
    });

    it("never serves a key that left since the order was made, nor another key in its reused slot", () => {
      const index = new ProposalIndex(60_000);
      const gone = proposal(address(), { expiresAt: now + 1000 });
      const stays = proposal(address(), { expiresAt: now + 3_600_000 });
      const kept = { proposal: JSON.stringify(stays), signature: lowerSig() };
      index.upsert({ proposal: JSON.stringify(gone), signature: lowerSig() }, gone, now);
      index.upsert(kept, stays, now);
      const order = index.rankedOrder(() => ({ rank: 50, score: null }));
      // `stays` is pinged; `gone` expires and is forgotten; a newcomer takes its slot.
      expect(index.upsert(kept, stays, now + 30_000)).to.equal("refreshed");
      index.sweep(now + 60_001);
      const later = now + 60_002;
      const newcomer = proposal(address(), { createdAt: later, expiresAt: later + 3_600_000 });
      index.upsert({ proposal: JSON.stringify(newcomer), signature: lowerSig() }, newcomer, later);
      expect(index.known).to.equal(2);
      const page = index.rankedPage(order, {}, 10, 0, () => true, later);
      expect(page.entries.map((e) => e.provider)).to.deep.equal([stays.provider.toLowerCase()]);
      // A fresh order has both.
      const fresh = index.rankedPage(
        index.rankedOrder(() => ({ rank: 50, score: null })),
        {},
        10,
        0,
        () => true,
        later,
      );
      expect(fresh.entries.map((e) => e.provider).sort()).to.deep.equal([stays, newcomer].map((p) => p.provider.toLowerCase()).sort());
    });
  });
});
