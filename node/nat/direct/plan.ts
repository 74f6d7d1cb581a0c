import { CANDIDATE_PRIORITY, type Candidate, type PeerMapping } from "./candidates";

/**
 * How two nodes try to meet, from how each one's router maps ports (each measured its own with
 * STUN and told the other). The words in `reason` are what a person is shown when it fails.
 *
 * - `plain`: probe every candidate pair from our one socket. Enough when either side is on the
 *   internet itself (`none`), or both routers keep one public port per socket
 *   (endpoint-independent): each side's probes open its own router for the other's.
 * - `hard-side`: our router gives every destination a new port (endpoint-dependent, "symmetric"),
 *   the peer's does not: we probe from many sockets, so our router holds many mappings toward the
 *   peer, and one of them meets the peer's spray. The sockets probe the peer's tunnel port too, and
 *   the one its tunnel's spray reaches carries our tunnel (a consumer's takes its port; a provider's
 *   sends from it: services/wireguard/punch-route.ts).
 * - `easy-side`: the mirror: the peer's router is the hard one; we also probe a bounded set of
 *   random ports on its internet address (the birthday search: N sockets × M ports over 64,512),
 *   from the channel's socket and from our tunnel's own (wireguard-go's) socket.
 * - `impossible`: both routers map per destination and there is no shared LAN: nothing can be
 *   guessed on either side. Fails at once instead of probing for seconds.
 */
export type PunchPlan = {
  kind: "plain" | "hard-side" | "easy-side" | "impossible";
  reason: string;
  peerCandidates: Candidate[];
  /** Both offers name an address on one LAN (a /24): the path may be local, no router between. */
  sharedLan?: boolean;
};

const hard = (m: PeerMapping) => m === "endpoint-dependent";

export function planPunch(own: { mapping: PeerMapping; candidates: Candidate[] }, peer: { mapping: PeerMapping; candidates: Candidate[] }): PunchPlan {
  return { ...choosePlan(own, peer), sharedLan: shareLan(own, peer) };
}

function choosePlan(own: { mapping: PeerMapping; candidates: Candidate[] }, peer: { mapping: PeerMapping; candidates: Candidate[] }): PunchPlan {
  const peerCandidates = peer.candidates;
  const sharedLan = shareLan(own, peer);
  const peerMapped = peer.candidates.some((c) => c.kind === "mapped" || c.kind === "public");
  if (peerCandidates.length === 0) return { kind: "impossible", reason: "the peer named no address to reach it at", peerCandidates };
  if (hard(own.mapping) && hard(peer.mapping) && !peerMapped) {
    if (sharedLan)
      return {
        kind: "plain",
        reason: "both routers map ports per destination; only the shared LAN can join them",
        peerCandidates: peerCandidates.filter((c) => c.kind === "local"),
      };
    return { kind: "impossible", reason: "both sides map ports per destination: needs a relay", peerCandidates };
  }
  if (own.mapping === "none" || peer.mapping === "none" || peerMapped)
    return { kind: "plain", reason: "one side can be reached from the internet", peerCandidates };
  if (hard(own.mapping))
    return {
      kind: "hard-side",
      reason: "our router maps ports per destination, the peer's keeps one port: many sockets for its spray to find",
      peerCandidates,
    };
  if (hard(peer.mapping))
    return {
      kind: "easy-side",
      reason: "the peer's router maps ports per destination, ours keeps one port: we spray its ports, tunnel included",
      peerCandidates,
    };
  return { kind: "plain", reason: "both routers keep one public port per socket", peerCandidates };
}

/**
 * The best rank (CANDIDATE_PRIORITY) a pair with the peer can answer with: what the consumer's
 * nomination may wait for. The peer's LAN addresses count only when the offers share a LAN: off it, a
 * home's private address is another home's or nobody's, and waiting for it only delays the connect
 * (a punched eim × eim connect waited the nomination's whole 120 ms for them).
 */
export function bestPossibleRank(plan: PunchPlan): number {
  const possible = plan.peerCandidates.filter((c) => c.kind !== "local" || plan.sharedLan);
  return Math.max(0, ...possible.map((c) => CANDIDATE_PRIORITY[c.kind]));
}

/** Whether two offers name local addresses on one LAN (a /24): two nodes behind the same router. */
export function shareLan(own: { candidates: Candidate[] }, peer: { candidates: Candidate[] }): boolean {
  return peer.candidates.some((p) => p.kind === "local" && own.candidates.some((o) => o.kind === "local" && sameSubnet24(o.address, p.address)));
}

function sameSubnet24(a: string, b: string): boolean {
  return a.split(".").slice(0, 3).join(".") === b.split(".").slice(0, 3).join(".");
}
