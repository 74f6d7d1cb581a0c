import { isIP } from "node:net";
import type { TunnelEndpoint } from "../session/service";

/** The nftables table that holds every consumer-protection rule, in the consumer's namespace. */
export const GUARD_TABLE = "myst_guard";

/** Private and link-local ranges `--allow-lan` keeps reachable. */
export const LAN_RANGES_4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"];
export const LAN_RANGES_6 = ["fe80::/10", "fc00::/7", "ff00::/8"];

export interface GuardSpec {
  /** Fail closed: nothing leaves but through the tunnel, also when the tunnel is down. */
  killSwitch: boolean;
  /** Keep the local network reachable (private ranges, link-local, multicast). */
  allowLan: boolean;
  /** The tunnel's interface. */
  device: string;
  /** Where the tunnel's own packets go (the provider's endpoint), outside the tunnel. */
  endpoints: TunnelEndpoint[];
  /**
   * The node's own control connections (broker, discovery, chain RPC) when the tunnel carries
   * them: let out on their exact address and TCP port outside the tunnel, also while blocking.
   */
  control?: TunnelEndpoint[];
  /** The provider's resolvers, reached through the tunnel; empty until it is up (no DNS at all then). */
  dns: string[];
  /** The tunnel carries IPv6; when not, IPv6 through the tunnel is refused too. */
  ipv6: boolean;
}

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
export function guardScript(spec: GuardSpec, options: { fresh?: boolean } = {}): string {
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
  const lanOut = spec.allowLan ? [`ip daddr { ${LAN_RANGES_4.join(", ")} } accept`, `ip6 daddr { ${LAN_RANGES_6.join(", ")} } accept`] : [];
  const lanIn = spec.allowLan ? [`ip saddr { ${LAN_RANGES_4.join(", ")} } accept`, `ip6 saddr { ${LAN_RANGES_6.join(", ")} } accept`] : [];
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
    ...lanOut.map((l) => `    ${l}`),
    spec.killSwitch ? "    reject" : "    meta nfproto ipv6 reject",
    "  }",
    "  chain input {",
    `    type filter hook input priority filter; policy ${policy};`,
    '    iifname "lo" accept',
    `    iifname ${dev} accept`,
    ...endpointIn.map((l) => `    ${l}`),
    ...controlIn.map((l) => `    ${l}`),
    ...link.in.map((l) => `    ${l}`),
    ...lanIn.map((l) => `    ${l}`),
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

/** Removes the guard table (and nothing else); succeeds when it is not there. */
export function unguardScript(): string {
  return `table inet ${GUARD_TABLE}\ndelete table inet ${GUARD_TABLE}\n`;
}
