import { expect } from "chai";
import { checkServiceSpec, serviceCapabilities, TUNNEL_TYPES } from "../../../node/services/catalog";
import { CapabilityError, missingCapabilities, parseCapabilities, requireCapabilities } from "../../../node/services/capabilities";

/** A /proc/<pid>/status excerpt: the user ids and the capability masks, as the kernel prints them. */
const status = (o: { uid: number; eff: string; amb: string; bnd?: string }) =>
  [
    "Name:\tnode",
    `Uid:\t${o.uid}\t${o.uid}\t${o.uid}\t${o.uid}`,
    "CapInh:\t0000000000000000",
    `CapPrm:\t${o.eff}`,
    `CapEff:\t${o.eff}`,
    `CapBnd:\t${o.bnd ?? "000001ffffffffff"}`,
    `CapAmb:\t${o.amb}`,
  ].join("\n");
// CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12).
const TUNNEL = "0000000000001400";
const NONE = "0000000000000000";

describe("capabilities: what a service needs, what the node holds", function () {
  it("reads the effective and ambient sets of a process that is not root; its children get the ambient set", function () {
    const held = parseCapabilities(status({ uid: 64_999, eff: TUNNEL, amb: TUNNEL }));
    expect([...held.effective].sort()).to.deep.equal(["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]);
    expect([...held.children].sort()).to.deep.equal(["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]);
    expect(held.uid).to.equal(64_999);
  });

  it("counts root's children as getting the bounding set, with no ambient set (exec by root)", function () {
    const held = parseCapabilities(status({ uid: 0, eff: "000001ffffffffff", amb: NONE }));
    expect(missingCapabilities([{ capability: "CAP_NET_ADMIN", why: "to test" }], held)).to.deep.equal([]);
    const bounded = parseCapabilities(status({ uid: 0, eff: "000001ffffffffff", amb: NONE, bnd: "0000000000000400" }));
    expect(missingCapabilities([{ capability: "CAP_NET_ADMIN", why: "to test" }], bounded).map((n) => n.capability)).to.deep.equal(["CAP_NET_ADMIN"]);
  });

  it("refuses WireGuard without CAP_NET_ADMIN, naming the capability, what for and how to grant it, never 'root'", function () {
    const spec = checkServiceSpec({ type: "wireguard", wireguard: { publicIp: "198.18.3.2" } });
    const held = parseCapabilities(status({ uid: 64_999, eff: "0000000000000400", amb: "0000000000000400" }));
    let err: unknown;
    try {
      requireCapabilities("wireguard", serviceCapabilities(spec), held);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(CapabilityError);
    expect((err as CapabilityError).code).to.equal("CAPABILITY_MISSING");
    expect((err as Error).message).to.match(/^wireguard needs CAP_NET_ADMIN to create its interface/);
    expect((err as Error).message).to.match(/run with AmbientCapabilities=CAP_NET_ADMIN \(systemd/);
    expect((err as Error).message).to.not.match(/root|sudo/);
  });

  it("says when a capability is held but not ambient, so the programs the node starts would not get it", function () {
    const held = parseCapabilities(status({ uid: 64_999, eff: TUNNEL, amb: NONE }));
    const spec = checkServiceSpec({ type: "openvpn", openvpn: { publicIp: "198.18.3.2" } });
    expect(() => requireCapabilities("openvpn", serviceCapabilities(spec), held)).to.throw(/CAP_NET_ADMIN .*held, but not ambient/);
  });

  it("declares, per registered type, the set measured in test/e2e/least-privilege.test.ts; a netns adds CAP_SYS_ADMIN", function () {
    const needs = (spec: Record<string, unknown> & { type: string }) =>
      serviceCapabilities(checkServiceSpec(spec))
        .map((n) => n.capability)
        .sort();
    expect(needs({ type: "openvpn", openvpn: { publicIp: "198.18.3.2" } })).to.deep.equal(["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]);
    expect(needs({ type: "wireguard", wireguard: { publicIp: "198.18.3.2" } })).to.deep.equal(["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]);
    expect(needs({ type: "wireguard", wireguard: { publicIp: "198.18.3.2", netns: "myst-x-p" } })).to.deep.equal([
      "CAP_NET_ADMIN",
      "CAP_NET_BIND_SERVICE",
      "CAP_SYS_ADMIN",
    ]);
    expect(needs({ type: "noop" })).to.deep.equal([]);
    // Every type says what it needs (an empty list is a statement too), so none is left to "run as root".
    for (const t of TUNNEL_TYPES) expect(t.capabilities, `${t.type} declares its capabilities`).to.be.a("function");
  });
});
