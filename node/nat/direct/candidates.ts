import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { isIP } from "node:net";
import { SECRET_PATTERN } from "./keys";

/**
 * Where a node may be reached for a direct channel, in the order RFC 8445 prefers them: its own
 * addresses on a shared LAN first, then a port its router maps for it (UPnP / NAT-PMP / PCP), then
 * its address on the internet (its own, or the mapping STUN saw). Local candidates go only to the
 * session's peer, inside the encrypted dialog, never to discovery.
 */
export type CandidateKind = "local" | "mapped" | "public" | "reflexive";

export const CANDIDATE_PRIORITY: Record<CandidateKind, number> = { local: 3, mapped: 2, public: 1, reflexive: 1 };

/** How a node's router maps its ports (nat-base's NatMapping, as the peer says it). */
export type PeerMapping = "none" | "endpoint-independent" | "endpoint-dependent" | "unknown";

const Address = Type.String({ maxLength: 39, pattern: "^[0-9a-fA-F.:]+$" });
const Port = Type.Integer({ minimum: 1, maximum: 65535 });

export const CandidateSchema = Type.Object(
  { kind: Type.Union([Type.Literal("local"), Type.Literal("mapped"), Type.Literal("public"), Type.Literal("reflexive")]), address: Address, port: Port },
  { additionalProperties: false },
);
export type Candidate = Static<typeof CandidateSchema>;

/**
 * What each side says about itself in session negotiation (consumer in `session.create`, provider
 * in `accepted`): its half of the channel's key, how its router maps ports, and its candidates.
 * `tunnelPort`: the UDP port its tunnel (WireGuard) listens on, punched by the tunnel's own packets.
 */
export const DirectOfferSchema = Type.Object(
  {
    v: Type.Literal(1),
    secret: Type.String({ pattern: SECRET_PATTERN }),
    mapping: Type.Union([Type.Literal("none"), Type.Literal("endpoint-independent"), Type.Literal("endpoint-dependent"), Type.Literal("unknown")]),
    candidates: Type.Array(CandidateSchema, { maxItems: 16 }),
    tunnelPort: Type.Optional(Port),
    /**
     * The provider's router keeps its tunnel's port mapped (UPnP / NAT-PMP): the consumer's tunnel
     * reaches the service's address as it is, with no punching (a consumer behind a router that maps
     * per destination included).
     */
    tunnelMapped: Type.Optional(Type.Literal(true)),
    /**
     * The provider's tunnel can send from whichever of its probing sockets the consumer's tunnel
     * reached (services/wireguard/punch-route.ts): its router may map per destination and the
     * tunnel still meets a consumer whose router keeps one port per socket.
     */
    tunnelMeets: Type.Optional(Type.Literal(true)),
  },
  { additionalProperties: false },
);
export type DirectOffer = Static<typeof DirectOfferSchema>;
export const checkDirectOffer = TypeCompiler.Compile(DirectOfferSchema);

/**
 * A peer's candidates, fenced: real IPv4 addresses only (the channel is IPv4 for now), no
 * loopback, multicast, broadcast or unspecified address — nothing that turns our probes against
 * this host or a whole network — and each at most once. An internet candidate (mapped, public,
 * reflexive) in a private or shared range (RFC 1918, RFC 6598) is no internet address: the peer
 * labelled it so, and the birthday search would spray 4,096 datagrams at it (and the hard side
 * probe it from 256 sockets) — a host of the peer's choosing on this node's own LAN. Only a LAN
 * candidate (`local`) may be private; it is probed from one socket (review of s7, finding 1).
 */
export function usableCandidates(candidates: Candidate[], o: { allowLoopback?: boolean } = {}): Candidate[] {
  const seen = new Set<string>();
  return candidates.filter((c) => {
    const key = `${c.address}:${c.port}`;
    if (seen.has(key) || isIP(c.address) !== 4) return false;
    if (!routable(c.address) && !(o.allowLoopback && c.address.startsWith("127."))) return false;
    if (c.kind !== "local" && isPrivate(c.address)) return false;
    seen.add(key);
    return true;
  });
}

function routable(address: string): boolean {
  const [a, b] = address.split(".").map(Number);
  return !(a === 0 || a === 127 || a >= 224 || (a === 169 && b === 254));
}

/** Whether an IPv4 address is private or shared (RFC 1918, RFC 6598): never told to discovery. */
export function isPrivate(address: string): boolean {
  const [a, b] = address.split(".").map(Number);
  return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127);
}

/** This machine's own IPv4 addresses (its LAN addresses), for a peer that may share the LAN. */
export { localAddresses } from "../addresses";

/** Pairs to check, best first (RFC 8445 §6.1.2: local before mapped before public). */
export function orderCandidates(candidates: Candidate[]): Candidate[] {
  return [...candidates].sort((x, y) => CANDIDATE_PRIORITY[y.kind] - CANDIDATE_PRIORITY[x.kind]);
}
