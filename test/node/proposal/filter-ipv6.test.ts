import { expect } from "chai";
import { matchesFilter, parseFilter } from "../../../node/proposal/filter";
import { PROPOSAL_FORMAT, type Proposal } from "../../../node/proposal/proposal";

const proposal = (ipv6?: boolean): Proposal => ({
  format: PROPOSAL_FORMAT,
  provider: "0x00000000000000000000000000000000000000a1",
  serviceType: "openvpn",
  location: { country: "DE", ipType: "hosting" },
  price: { currency: "MYST", perHour: "0", perGiB: "0" },
  bandwidthMbps: 100,
  ...(ipv6 === undefined ? {} : { ipv6 }),
  contacts: [{ type: "nats/v1", brokerUrls: ["nats://127.0.0.1:4222"], subject: "myst.dialog.x" }],
  createdAt: 0,
  expiresAt: 1,
});

describe("proposal filter: ipv6", function () {
  it("ipv6=true keeps only proposals whose tunnel carries IPv6", function () {
    const f = parseFilter({ ipv6: "true" });
    expect(f).to.deep.equal({ ipv6: true });
    expect(matchesFilter(proposal(true), f)).to.equal(true);
    expect(matchesFilter(proposal(false), f)).to.equal(false);
    expect(matchesFilter(proposal(), f)).to.equal(false);
  });

  it("ipv6=false asks for nothing (IPv4-only providers and IPv6 ones both match)", function () {
    const f = parseFilter({ ipv6: "false" });
    expect(matchesFilter(proposal(), f)).to.equal(true);
    expect(matchesFilter(proposal(true), f)).to.equal(true);
  });

  it("refuses any other value with an error that names it", function () {
    expect(() => parseFilter({ ipv6: "yes" })).to.throw(/ipv6 must be "true" or "false"/);
  });
});
