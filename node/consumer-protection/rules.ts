import { isIP } from "node:net";
import { canonicalAddress, type TunnelEndpoint, type TunnelPeer } from "../session/service";

/** The nftables table that holds every consumer-protection rule, in the consumer's namespace. */
export const GUARD_TABLE = "myst_guard";

/** Private and link-local ranges `--allow-lan` keeps reachable, both ways. */
export const LAN_RANGES_4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"];
export const LAN_RANGES_6 = ["fe80::/10", "fc00::/7"];
/**
 * Broadcast and multicast that stays on the LAN, which `--allow-lan` also lets out: finding a
 * printer or a screen to cast to (mDNS, SSDP, LLMNR) needs it. IPv4: the broadcast address, the
 * local network control block (224.0.0.0/24, never forwarded), administratively scoped groups;
 * IPv6: the interface- to site-local scopes. Not global-scope multicast (ff0e::/16, 224.0.1.0 and
 * up outside 239/8), which routers carry beyond the LAN. The same list as Mullvad's.
 */
export const LAN_MULTICAST_4 = ["255.255.255.255", "224.0.0.0/24", "239.0.0.0/8"];
export const LAN_MULTICAST_6 = ["ff01::/16", "ff02::/16", "ff03::/16", "ff04::/16", "ff05::/16"];

/** The `--allow-lan` rules: out to the LAN and its multicast, in from the LAN. */
export function lanRules(): { out: string[]; in: string[] } {
  return {
    out: [
      `ip daddr { ${[...LAN_RANGES_4, ...LAN_MULTICAST_4].join(", ")} } accept`,
      `ip6 daddr { ${[...LAN_RANGES_6, ...LAN_MULTICAST_6].join(", ")} } accept`,
    ],
    in: [`ip saddr { ${LAN_RANGES_4.join(", ")} } accept`, `ip6 saddr { ${LAN_RANGES_6.join(", ")} } accept`],
  };
}

