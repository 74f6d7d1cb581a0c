import { expect } from "chai";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { guardScript, unguardScript, type GuardSpec } from "../../../node/consumer-protection/rules";

const spec: GuardSpec = {
  killSwitch: true,
  allowLan: false,
  device: "mystc0",
  endpoints: [{ address: "198.18.3.2", port: 1194, protocol: "udp" }],
  dns: [],
  ipv6: false,
};
const output = (script: string) => script.slice(script.indexOf("chain output"), script.indexOf("chain input"));
const nftCheckable = fs.existsSync("/usr/sbin/nft") && process.getuid?.() === 0;

describe("consumer protection: the guard rule set", function () {
  it("replaces the whole table in one transaction (create, delete, define)", function () {
    expect(guardScript(spec).split("\n").slice(0, 3)).to.deep.equal(["table inet myst_guard", "delete table inet myst_guard", "table inet myst_guard {"]);
    expect(unguardScript()).to.equal("table inet myst_guard\ndelete table inet myst_guard\n");
  });

  describe("with the kill switch", function () {
    it("drops by policy and lets out only loopback, the provider's endpoint outside the tunnel, and the tunnel", function () {
      const out = output(guardScript(spec));
      expect(out).to.include("policy drop;");
      expect(out).to.include('oifname "lo" accept');
      expect(out).to.include('oifname != "mystc0" ip daddr 198.18.3.2 udp dport 1194 accept');
      expect(out).to.include('oifname "mystc0" accept');
      expect(out.trim().split("\n").slice(-2)[0].trim()).to.equal("reject");
      expect(out).to.not.include("192.168.0.0/16");
    });

    it("refuses DNS (53, and DoT 853) to anything but the provider's resolver through the tunnel, before the tunnel rule", function () {
      const out = output(guardScript({ ...spec, dns: ["10.8.0.1"] }));
      const allowDns = out.indexOf('oifname "mystc0" ip daddr 10.8.0.1 udp dport 53 accept');
      const refuseDns = out.indexOf("meta l4proto { tcp, udp } th dport { 53, 853 } reject");
      const tunnel = out.indexOf('oifname "mystc0" accept');
      expect(allowDns).to.be.greaterThan(0);
      expect(refuseDns).to.be.greaterThan(allowDns);
      expect(tunnel).to.be.greaterThan(refuseDns);
    });

    it("refuses IPv6 through a tunnel that does not carry it, and lets it through one that does", function () {
      expect(output(guardScript(spec))).to.include('oifname "mystc0" meta nfproto ipv6 reject');
      expect(output(guardScript({ ...spec, ipv6: true }))).to.not.include("meta nfproto ipv6 reject");
    });

    it("lets the node's own control connections out on their exact address and TCP port, outside the tunnel, before the DNS refusal", function () {
      const control = [
        { address: "198.18.9.2", port: 4222, protocol: "tcp" as const },
        { address: "2001:db8:9::2", port: 8545, protocol: "tcp" as const },
      ];
      const script = guardScript({ ...spec, control });
      const out = output(script);
      expect(out).to.include('oifname != "mystc0" ip daddr 198.18.9.2 tcp dport 4222 accept');
      expect(out).to.include('oifname != "mystc0" ip6 daddr 2001:db8:9::2 tcp dport 8545 accept');
      expect(out.indexOf("tcp dport 4222 accept")).to.be.lessThan(out.indexOf("th dport { 53, 853 } reject"));
      const input = script.slice(script.indexOf("chain input"), script.indexOf("chain forward"));
      expect(input).to.include('iifname != "mystc0" ip saddr 198.18.9.2 tcp sport 4222 accept');
      expect(guardScript(spec)).to.not.include("4222");
    });

    it("keeps private ranges and link-local reachable only with --allow-lan", function () {
      const out = output(guardScript({ ...spec, allowLan: true }));
      expect(out).to.include("ip daddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16 } accept");
      expect(out).to.include("ip6 daddr { fe80::/10, fc00::/7, ff00::/8 } accept");
    });
  });

  describe("without the kill switch", function () {
    it("accepts by policy but still refuses IPv6 outside the tunnel and DNS to other servers", function () {
      const out = output(guardScript({ ...spec, killSwitch: false }));
      expect(out).to.include("policy accept;");
      expect(out).to.include("meta l4proto { tcp, udp } th dport { 53, 853 } reject");
      expect(out.trim().split("\n").slice(-2)[0].trim()).to.equal("meta nfproto ipv6 reject");
    });
  });

  it("fresh: creates the table without a delete (cheaper), and the transaction fails if one is already there", function () {
    expect(guardScript(spec, { fresh: true }).split("\n").slice(0, 2)).to.deep.equal(["create table inet myst_guard", "table inet myst_guard {"]);
  });

  (nftCheckable ? it : it.skip)("fresh: nftables refuses it when the table exists, so the replacing script must follow (throwaway namespace)", function () {
    const script = `${guardScript(spec)}\n${guardScript(spec, { fresh: true })}`;
    expect(() => execFileSync("/usr/bin/unshare", ["--net", "/usr/sbin/nft", "-f", "-"], { input: script, stdio: ["pipe", "ignore", "ignore"] })).to.throw();
    execFileSync("/usr/bin/unshare", ["--net", "/usr/sbin/nft", "-f", "-"], { input: guardScript(spec, { fresh: true }) });
  });

  (nftCheckable ? it : it.skip)("is a script nftables accepts (nft --check in a throwaway namespace)", function () {
    for (const s of [
      spec,
      { ...spec, dns: ["10.8.0.1"], allowLan: true, control: [{ address: "198.18.9.2", port: 4222, protocol: "tcp" as const }] },
      { ...spec, killSwitch: false, ipv6: true, endpoints: [{ address: "2001:db8::1", port: 443, protocol: "tcp" as const }] },
    ]) {
      // In a throwaway network namespace: not even a check touches the machine's own firewall.
      execFileSync("/usr/bin/unshare", ["--net", "/usr/sbin/nft", "--check", "-f", "-"], { input: guardScript(s) });
    }
  });
});
