import fs from "node:fs";
import { MystError } from "../errors/MystError";

/**
 * Linux capabilities (capabilities(7)) instead of "run as root". A service type declares what it
 * needs (`TunnelType.capabilities`), measured by running its provider as an unprivileged user with
 * fewer (docs/running-without-root.md); the node reads what it holds from /proc/self/status and
 * refuses a service it cannot run, naming the capability, instead of failing half-way in a child.
 */

/** The capabilities myst's services use, with their bit numbers (linux/capability.h). */
export const CAPABILITY_BITS = {
  CAP_SETGID: 6,
  CAP_SETUID: 7,
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_SYS_ADMIN: 21,
} as const;
export type Capability = keyof typeof CAPABILITY_BITS;

/** One capability a service needs, and what for: "to create its interface", said to the person running the node. */
export interface CapabilityNeed {
  capability: Capability;
  why: string;
  /**
   * Used by a program the node starts (openvpn, wireguard-go, ip, nft, dnsmasq) rather than by the
   * node itself, so it must reach that program: ambient for a node that is not root. Default true.
   */
  child?: boolean;
}

/** What the node holds: its effective set, and what a program it starts gets (ambient, or for root the bounding set). */
export interface HeldCapabilities {
  effective: ReadonlySet<Capability>;
  /** What an exec'd child without file capabilities starts with. */
  children: ReadonlySet<Capability>;
  /** The effective user id (only to say who runs; capabilities decide, not the uid). */
  uid: number;
}

export type CapabilityErrorCode = "CAPABILITY_MISSING";

export class CapabilityError extends MystError<CapabilityErrorCode> {}

function capsOf(hex: string): Set<Capability> {
  const mask = BigInt(`0x${hex}`);
  return new Set((Object.keys(CAPABILITY_BITS) as Capability[]).filter((c) => (mask >> BigInt(CAPABILITY_BITS[c])) & 1n));
}

/**
 * The capabilities in a /proc/<pid>/status text. A child exec'd by a non-root process keeps only
 * its ambient set; one exec'd by root (euid 0) gets the bounding set (capabilities(7), "Capabilities
 * and execution of programs by root").
 */
export function parseCapabilities(status: string): HeldCapabilities {
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s*([0-9a-fA-F]+)\\s*$`, "m").exec(status);
    if (!m) throw new Error(`/proc/self/status has no ${name} line`);
    return m[1];
  };
  const uid = Number(/^Uid:\s*\d+\s+(\d+)/m.exec(status)?.[1] ?? Number.NaN);
  const effective = capsOf(field("CapEff"));
  const children = uid === 0 ? capsOf(field("CapBnd")) : capsOf(field("CapAmb"));
  return { effective, children, uid };
}

/** This process's capabilities now. */
export function heldCapabilities(): HeldCapabilities {
  return parseCapabilities(fs.readFileSync("/proc/self/status", "utf8"));
}

/** The needs `held` does not cover (a child's need counts only if children get it too). */
export function missingCapabilities(needs: readonly CapabilityNeed[], held: HeldCapabilities = heldCapabilities()): CapabilityNeed[] {
  return needs.filter((n) => !held.effective.has(n.capability) || (n.child !== false && !held.children.has(n.capability)));
}

/**
 * Refuses `what` (a sentence subject: "wireguard", "the kill switch") when a need is not held, with
 * one sentence per missing capability and how to grant it under systemd.
 */
export function requireCapabilities(what: string, needs: readonly CapabilityNeed[], held: HeldCapabilities = heldCapabilities()): void {
  const missing = missingCapabilities(needs, held);
  if (!missing.length) return;
  throw new CapabilityError("CAPABILITY_MISSING", explainMissing(what, missing, held));
}

/** "wireguard needs CAP_NET_ADMIN to create its interface; … run with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE". */
export function explainMissing(what: string, missing: readonly CapabilityNeed[], held: HeldCapabilities): string {
  const reasons = missing.map((n) => {
    const onlyAmbient = held.effective.has(n.capability);
    return `${what} needs ${n.capability} ${n.why}${onlyAmbient ? " (held, but not ambient: the programs it starts would not get it)" : ""}`;
  });
  const caps = [...new Set(missing.map((n) => n.capability))].join(" ");
  return `${reasons.join("; ")}; run with AmbientCapabilities=${caps} (systemd; setpriv --ambient-caps elsewhere)`;
}

/** "CAP_NET_ADMIN, CAP_NET_BIND_SERVICE" (or "none"), for the log. */
export function describeCapabilities(caps: ReadonlySet<Capability>): string {
  return caps.size ? [...caps].join(", ") : "none";
}

/**
 * A tunnel service's needs, measured with its provider under `setpriv` (docs/running-without-root.md):
 * its interface, routes, firewall, shaping and forwarding sysctls need CAP_NET_ADMIN; its resolver
 * (dnsmasq on the tunnel address's port 53) CAP_NET_BIND_SERVICE; entering a network namespace
 * (`netns`, tests and the demo) CAP_SYS_ADMIN. Nothing needs CAP_NET_RAW.
 */
export function tunnelCapabilities(device: string, settings: { netns?: string }): CapabilityNeed[] {
  return [
    { capability: "CAP_NET_ADMIN", why: `to create its ${device}, route and firewall its consumers and shape their bandwidth` },
    { capability: "CAP_NET_BIND_SERVICE", why: "to serve its consumers DNS on port 53 of the tunnel (dnsmasq)" },
    ...(settings.netns ? [{ capability: "CAP_SYS_ADMIN" as const, why: `to enter network namespace ${settings.netns} (ip netns exec)` }] : []),
  ];
}