export interface GuardSpec {
  /** Fail closed: nothing leaves but through the tunnel, also when the tunnel is down. */
  killSwitch: boolean;
  /** Keep the local network reachable (private ranges, link-local, multicast). */
  allowLan: boolean;
  /** The tunnel's interface. */
  device: string;
  /** Where the tunnel's own packets go (the provider's endpoint), outside the tunnel. */
  endpoints: TunnelEndpoint[];
  /** The tunnel's own UDP port may exchange with these addresses on any port of theirs (it roams). */
  tunnelPeers?: TunnelPeer[];
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

// A resolver at an address the tunnel's own packets go to is refused where the tunnel's own addresses are known
// (the service's config and plan: services/wireguard/config.ts, services/openvpn/consumer.ts), not here: the
// guard's endpoints also hold the direct channel's candidates, among them the provider's tunnel address. The
// table refuses DNS to any resolver outside the tunnel before anything is let out there (preparedGuardScript).

/** What a guard table is made of before a session is known: the connection's own choices. */
export type GuardBase = Pick<GuardSpec, "killSwitch" | "allowLan" | "control">;

const quote = (name: string) => `"${name}"`;
const family = (address: string) => (isIP(address) === 6 ? "ip6" : "ip");
const v4 = (addresses: string[]) => addresses.filter((a) => isIP(a) === 4);
const v6 = (addresses: string[]) => addresses.filter((a) => isIP(a) === 6);

/**
 * The sets a session fills (all empty in a prepared table): the tunnel's interface; the
 * provider's endpoints (address . protocol . port) and their hosts; the tunnel's peers (address .
 * our tunnel's UDP port: it may send to any port of that address, from that port only); the
 * provider's resolvers; the interface again when the tunnel does not carry IPv6; and `armed`, the
 * switch.
 */
const SESSION_SETS = {
  tunnel: "ifname",
  endpoints4: "ipv4_addr . inet_proto . inet_service",
  endpoints6: "ipv6_addr . inet_proto . inet_service",
  endpoint_hosts4: "ipv4_addr",
  endpoint_hosts6: "ipv6_addr",
  tunnel_peers4: "ipv4_addr . inet_service",
  tunnel_peers6: "ipv6_addr . inet_service",
  dns4: "ipv4_addr",
  dns6: "ipv6_addr",
  no_ipv6: "ifname",
} as const;

/**
 * The guard table, prepared: every rule in place, in chains the hooks reach only through the set
 * `armed` (`meta nfproto @armed jump …`), which is empty. Installed before a session is known (in
 * parallel with the negotiation), it lets everything pass: the hooks' chains accept by policy and
 * jump nowhere. `armScript` then fills the session's sets and `armed` in one transaction, and from
 * that commit on the table blocks exactly what the former per-session rule set did, less the tunnel
 * peers' other ports, which it did not know (the former
 * rule set built per session (kept as the reference in test/support/legacy-guard.ts; the e2e test
 * test/e2e/prepared-kill-switch.test.ts compares the two probe by probe).
 *
 * - Always: DNS only to the provider's resolver through the tunnel (UDP/TCP 53 and DoT 853 to
 *   anything else are refused, and to a resolver's address outside the tunnel before anything is let
 *   out there: an endpoint, a tunnel peer or a control endpoint at that address on port 53 does not let
 *   lookups out beside the tunnel), no IPv6 outside the tunnel (through it only if it carries IPv6).
 * - Kill switch: nothing else leaves or arrives but loopback, the tunnel interface, the
 *   provider's endpoint (in: anything from its address; out: its exact address·port, or any port
 *   of a tunnel peer's address from the tunnel's own UDP port, where a provider whose router maps
 *   per destination answers from), the node's own control endpoints (broker, discovery, chain RPC: exact
 *   address and TCP port) and the LAN with `allowLan`; each guard chain ends in a reject or drop,
 *   so it holds with the tunnel gone and myst dead. Without it, IPv4 outside the tunnel flows.
 * - DHCP and IPv6 neighbour discovery stay allowed on the local link: they keep the machine's own
 *   address and say nothing about where its traffic goes.
 *
 * `fresh`: the table must not exist yet (`create` fails the whole transaction if it does; no
 * delete, whose RCU grace period costs about 10 ms). `replace`: whatever table of that name is
 * there (a dead myst's, of any layout) is replaced in the same transaction.
 */
export function preparedGuardScript(base: GuardBase, mode: "fresh" | "replace"): string {
  const dev = "@tunnel";
  const controlOut = (base.control ?? []).map((e) => `oifname != ${dev} ${family(e.address)} daddr ${e.address} ${e.protocol} dport ${e.port} accept`);
  const controlIn = (base.control ?? []).map((e) => `iifname != ${dev} ${family(e.address)} saddr ${e.address} ${e.protocol} sport ${e.port} accept`);
  const lan = base.allowLan ? lanRules() : { out: [], in: [] };
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
  const chain = (name: string, rules: string[]) => [`  chain ${name} {`, ...rules.map((l) => `    ${l}`), "  }"];
  const hook = (name: string) => chain(name, [`type filter hook ${name} priority filter; policy accept;`, `meta nfproto @armed jump guard_${name}`]);
  const head = mode === "fresh" ? [`create table inet ${GUARD_TABLE}`] : [`table inet ${GUARD_TABLE}`, `delete table inet ${GUARD_TABLE}`];
  return [
    ...head,
    `table inet ${GUARD_TABLE} {`,
    ...Object.entries(SESSION_SETS).map(([name, type]) => `  set ${name} { type ${type}; }`),
    "  set armed { type nf_proto; }",
    ...chain("guard_output", [
      'oifname "lo" accept',
      `oifname != ${dev} ip daddr @dns4 meta l4proto { tcp, udp } th dport { 53, 853 } reject`,
      `oifname != ${dev} ip6 daddr @dns6 meta l4proto { tcp, udp } th dport { 53, 853 } reject`,
      `oifname != ${dev} ip daddr . meta l4proto . th dport @endpoints4 accept`,
      `oifname != ${dev} ip6 daddr . meta l4proto . th dport @endpoints6 accept`,
      `oifname != ${dev} ip daddr . udp sport @tunnel_peers4 accept`,
      `oifname != ${dev} ip6 daddr . udp sport @tunnel_peers6 accept`,
      ...controlOut,
      `oifname ${dev} ip daddr @dns4 meta l4proto { tcp, udp } th dport 53 accept`,
      `oifname ${dev} ip6 daddr @dns6 meta l4proto { tcp, udp } th dport 53 accept`,
      "meta l4proto { tcp, udp } th dport { 53, 853 } reject",
      "oifname @no_ipv6 meta nfproto ipv6 reject",
      `oifname ${dev} accept`,
      ...link.out,
      ...lan.out,
      base.killSwitch ? "reject" : "meta nfproto ipv6 reject",
    ]),
    ...chain("guard_input", [
      'iifname "lo" accept',
      `iifname ${dev} accept`,
      `iifname != ${dev} ip saddr @endpoint_hosts4 accept`,
      `iifname != ${dev} ip6 saddr @endpoint_hosts6 accept`,
      ...controlIn,
      ...link.in,
      ...lan.in,
      base.killSwitch ? "drop" : "meta nfproto ipv6 drop",
    ]),
    ...chain("guard_forward", [
      `oifname ${dev} accept`,
      `iifname ${dev} ct state established,related accept`,
      ...(base.allowLan ? [`ip saddr { ${LAN_RANGES_4.join(", ")} } ip daddr { ${LAN_RANGES_4.join(", ")} } accept`] : []),
      base.killSwitch ? "drop" : "meta nfproto ipv6 drop",
    ]),
    ...hook("output"),
    ...hook("input"),
    ...hook("forward"),
    "}",
    "",
  ].join("\n");
}

/**
 * Fills a prepared table's sets with a session's device, endpoints, resolvers and IPv6, and arms
 * it: one transaction (`nft -f`), so the guard goes from letting everything pass (or from the last
 * session's sets) to this session's rules with no moment between. Run again with other values, it
 * replaces them (flushes, then fills) in the same single step.
 */
export function armScript(spec: Omit<GuardSpec, keyof GuardBase>): string {
  const t = `inet ${GUARD_TABLE}`;
  // An IPv4-mapped IPv6 resolver is asked over IPv4: it is in the IPv4 set.
  const dns = [...new Set(spec.dns.map(canonicalAddress))];
  const add = (set: string, elements: string[]) => (elements.length > 0 ? [`add element ${t} ${set} { ${elements.join(", ")} }`] : []);
  const endpoints = (list: TunnelEndpoint[]) => list.map((e) => `${e.address} . ${e.protocol} . ${e.port}`);
  const hosts = (list: TunnelEndpoint[]) => [...new Set(list.map((e) => e.address))];
  const peers = (version: 4 | 6) => [
    ...new Set((spec.tunnelPeers ?? []).filter((p) => isIP(p.address) === version).map((p) => `${p.address} . ${p.localPort}`)),
  ];
  return [
    ...Object.keys(SESSION_SETS).map((name) => `flush set ${t} ${name}`),
    ...add("tunnel", [quote(spec.device)]),
    ...add("endpoints4", endpoints(spec.endpoints.filter((e) => isIP(e.address) === 4))),
    ...add("endpoints6", endpoints(spec.endpoints.filter((e) => isIP(e.address) === 6))),
    ...add("endpoint_hosts4", v4(hosts(spec.endpoints))),
    ...add("endpoint_hosts6", v6(hosts(spec.endpoints))),
    ...add("tunnel_peers4", peers(4)),
    ...add("tunnel_peers6", peers(6)),
    ...add("dns4", v4(dns)),
    ...add("dns6", v6(dns)),
    ...add("no_ipv6", spec.ipv6 ? [] : [quote(spec.device)]),
    `add element ${t} armed { ipv4, ipv6 }`,
    "",
  ].join("\n");
}

/**
 * Adds endpoints to an armed table's sets, or deletes them, in one transaction, leaving every other
 * element as it is: what a session moving to another relay needs while the kill switch holds (the
 * next relay's TURN server let out before the first packet goes to it, the last one's taken out
 * after). `hosts`: the endpoints' addresses whose inbound traffic passes (or no longer does).
 */
export function endpointsScript(op: "add" | "delete", endpoints: TunnelEndpoint[], hosts: string[]): string {
  const t = `inet ${GUARD_TABLE}`;
  const element = (set: string, elements: string[]) => (elements.length > 0 ? [`${op} element ${t} ${set} { ${elements.join(", ")} }`] : []);
  const triples = (version: 4 | 6) => endpoints.filter((e) => isIP(e.address) === version).map((e) => `${e.address} . ${e.protocol} . ${e.port}`);
  return [
    ...element("endpoints4", triples(4)),
    ...element("endpoints6", triples(6)),
    ...element("endpoint_hosts4", v4(hosts)),
    ...element("endpoint_hosts6", v6(hosts)),
    "",
  ].join("\n");
}

/**
 * Disarms the guard table in one transaction: `armed` and every session set emptied, the table left
 * in place letting everything pass, ready for the next session's `armScript` (what a disconnect
 * leaves with a spare kept, guard-spare.ts). Fails when the table is not there, or is not ours.
 */
export function disarmScript(): string {
  const t = `inet ${GUARD_TABLE}`;
  return [`flush set ${t} armed`, ...Object.keys(SESSION_SETS).map((name) => `flush set ${t} ${name}`), ""].join("\n");
}

/** Removes the guard table (and nothing else); succeeds when it is not there. */
export function unguardScript(): string {
  return `table inet ${GUARD_TABLE}\ndelete table inet ${GUARD_TABLE}\n`;
}
