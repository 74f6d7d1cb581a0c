import { expect } from "chai";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import { armScript, type GuardBase, type GuardSpec, preparedGuardScript, unguardScript } from "../../../node/consumer-protection/rules";

const base: GuardBase = { killSwitch: true, allowLan: false };
const session: Omit<GuardSpec, keyof GuardBase> = {
  device: "mystc0",
  endpoints: [{ address: "198.18.3.2", port: 1194, protocol: "udp" }],
  dns: [],
  ipv6: false,
};
/** A chain's lines (its closing brace is the only one alone on a line indented by two). */
const chain = (script: string, name: string) => script.slice(script.indexOf(`chain ${name} {`), script.indexOf("\n  }", script.indexOf(`chain ${name} {`)));
const output = (script: string) => chain(script, "guard_output");
const lastRule = (rules: string) => rules.trim().split("\n").slice(-1)[0].trim();
const nftCheckable = fs.existsSync("/usr/sbin/nft") && process.getuid?.() === 0;

describe("consumer protection: the guard rule set", function () {
  it("prepares the whole table in one transaction (replace: declare, delete, define; fresh: create, define)", function () {
    expect(preparedGuardScript(base, "replace").split("\n").slice(0, 3)).to.deep.equal([
      "table inet myst_guard",
      "delete table inet myst_guard",
      "table inet myst_guard {",
    ]);
    expect(preparedGuardScript(base, "fresh").split("\n").slice(0, 2)).to.deep.equal(["create table inet myst_guard", "table inet myst_guard {"]);
    expect(unguardScript()).to.equal("table inet myst_guard\ndelete table inet myst_guard\n");
  });

  it("is disarmed as prepared: each hook accepts by policy and jumps to its guard only through the empty set `armed`", function () {
    const script = preparedGuardScript(base, "fresh");
    for (const hook of ["output", "input", "forward"]) {
      const rules = chain(script, hook);
      expect(rules).to.include(`type filter hook ${hook} priority filter; policy accept;`);
      expect(lastRule(rules)).to.equal(`meta nfproto @armed jump guard_${hook}`);
    }
    expect(script).to.include("set armed { type nf_proto; }");
    expect(script).to.not.include("elements");
  });

  it("arms in one script: flushes every session set, fills them, and adds both families to `armed` last", function () {
    const arm = armScript({ ...session, dns: ["10.8.0.1", "fd00::1"] })
      .trim()
      .split("\n");
    expect(arm.slice(0, 8).every((l) => l.startsWith("flush set inet myst_guard "))).to.equal(true);
    expect(arm).to.include('add element inet myst_guard tunnel { "mystc0" }');
    expect(arm).to.include("add element inet myst_guard endpoints4 { 198.18.3.2 . udp . 1194 }");
    expect(arm).to.include("add element inet myst_guard endpoint_hosts4 { 198.18.3.2 }");
    expect(arm).to.include("add element inet myst_guard dns4 { 10.8.0.1 }");
    expect(arm).to.include("add element inet myst_guard dns6 { fd00::1 }");
    expect(arm).to.include('add element inet myst_guard no_ipv6 { "mystc0" }');
    expect(arm[arm.length - 1]).to.equal("add element inet myst_guard armed { ipv4, ipv6 }");
    expect(armScript({ ...session, ipv6: true })).to.not.include("no_ipv6 {");
    // Between sessions (`block`): no endpoint and no resolver, still armed.
    expect(armScript({ ...session, endpoints: [], dns: [] })).to.not.include("endpoints4 {");
    expect(armScript({ ...session, tunnelPeers: [{ address: "198.18.3.2", localPort: 40100 }] })).to.include(
      "add element inet myst_guard tunnel_peers4 { 198.18.3.2 . 40100 }",
    );
  });

  describe("with the kill switch", function () {
    it("ends each guard in a reject or drop and lets out only loopback, the provider's endpoint outside the tunnel, and the tunnel", function () {
      const script = preparedGuardScript(base, "fresh");
      const out = output(script);
      expect(out).to.include('oifname "lo" accept');
      expect(out).to.include("oifname != @tunnel ip daddr . meta l4proto . th dport @endpoints4 accept");
      expect(out).to.include("oifname @tunnel accept");
      expect(lastRule(out)).to.equal("reject");
      expect(lastRule(chain(script, "guard_input"))).to.equal("drop");
      expect(lastRule(chain(script, "guard_forward"))).to.equal("drop");
      expect(out).to.not.include("192.168.0.0/16");
    });

    it("refuses DNS (53, and DoT 853) to anything but the provider's resolver through the tunnel, before the tunnel rule", function () {
      const out = output(preparedGuardScript(base, "fresh"));
      const allowDns = out.indexOf("oifname @tunnel ip daddr @dns4 meta l4proto { tcp, udp } th dport 53 accept");
      // The rule for every other destination (a line of its own; the one before the endpoints names the resolvers' sets).
      const refuseDns = out.indexOf("\n    meta l4proto { tcp, udp } th dport { 53, 853 } reject");
      const tunnel = out.indexOf("oifname @tunnel accept");
      expect(allowDns).to.be.greaterThan(0);
      expect(refuseDns).to.be.greaterThan(allowDns);
      expect(tunnel).to.be.greaterThan(refuseDns);
    });

    it("refuses DNS to a resolver's address outside the tunnel before anything is let out there (endpoints, tunnel peers, control endpoints)", function () {
      const control = [{ address: "198.18.9.2", port: 53, protocol: "tcp" as const }];
      for (const b of [base, { ...base, killSwitch: false }, { ...base, allowLan: true, control }]) {
        const out = output(preparedGuardScript(b, "fresh"));
        const lines = out.split("\n").map((l) => l.trim());
        const first = lines.indexOf("oifname != @tunnel ip daddr @dns4 meta l4proto { tcp, udp } th dport { 53, 853 } reject");
        expect(first, "the resolvers' IPv4 rule").to.be.greaterThan(0);
        expect(lines[first + 1]).to.equal("oifname != @tunnel ip6 daddr @dns6 meta l4proto { tcp, udp } th dport { 53, 853 } reject");
        expect(lines.slice(0, first).filter((l) => l.endsWith("accept"))).to.deep.equal(['oifname "lo" accept']);
        expect(lines.findIndex((l) => l.includes("@endpoints4 accept"))).to.be.greaterThan(first);
        expect(lines.findIndex((l) => l.includes("@tunnel_peers4 accept"))).to.be.greaterThan(first);
      }
    });

    it("puts an IPv4-mapped resolver in the IPv4 set (the rule that refuses DNS to it outside the tunnel then matches it)", function () {
      expect(armScript({ ...session, dns: ["::ffff:10.8.0.1", "10.8.0.1"] })).to.include("add element inet myst_guard dns4 { 10.8.0.1 }\n");
      expect(armScript({ ...session, dns: ["::ffff:10.8.0.1"] })).to.not.include("dns6 {");
    });

    it("refuses IPv6 through a tunnel that does not carry it (its device in `no_ipv6`), before the tunnel rule", function () {
      const out = output(preparedGuardScript(base, "fresh"));
      expect(out.indexOf("oifname @no_ipv6 meta nfproto ipv6 reject")).to.be.lessThan(out.indexOf("oifname @tunnel accept"));
    });

    it("lets the node's own control connections out on their exact address and TCP port, outside the tunnel, before the DNS refusal", function () {
      const control = [
        { address: "198.18.9.2", port: 4222, protocol: "tcp" as const },
        { address: "2001:db8:9::2", port: 8545, protocol: "tcp" as const },
      ];
      const script = preparedGuardScript({ ...base, control }, "fresh");
      const out = output(script);
      expect(out).to.include("oifname != @tunnel ip daddr 198.18.9.2 tcp dport 4222 accept");
      expect(out).to.include("oifname != @tunnel ip6 daddr 2001:db8:9::2 tcp dport 8545 accept");
      expect(out.indexOf("tcp dport 4222 accept")).to.be.lessThan(out.indexOf("\n    meta l4proto { tcp, udp } th dport { 53, 853 } reject"));
      expect(chain(script, "guard_input")).to.include("iifname != @tunnel ip saddr 198.18.9.2 tcp sport 4222 accept");
      expect(preparedGuardScript(base, "fresh")).to.not.include("4222");
    });

    it("keeps private ranges and link-local reachable only with --allow-lan", function () {
      const out = output(preparedGuardScript({ ...base, allowLan: true }, "fresh"));
      expect(out).to.include("ip daddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 255.255.255.255, 224.0.0.0/24, 239.0.0.0/8 } accept");
      expect(out).to.include("ip6 daddr { fe80::/10, fc00::/7, ff01::/16, ff02::/16, ff03::/16, ff04::/16, ff05::/16 } accept");
      expect(output(preparedGuardScript(base, "fresh"))).to.not.match(/224\.0\.0\.0|ff02::/);
    });
  });

  describe("without the kill switch", function () {
    it("falls through to the accepting policy but still refuses IPv6 outside the tunnel and DNS to other servers", function () {
      const script = preparedGuardScript({ ...base, killSwitch: false }, "fresh");
      const out = output(script);
      expect(out).to.include("meta l4proto { tcp, udp } th dport { 53, 853 } reject");
      expect(lastRule(out)).to.equal("meta nfproto ipv6 reject");
      expect(lastRule(chain(script, "guard_input"))).to.equal("meta nfproto ipv6 drop");
    });
  });

  (nftCheckable ? it : it.skip)("fresh: nftables refuses it when the table exists, so the replacing script must follow (throwaway namespace)", function () {
    const script = `${preparedGuardScript(base, "replace")}\n${preparedGuardScript(base, "fresh")}`;
    expect(() => execFileSync("/usr/bin/unshare", ["--net", "/usr/sbin/nft", "-f", "-"], { input: script, stdio: ["pipe", "ignore", "ignore"] })).to.throw();
    execFileSync("/usr/bin/unshare", ["--net", "/usr/sbin/nft", "-f", "-"], { input: preparedGuardScript(base, "fresh") });
  });

  (nftCheckable ? it : it.skip)("is a script nftables accepts, prepared and armed in one transaction (throwaway namespace)", function () {
    const cases: [GuardBase, Omit<GuardSpec, keyof GuardBase>][] = [
      [base, session],
      [
        { ...base, allowLan: true, control: [{ address: "198.18.9.2", port: 4222, protocol: "tcp" }] },
        { ...session, dns: ["10.8.0.1", "fd6d:7973:7401::1"] },
      ],
      [
        { killSwitch: false, allowLan: false },
        { ...session, ipv6: true, endpoints: [{ address: "2001:db8::1", port: 443, protocol: "tcp" }] },
      ],
      [base, { ...session, endpoints: [], dns: [] }],
      [
        base,
        {
          ...session,
          tunnelPeers: [
            { address: "198.18.3.2", localPort: 40100 },
            { address: "2001:db8::1", localPort: 40100 },
          ],
        },
      ],
    ];
    for (const [b, s] of cases) {
      // In a throwaway network namespace: not even a check touches the machine's own firewall.
      execFileSync("/usr/bin/unshare", ["--net", "/usr/sbin/nft", "-f", "-"], { input: preparedGuardScript(b, "fresh") + armScript(s) });
    }
  });

  (nftCheckable ? describe : describe.skip)("a tunnel peer answering from another port (netns)", function () {
    this.timeout(30_000);
    const tag = `myst-kr${crypto.randomBytes(2).toString("hex")}`;
    const [c, w] = [`${tag}-c`, `${tag}-w`];
    const ip = (...args: string[]) => execFileSync("/usr/sbin/ip", args, { encoding: "utf8" });
    const PROVIDER = "198.18.3.2";
    const OTHER = "198.18.2.2";
    const TUNNEL_PORT = 40100;
    interface Probe {
      name: string;
      from: string;
      sport: number;
      to: string;
      dport: number;
    }
    const SENDER = `
      const dgram = require("node:dgram");
      for (const p of JSON.parse(process.argv[1])) {
        const s = dgram.createSocket({ type: "udp4", reuseAddr: true });
        s.on("error", () => undefined);
        s.bind({ address: p.from, port: p.sport }, () => s.send(Buffer.from("x"), p.dport, p.to, () => setTimeout(() => s.close(), 100)));
      }`;

    before(function () {
      for (const n of [c, w]) {
        ip("netns", "add", n);
        ip("-n", n, "link", "set", "lo", "up");
      }
      const id = crypto.randomBytes(3).toString("hex");
      ip("link", "add", `mk${id}a`, "type", "veth", "peer", "name", `mk${id}b`);
      ip("link", "set", `mk${id}a`, "netns", c, "name", "eth0");
      ip("link", "set", `mk${id}b`, "netns", w, "name", "eth0");
      ip("-n", c, "addr", "add", "198.18.1.2/24", "dev", "eth0");
      ip("-n", w, "addr", "add", "198.18.1.1/24", "dev", "eth0");
      for (const n of [c, w]) ip("-n", n, "link", "set", "eth0", "up");
      for (const a of [PROVIDER, OTHER]) ip("-n", w, "addr", "add", `${a}/32`, "dev", "lo");
      ip("-n", c, "route", "add", "default", "via", "198.18.1.1");
      ip("-n", w, "route", "add", "198.18.1.2/32", "dev", "eth0");
      const guard = preparedGuardScript(base, "fresh") + armScript({ ...session, tunnelPeers: [{ address: PROVIDER, localPort: TUNNEL_PORT }] });
      execFileSync("/usr/sbin/ip", ["netns", "exec", c, "/usr/sbin/nft", "-f", "-"], { input: guard });
    });

    after(function () {
      for (const n of [c, w]) if (fs.existsSync(`/run/netns/${n}`)) ip("netns", "del", n);
    });

    /** Which probes passed the consumer's guard: counted by chains hooked after it (priority 500). */
    function passed(probes: Probe[]): Record<string, boolean> {
      const outgoing = (p: Probe) => p.from === "198.18.1.2";
      const rule = (p: Probe, i: number) => `ip saddr ${p.from} ip daddr ${p.to} udp sport ${p.sport} udp dport ${p.dport} counter comment "p${i}"`;
      const count = [
        "table inet myst_probe {",
        "  chain out { type filter hook output priority 500; policy accept;",
        ...probes.map((p, i) => (outgoing(p) ? `    ${rule(p, i)}` : "")).filter(Boolean),
        "  }",
        "  chain in { type filter hook input priority 500; policy accept;",
        ...probes.map((p, i) => (outgoing(p) ? "" : `    ${rule(p, i)}`)).filter(Boolean),
        "  }",
        "}",
        "",
      ].join("\n");
      execFileSync("/usr/sbin/ip", ["netns", "exec", c, "/usr/sbin/nft", "-f", "-"], { input: count });
      const send = (n: string, list: Probe[]) => execFileSync("/usr/sbin/ip", ["netns", "exec", n, process.execPath, "-e", SENDER, JSON.stringify(list)]);
      send(c, probes.filter(outgoing));
      send(
        w,
        probes.filter((p) => !outgoing(p)),
      );
      const listed = JSON.parse(
        execFileSync("/usr/sbin/ip", ["netns", "exec", c, "/usr/sbin/nft", "-j", "list", "table", "inet", "myst_probe"], { encoding: "utf8" }),
      );
      execFileSync("/usr/sbin/ip", ["netns", "exec", c, "/usr/sbin/nft", "delete", "table", "inet", "myst_probe"]);
      const result: Record<string, boolean> = {};
      for (const item of listed.nftables as { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[]) {
        if (!item.rule?.comment) continue;
        result[probes[Number(item.rule.comment.slice(1))].name] = (item.rule.expr.find((e) => e.counter)?.counter?.packets ?? 0) > 0;
      }
      return result;
    }

    it("lets the tunnel's own port exchange with any port of the provider's address, and nothing else of ours reach those ports", function () {
      const me = "198.18.1.2";
      expect(
        passed([
          { name: "tunnel port → provider, another port", from: me, sport: TUNNEL_PORT, to: PROVIDER, dport: 51999 },
          { name: "another local port → provider, another port", from: me, sport: TUNNEL_PORT + 1, to: PROVIDER, dport: 51999 },
          { name: "tunnel port → another address", from: me, sport: TUNNEL_PORT, to: OTHER, dport: 51999 },
          { name: "another local port → the provider's endpoint", from: me, sport: TUNNEL_PORT + 2, to: PROVIDER, dport: 1194 },
          { name: "provider, another port → tunnel port", from: PROVIDER, sport: 51999, to: me, dport: TUNNEL_PORT },
          { name: "another address → tunnel port", from: OTHER, sport: 51999, to: me, dport: TUNNEL_PORT },
        ]),
      ).to.deep.equal({
        "tunnel port → provider, another port": true,
        "another local port → provider, another port": false,
        "tunnel port → another address": false,
        "another local port → the provider's endpoint": true,
        "provider, another port → tunnel port": true,
        "another address → tunnel port": false,
      });
    });
  });
});
