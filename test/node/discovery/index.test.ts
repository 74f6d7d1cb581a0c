import { expect } from "chai";
import crypto from "node:crypto";
import { getAddress } from "ethers";
import { ProposalIndex } from "../../../node/discovery/index";
import { PROPOSAL_FORMAT, type Proposal } from "../../../node/proposal/proposal";
import { matchesFilter, type ProposalFilter } from "../../../node/proposal/filter";

/**
 * The index's buckets (country, IP type, metering, price bands, …) must answer exactly what a
 * plain scan answers, page by page: checked against `matchesFilter` over a random population.
 */
describe("the discovery index: every filter's bucketed walk finds exactly what a full scan finds", function () {
  this.timeout(60_000);
  const pick = <T>(xs: readonly T[]) => xs[crypto.randomInt(xs.length)];
  const prices = ["0", "1000000000000000", "5000000000000000", "10000000000000000", "300000000000000000", "7"];
  const now = Date.now();
  // Two views of one population: one built proposal by proposal, one bulk loaded (as a replica loads the store).
  const index = new ProposalIndex(3_600_000);
  const loaded = new ProposalIndex(3_600_000);
  loaded.beginBulk();
  let all: Proposal[] = [];
  const providers = Array.from({ length: 1500 }, () => getAddress(`0x${crypto.randomBytes(20).toString("hex")}`));
  for (const provider of providers) {
    for (const serviceType of ["noop", "openvpn", "wireguard"].filter(() => crypto.randomInt(3) > 0)) {
      const proposal: Proposal = {
        format: PROPOSAL_FORMAT,
        provider,
        serviceType,
        location: { country: pick(["DE", "SE", "US", "LT", "JP"]), ipType: pick(["residential", "hosting", "mobile"] as const) },
        price: { currency: "MYST", perHour: pick(prices), perGiB: pick(prices) },
        bandwidthMbps: pick([10, 100, 1000]),
        ...(crypto.randomInt(2) ? { ipv6: true } : {}),
        contacts: [{ type: "nats/v1", brokerUrls: ["nats://127.0.0.1:4222"], subject: `myst.dialog.${provider.toLowerCase()}` }],
        createdAt: now,
        expiresAt: now + 3_600_000,
      } as Proposal;
      const signed = { proposal: JSON.stringify(proposal), signature: `0x${"ab".repeat(65)}` };
      index.upsert(signed, proposal, now);
      loaded.upsert(signed, proposal, now);
      all.push(proposal);
    }
  }
  loaded.endBulk();
  // A fifth withdrawn afterwards (deleted from the middle of every set), and some re-announced in another country.
  const gone = new Set(all.filter(() => crypto.randomInt(5) === 0));
  for (const p of gone) for (const i of [index, loaded]) i.remove(p.provider, p.serviceType, p.createdAt + 1, now);
  all = all.filter((p) => !gone.has(p));
  all = all.map((p, i) => {
    if (i % 7 !== 0) return p;
    const moved = { ...p, location: { ...p.location, country: "LT" }, createdAt: now + 1 } as Proposal;
    for (const x of [index, loaded]) x.upsert({ proposal: JSON.stringify(moved), signature: `0x${"cd".repeat(65)}` }, moved, now);
    return moved;
  });
  const byKey = (p: Proposal) => `${p.provider.toLowerCase()}/${p.serviceType}`;
  all.sort((a, b) => (byKey(a) < byKey(b) ? -1 : 1));

  const filters: ProposalFilter[] = [
    {},
    { ipType: "mobile" },
    { ipType: "hosting", country: "SE" },
    { metering: "hour" },
    { metering: "gib", serviceType: "openvpn" },
    { maxPricePerHour: 0n },
    { maxPricePerHour: 5_000_000_000_000_000n },
    { maxPricePerHour: 5_000_000_000_000_001n, metering: "hour" },
    { maxPricePerGiB: 10n },
    { maxPricePerGiB: 10_000_000_000_000_000n, country: "US" },
    { maxPricePerHour: 0n, metering: "hour" },
    { ipv6: true, serviceType: "wireguard" },
    { serviceType: "noop", country: "DE" },
    { serviceType: "openvpn", country: "JP", ipType: "mobile" },
    { minBandwidthMbps: 500, ipType: "residential" },
    { providerIds: providers.slice(0, 7).map((p) => p.toLowerCase()) },
  ];
  for (const filter of filters) {
    it(`pages ${JSON.stringify(filter, (_k, v) => (typeof v === "bigint" ? v.toString() : v))} exactly, built one by one and bulk loaded`, function () {
      const expected = all.filter((p) => matchesFilter(p, filter)).map(byKey);
      for (const view of [index, loaded]) {
        const got: string[] = [];
        let cursor: string | undefined;
        for (let pages = 0; pages < 1000; pages++) {
          const page = view.query(filter, 37, cursor, now);
          got.push(...page.entries.map((e) => e.key));
          if (!page.next) break;
          cursor = page.next;
        }
        expect(got).to.deep.equal(expected);
      }
    });
  }
});
