import { expect } from "chai";
import { HARD_SIDE_CANDIDATES_MAX, SEARCH_ADDRESSES_MAX, searchCandidates, sprayTargets } from "../../../node/nat/direct/birthday";
import { type Candidate, usableCandidates } from "../../../node/nat/direct/candidates";
import type { PunchPlan } from "../../../node/nat/direct/plan";

/**
 * The birthday search aims at addresses the peer names: a peer naming many (an offer may hold 16)
 * must not make this node spray 4,096 datagrams at each, or probe each from all 256 sockets.
 */
describe("nat: the birthday search's targets are bounded", function () {
  const plan = (peerCandidates: Candidate[]): PunchPlan => ({ kind: "easy-side", reason: "test", peerCandidates });

  it("sprays at most two of the peer's internet addresses, the best-ranked (a mapped one first), never a local one", function () {
    const many: Candidate[] = [
      { kind: "local", address: "192.168.1.20", port: 4000 },
      ...[1, 2, 3, 4, 5].map((i) => ({ kind: "reflexive" as const, address: `198.51.100.${i}`, port: 4000 + i })),
      { kind: "mapped", address: "203.0.113.9", port: 51820 },
    ];
    const targets = sprayTargets(plan(many), 16)!;
    expect(targets.addresses).to.have.length(SEARCH_ADDRESSES_MAX);
    expect(targets.addresses[0]).to.equal("203.0.113.9");
    expect(targets.addresses).to.not.include("192.168.1.20");
    expect(targets.ports).to.have.length(16);
    expect(sprayTargets(plan([{ kind: "local", address: "192.168.1.20", port: 4000 }]), 16)).to.equal(undefined);
  });

  it("gives the hard side's sockets at most four candidates to probe, on those addresses", function () {
    const ports = Array.from({ length: 12 }, (_, i) => ({ kind: "public" as const, address: "203.0.113.9", port: 40000 + i }));
    const chosen = searchCandidates(plan([...ports, { kind: "reflexive", address: "198.51.100.1", port: 4001 }]));
    expect(chosen).to.have.length(HARD_SIDE_CANDIDATES_MAX);
    expect(new Set(chosen.map((c) => c.address)).size).to.be.at.most(SEARCH_ADDRESSES_MAX);
  });

  it("takes no internet candidate in a private or shared range: a peer cannot aim the spray at a host on this node's LAN", function () {
    const labelled: Candidate[] = [
      { kind: "reflexive", address: "192.168.1.1", port: 4000 },
      { kind: "mapped", address: "10.0.0.7", port: 4001 },
      { kind: "public", address: "172.16.5.5", port: 4002 },
      { kind: "reflexive", address: "100.64.3.2", port: 4003 },
    ];
    const usable = usableCandidates([...labelled, { kind: "local", address: "192.168.1.20", port: 4004 }]);
    // A LAN candidate may be private (it is probed from one socket, never sprayed).
    expect(usable).to.deep.equal([{ kind: "local", address: "192.168.1.20", port: 4004 }]);
    expect(sprayTargets(plan(usable), 16)).to.equal(undefined);
    expect(searchCandidates(plan(usableCandidates([...labelled, { kind: "reflexive", address: "198.51.100.1", port: 4005 }])))).to.deep.equal([
      { kind: "reflexive", address: "198.51.100.1", port: 4005 },
    ]);
  });
});
