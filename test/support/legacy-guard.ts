// The consumer-protection rule set as it was built per session before the prepared table
// (node/consumer-protection/rules.ts until issue 31), verbatim: the reference that
// test/e2e/prepared-kill-switch.test.ts compares the prepared table with, probe by probe.
import { isIP } from "node:net";
import { GUARD_TABLE, LAN_RANGES_4, lanRules, type GuardSpec } from "../../node/consumer-protection/rules";

const quote = (name: string) => `"${name}"`;
const family = (address: string) => (isIP(address) === 6 ? "ip6" : "ip");

/**
 * One nftables script that replaces the whole guard table in one transaction (`nft -f`): the
 * kernel applies all of it or none of it, so there is never a moment without rules.
 *
 * - Always: DNS only to the provider's resolver through the tunnel (UDP/TCP 53 and DoT 853 to
 *   anything else are refused), no IPv6 outside the tunnel (through it only if it carries IPv6).
 * - Kill switch: nothing else leaves or arrives but loopback, the tunnel interface, the
 *   provider's endpoint, the node's own control endpoints (broker, discovery, chain RPC: exact
 *   address and TCP port) and the LAN with `allowLan`; the policy is drop, so it holds with the
 *   tunnel gone and myst dead. Without it, IPv4 outside the tunnel flows when the tunnel is down.
 * - DHCP and IPv6 neighbour discovery stay allowed on the local link: they keep the machine's own
 *   address and say nothing about where its traffic goes.
 */
export function legacyGuardScript(spec: GuardSpec, options: { fresh?: boolean } = {}): string {
  const dev = quote(spec.device);
  const policy = spec.killSwitch ? "drop" : "accept";
  const dnsRules = spec.dns.flatMap((server) => [
    `oifname ${dev} ${family(server)} daddr ${server} udp dport 53 accept`,
    `oifname ${dev} ${family(server)} daddr ${server} tcp dport 53 accept`,
  ]);
  const endpointOut = spec.endpoints.map((e) => `oifname != ${dev} ${family(e.address)} daddr ${e.address} ${e.protocol} dport ${e.port} accept`);
  const endpointIn = spec.endpoints.map((e) => `iifname != ${dev} ${family(e.address)} saddr ${e.address} accept`);
  const controlOut = (spec.control ?? []).map((e) => `oifname != ${dev} ${family(e.address)} daddr ${e.address} ${e.protocol} dport ${e.port} accept`);
  const controlIn = (spec.control ?? []).map((e) => `iifname != ${dev} ${family(e.address)} saddr ${e.address} ${e.protocol} sport ${e.port} accept`);
  // What --allow-lan admits is one decision, shared with the prepared rules (since the LAN's multicast was added to it).
  const lan = spec.allowLan ? lanRules() : { out: [], in: [] };
  const link = {
    out: [
      "udp sport 68 udp dport 67 accept",
      "udp sport 546 udp dport 547 accept",
      "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept",
    ],
    in: [
      "udp sport 67 udp dport 68 accept",
      "udp sport 547 udp dport 546 accept",
      "icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } ip6 hoplimit 255 accept",
    ],
  };
  const tunnel6 = spec.ipv6 ? [] : [`oifname ${dev} meta nfproto ipv6 reject`];
  // `fresh`: the table must not exist yet (`create` fails the whole transaction if it does): no
  // delete, whose RCU grace period costs about 10 ms in the kernel. Otherwise it is replaced.
  const head = options.fresh ? [`create table inet ${GUARD_TABLE}`] : [`table inet ${GUARD_TABLE}`, `delete table inet ${GUARD_TABLE}`];
  const lines = [
    ...head,
    `table inet ${GUARD_TABLE} {`,
    "  chain output {",
    `    type filter hook output priority filter; policy ${policy};`,
    '    oifname "lo" accept',
    ...endpointOut.map((l) => `    ${l}`),
    ...controlOut.map((l) => `    ${l}`),
    ...dnsRules.map((l) => `    ${l}`),
    "    meta l4proto { tcp, udp } th dport { 53, 853 } reject",
    ...tunnel6.map((l) => `    ${l}`),
    `    oifname ${dev} accept`,
    ...link.out.map((l) => `    ${l}`),
    ...lan.out.map((l) => `    ${l}`),
    spec.killSwitch ? "    reject" : "    meta nfproto ipv6 reject",
    "  }",
    "  chain input {",
    `    type filter hook input priority filter; policy ${policy};`,
    '    iifname "lo" accept',
    `    iifname ${dev} accept`,
    ...endpointIn.map((l) => `    ${l}`),
    ...controlIn.map((l) => `    ${l}`),
    ...link.in.map((l) => `    ${l}`),
    ...lan.in.map((l) => `    ${l}`),
    ...(spec.killSwitch ? [] : ["    meta nfproto ipv6 drop"]),
    "  }",
    "  chain forward {",
    `    type filter hook forward priority filter; policy ${policy};`,
    `    oifname ${dev} accept`,
    `    iifname ${dev} ct state established,related accept`,
    ...(spec.allowLan ? [`    ip saddr { ${LAN_RANGES_4.join(", ")} } ip daddr { ${LAN_RANGES_4.join(", ")} } accept`] : []),
    ...(spec.killSwitch ? [] : ["    meta nfproto ipv6 drop"]),
    "  }",
    "}",
    "",
  ];
  return lines.join("\n");
}
