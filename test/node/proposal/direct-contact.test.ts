import { expect } from "chai";
import { IdentityKey } from "../../../node/identity/key";
import { directContactOf, PROPOSAL_FORMAT, type Proposal, parseSignedProposal, proposalTerms, signProposal } from "../../../node/proposal/proposal";

const key = IdentityKey.generate();
const proposal = (contacts: Proposal["contacts"]): Proposal => ({
  format: PROPOSAL_FORMAT,
  provider: key.address as Proposal["provider"],
  serviceType: "wireguard",
  location: { country: "DE", ipType: "residential" },
  price: { currency: "MYST", perHour: "1", perGiB: "2" },
  bandwidthMbps: 10,
  contacts,
  createdAt: 1,
  expiresAt: 2,
});
const nats = { type: "nats/v1" as const, brokerUrls: ["nats://198.18.9.2:4222"], subject: "myst.dialog.x" };
const direct = (address: string, port = 40000) => ({
  type: "direct/v1" as const,
  nat: { mapping: "endpoint-independent" as const, filtering: "address-and-port-dependent" as const },
  candidates: [{ kind: "punch-only" as const, address, port, protocol: "udp" as const }],
});

describe("a proposal's direct contact (how to reach the provider without the broker)", function () {
  it("travels in a signed proposal beside the broker contact", function () {
    const { proposal: p } = parseSignedProposal(signProposal(key, proposal([nats, direct("198.18.3.2")])));
    expect(directContactOf(p)?.candidates[0]).to.deep.equal({ kind: "punch-only", address: "198.18.3.2", port: 40000, protocol: "udp" });
  });

  for (const address of ["192.168.88.2", "10.0.0.7", "100.64.3.2", "169.254.0.1", "127.0.0.1", "fd00::1"])
    it(`makes a proposal that names ${address} malformed: never a private address to the public`, function () {
      expect(() => parseSignedProposal(signProposal(key, proposal([nats, direct(address)]))))
        .to.throw(/not a public address/)
        .with.property("code", "PROPOSAL_MALFORMED");
    });

  it("refuses a candidate that is not an address, a port out of range and an unknown kind", function () {
    for (const bad of [
      { ...direct("198.18.3.2"), candidates: [{ kind: "punch-only", address: "host.example", port: 1, protocol: "udp" }] },
      { ...direct("198.18.3.2"), candidates: [{ kind: "punch-only", address: "198.18.3.2", port: 70000, protocol: "udp" }] },
      { ...direct("198.18.3.2"), candidates: [{ kind: "relay", address: "198.18.3.2", port: 1, protocol: "udp" }] },
    ])
      expect(() => parseSignedProposal(signProposal(key, proposal([nats, bad as never]))))
        .to.throw()
        .with.property("code", "PROPOSAL_MALFORMED");
  });

  it("keeps the session's terms when only the direct contact changed (a new mapping is how to reach, not what was agreed)", function () {
    expect(proposalTerms(proposal([nats, direct("198.18.3.2", 40000)]))).to.equal(proposalTerms(proposal([nats, direct("198.18.3.2", 41000)])));
    expect(proposalTerms(proposal([nats]))).to.equal(proposalTerms(proposal([nats, direct("198.18.3.2")])));
    expect(proposalTerms(proposal([nats]))).not.to.equal(proposalTerms(proposal([{ ...nats, subject: "myst.dialog.y" }])));
  });
});
