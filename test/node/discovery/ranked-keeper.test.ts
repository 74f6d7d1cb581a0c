import { expect } from "chai";
import crypto from "node:crypto";
import { getAddress } from "ethers";
import { ProposalIndex } from "../../../node/discovery/index";
import type { QualityBook } from "../../../node/discovery/quality";
import { RANKED_REFRESH_MS, RankedOrderKeeper } from "../../../node/discovery/ranked-keeper";
import { PROPOSAL_FORMAT, type Proposal } from "../../../node/proposal/proposal";

/**
 * The ranked order's keeper (sort=quality) updates off the query path, and a change of the listed set
 * alone schedules that update: the first ranked query after a newcomer, however much later it comes,
 * must see it (found by a review: the listed set was noticed only by a query, which was then served the
 * old order).
 */
describe("the ranked order's keeper", () => {
  const now = Date.now();
  const proposal = (): Proposal =>
    ({
      format: PROPOSAL_FORMAT,
      provider: getAddress(`0x${crypto.randomBytes(20).toString("hex")}`),
      serviceType: "wireguard",
      location: { country: "DE", city: "Berlin", asn: 3320, isp: "Example ISP", ipType: "residential" },
      price: { currency: "MYST", perHour: "100000000000000000", perGiB: "200000000000000000" },
      bandwidthMbps: 100,
      contacts: [],
      createdAt: now,
      expiresAt: now + 3_600_000,
    }) as Proposal;
  const add = (index: ProposalIndex, p: Proposal) => index.upsert({ proposal: JSON.stringify(p), signature: `0x${"11".repeat(64)}` }, p, now);
  // Only what the keeper asks of a book: no scores, nothing changes (every proposal unrated).
  const book = { version: 0, onScores: () => undefined, takeChanges: () => [], rated: () => undefined } as unknown as QualityBook;

  it("has a proposal listed after its last update in the order the next query reads, without that query making it", async () => {
    const index = new ProposalIndex(3_600_000);
    for (let i = 0; i < 20; i++) add(index, proposal());
    const keeper = new RankedOrderKeeper(index, book);
    expect(index.keysOf(keeper.order())).to.have.length(20);
    const newcomer = proposal();
    add(index, newcomer);
    await new Promise((r) => setTimeout(r, RANKED_REFRESH_MS * 3));
    const keys = index.keysOf(keeper.order());
    expect(keys).to.have.length(21);
    expect(keys.some((k) => k?.toLowerCase().includes(newcomer.provider.toLowerCase()))).to.equal(true);
  });

  it("drops a proposal removed after its last update from the order the next query reads", async () => {
    const index = new ProposalIndex(3_600_000);
    const ps = Array.from({ length: 10 }, proposal);
    for (const p of ps) add(index, p);
    const keeper = new RankedOrderKeeper(index, book);
    expect(index.keysOf(keeper.order())).to.have.length(10);
    index.remove(ps[3].provider, ps[3].serviceType);
    await new Promise((r) => setTimeout(r, RANKED_REFRESH_MS * 3));
    expect(index.keysOf(keeper.order())).to.have.length(9);
  });
});
