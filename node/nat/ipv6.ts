import os from "node:os";
import { canonicalIp, ipv6Groups } from "../values/ip";

/**
 * IPv6 candidates (issue 28, not yet on the session path): a node with a global IPv6 address can be
 * reached there without NAT (a home router's stateful IPv6 firewall still drops what was not asked
 * for, like endpoint-dependent filtering, so a v6 pair may still need probes from both sides at
 * once). Only global unicast addresses may ever be told to the public: never a unique local
 * (fc00::/7), link-local (fe80::/10), multicast, loopback, IPv4-mapped, documentation or other
 * special-purpose address (IANA's IPv6 special-purpose registry). docs/reachability.md.
 */
export interface Ipv6Options {
  /**
   * Accept the documentation prefix 2001:db8::/32 as global: the test network's namespaces stand for
   * the internet with it. A test setting only; no production setting turns it on.
   */
  documentationAsGlobal?: boolean;
}

/** [prefix as 8 groups, bits]: inside global unicast (2000::/3), yet not global. */
const SPECIAL: [number[], number][] = [
  [[0x2001, 0], 23], // IETF protocol assignments (Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID…)
  [[0x2002], 16], // 6to4: an IPv4 address in disguise, reached through relays
  [[0x3fff, 0], 20], // documentation (RFC 9637)
];
const DOCUMENTATION: [number[], number] = [[0x2001, 0x0db8], 32];

function inPrefix(g: number[], [prefix, bits]: [number[], number]): boolean {
  for (let i = 0; i * 16 < bits; i++) {
    const take = Math.min(16, bits - i * 16);
    const mask = (0xffff << (16 - take)) & 0xffff;
    if (((g[i] ?? 0) & mask) !== ((prefix[i] ?? 0) & mask)) return false;
  }
  return true;
}

/** Whether `address` is a global unicast IPv6 address (2000::/3, less special-purpose ranges): one a node may announce. */
export function isGlobalIpv6(address: string, o: Ipv6Options = {}): boolean {
  if (address.includes("%")) return false; // a zone: link-scoped by definition
  const canonical = canonicalIp(address);
  if (!canonical?.includes(":") || canonical.includes(".")) return false;
  const g = ipv6Groups(canonical);
  if (g.length !== 8 || g.some((x) => !Number.isInteger(x))) return false;
  if ((g[0] & 0xe000) !== 0x2000) return false; // outside 2000::/3: ::/8, fc00::/7, fe80::/10, ff00::/8, …
  if (inPrefix(g, DOCUMENTATION)) return o.documentationAsGlobal === true;
  return !SPECIAL.some((range) => inPrefix(g, range));
}

/** This machine's global IPv6 addresses (its v6 candidates), each once, in interface order. */
export function globalIpv6Addresses(interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces(), o: Ipv6Options = {}): string[] {
  const found = Object.values(interfaces)
    .flat()
    .filter((a): a is os.NetworkInterfaceInfo => !!a && a.family === "IPv6" && !a.internal && (a.scopeid ?? 0) === 0)
    .map((a) => canonicalIp(a.address))
    .filter((a): a is string => a !== undefined && isGlobalIpv6(a, o));
  return [...new Set(found)];
}
