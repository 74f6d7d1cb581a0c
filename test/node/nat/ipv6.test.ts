import { expect } from "chai";
import type os from "node:os";
import { globalIpv6Addresses, isGlobalIpv6 } from "../../../node/nat/ipv6";

const v6 = (address: string, o: Partial<os.NetworkInterfaceInfo> = {}) =>
  ({
    address,
    family: "IPv6",
    internal: false,
    netmask: "ffff:ffff:ffff:ffff::",
    mac: "02:00:00:00:00:01",
    cidr: null,
    scopeid: 0,
    ...o,
  }) as os.NetworkInterfaceInfo;

describe("IPv6 candidates: which addresses a node may announce", function () {
  it("accepts global unicast addresses, however they are spelled", function () {
    for (const a of ["2a00:1450:4001:82b::200e", "2A00:1450:4001:082B:0:0:0:200E", "2600::1", "3ffe:1::1"]) expect(isGlobalIpv6(a), a).to.equal(true);
  });

  it("refuses unique local, link-local, multicast, loopback, unspecified and IPv4-mapped addresses", function () {
    for (const a of ["fd12:3456:789a::1", "fc00::1", "fe80::1", "fe80::1%eth0", "ff02::1", "::1", "::", "::ffff:8.8.8.8", "64:ff9b::808:808", "8.8.8.8"])
      expect(isGlobalIpv6(a), a).to.equal(false);
  });

  it("refuses special-purpose ranges inside 2000::/3: Teredo, 6to4, the documentation prefixes", function () {
    for (const a of ["2001:0:4136:e378::1", "2001:2::1", "2002:c000:204::1", "3fff::1", "2001:db8::1", "2001:DB8:0:0:1::2"])
      expect(isGlobalIpv6(a), a).to.equal(false);
  });

  it("takes 2001:db8::/32 for global only under the explicit test setting", function () {
    expect(isGlobalIpv6("2001:db8:1::2", { documentationAsGlobal: true })).to.equal(true);
    expect(isGlobalIpv6("fd00::2", { documentationAsGlobal: true })).to.equal(false);
    expect(isGlobalIpv6("2001:db9::1", { documentationAsGlobal: true })).to.equal(true);
  });

  it("gathers the machine's global addresses only, each once, never an internal or scoped one", function () {
    const interfaces = {
      lo: [v6("::1", { internal: true })],
      eth0: [v6("fe80::1", { scopeid: 2 }), v6("fd00:1::5"), v6("2a01:4f8::5"), v6("2A01:4F8:0::5"), { ...v6("192.168.1.5"), family: "IPv4" as const }],
      wlan0: [v6("2001:db8:7::9"), v6("2600:1f18::4")],
    };
    expect(globalIpv6Addresses(interfaces)).to.deep.equal(["2a01:4f8::5", "2600:1f18::4"]);
    expect(globalIpv6Addresses(interfaces, { documentationAsGlobal: true })).to.deep.equal(["2a01:4f8::5", "2001:db8:7::9", "2600:1f18::4"]);
  });
});
