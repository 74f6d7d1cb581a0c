import type { DirectPeering, PreparedChannel } from "../nat/direct/peering";
import type { Reachability, ReachabilityDetails } from "../nat/reachability";

/**
 * Whether the node's own reachability measurement (nat/monitor.ts: at start, again when this
 * machine's addresses change and every 10 minutes) found that UDP gets nothing back here: it asked
 * STUN servers and none answered.
 */
export function udpBlockedBy(r: (Reachability & { details: ReachabilityDetails }) | undefined): boolean {
  return !!r && r.mapping === "unknown" && r.filtering === "unknown" && !r.publicAddress && r.contacts.length === 0 && r.details.unanswered.length > 0;
}

/**
 * A session's direct offer, and whether UDP is blocked here (issue 29). Each session's socket is
 * measured with STUN (its own mapping is what a peer probes), and a measurement in which no server
 * answered means UDP is blocked: no direct path can exist, and a relay is reached over TLS at once.
 * Finding that out costs the STUN timeout (about 0.7 s of a 1.9 s UDP-blocked connect). When the
 * node's reachability already says so (`knownBlocked`), the socket is not measured: the offer is the
 * one a measurement would have made (its local candidates, mapping unknown), at once. The node
 * measures again when its addresses change (a new network), so a network that lets UDP through is
 * used directly again after its next measurement.
 */
export async function prepareOffer(
  direct: DirectPeering | undefined,
  knownBlocked: boolean,
  tunnelPort?: number,
  /** A kill switch holds here (a reconnect): STUN would not pass it, so the socket is not measured, and only the node's own measurement says whether UDP is blocked. */
  held = false,
): Promise<{ prepared?: PreparedChannel; udpBlocked: boolean }> {
  if (!direct) return { udpBlocked: false };
  if (knownBlocked || held) return { prepared: await direct.prepare(tunnelPort, { unmeasured: true }), udpBlocked: knownBlocked };
  const prepared = await direct.prepare(tunnelPort);
  const udpBlocked = direct.measures && prepared.offer.mapping === "unknown" && !prepared.offer.candidates.some((c) => c.kind !== "local");
  return { prepared, udpBlocked };
}
