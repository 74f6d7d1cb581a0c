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
  const index = new ProposalIndex(3_600_000);
  const all: Proposal[] = [];
  const providers = Array.from({ length: 400 }, () => getAddress(`0x${crypto.randomBytes(20).toString("hex")}`));
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
      index.upsert({ proposal: JSON.stringify(proposal), signature: `0x${"ab".repeat(65)}` }, proposal, now);
      all.push(proposal);
    }
  }
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
    { minBandwidthMbps: 500, ipType: "residential" },
    { providerIds: providers.slice(0, 7).map((p) => p.toLowerCase()) },
  ];
  for (const filter of filters) {
    it(`pages ${JSON.stringify(filter, (_k, v) => (typeof v === "bigint" ? v.toString() : v))} exactly`, function () {
      const expected = all.filter((p) => matchesFilter(p, filter)).map(byKey);
      const got: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 1000; pages++) {
        const page = index.query(filter, 37, cursor, now);
        got.push(...page.entries.map((e) => e.key));
        if (!page.next) break;
        cursor = page.next;
      }
      expect(got).to.deep.equal(expected);
    });
  }
});
