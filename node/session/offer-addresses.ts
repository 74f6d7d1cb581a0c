import { isIP } from "node:net";
import { type DirectOffer, usableCandidates } from "../nat/direct/candidates";
import { directContactOf, type Proposal } from "../proposal/proposal";
import { isPublicAddress } from "../values/ip";
import type { DirectRoute, TunnelEndpoint } from "./service";

/** Where the consumer's direct channel sends: every candidate the provider named, UDP. */
export function channelEndpoints(offer: DirectOffer, path?: { address: string; port: number }): TunnelEndpoint[] {
  const named = usableCandidates(offer.candidates).map((c) => ({ address: c.address, port: c.port, protocol: "udp" as const }));
  if (!path) return named;
  // The path the channel took (a port the peer's router made, which it never named).
  return [...named, { address: path.address, port: path.port, protocol: "udp" as const }];
}

/** The provider's addresses on the internet, as it named them in its offer: what a relay must let send to us. */
export function publicAddressesOf(offer: DirectOffer): string[] {
  return [
    ...new Set(
      usableCandidates(offer.candidates)
        // A provider with a public address names it as its own (local) candidate: a relay lets that in too.
        .filter((c) => c.kind !== "local" || isPublicAddress(c.address))
        .map((c) => c.address),
    ),
  ];
}

/**
 * The provider's public IPv4 addresses as its signed proposal announces them (its direct contact):
 * what a relay opened before the provider answers is told to let in. Its answer's offer may name
 * others (its network changed); the relay is then opened anew for those. `reachableOnly`: not the
 * addresses its router lets through only after a punch (a relay's that others must be able to dial).
 */
export function announcedAddressesOf(proposal: Proposal, o: { reachableOnly?: boolean } = {}): string[] {
  const candidates = (directContactOf(proposal)?.candidates ?? []).filter((c) => !o.reachableOnly || c.kind !== "punch-only");
  return [...new Set(candidates.filter((c) => isIP(c.address) === 4 && isPublicAddress(c.address)).map((c) => c.address))];
}

/**
 * Whether our router keeps a socket's own port as its public port (nftables `masquerade` does
 * when the port is free): STUN saw the channel's socket at the port it is bound to. Then our
 * tunnel's public port is its own listen port, and the provider's probes can aim at it.
 */
export function keepsPorts(offer: DirectOffer): boolean {
  const local = offer.candidates.find((c) => c.kind === "local");
  const seen = offer.candidates.find((c) => c.kind === "reflexive");
  return !!local && !!seen && seen.port === local.port;
}

/**
 * Why the tunnel cannot follow a channel that met over the internet, or undefined when it can. The
 * provider's router gives each destination a new port and ours filters: the provider's probing
 * sockets aim at our tunnel's public port (ours when our router keeps ports), our tunnel sprays
 * the provider's address from its own socket, and the provider's tunnel sends from the socket that
 * spray reached (services/wireguard/punch-route.ts). Without either half there is no way in.
 */
export function tunnelCannotFollow(peer: DirectOffer, own: DirectOffer | undefined, canSpray: boolean): string | undefined {
  if (!peer.tunnelPort || peer.mapping !== "endpoint-dependent" || own?.mapping !== "endpoint-independent") return undefined;
  if (!canSpray || !peer.tunnelMeets)
    return "the provider's router gives each destination a new port and its tunnel cannot send from the probe that met ours: needs a relay";
  if (!keepsPorts(own)) return "the provider's router gives each destination a new port and ours does not keep our tunnel's port: needs a relay";
  return undefined;
}

/**
 * Whether the provider's tunnel must send first: its router gives each destination a new port, so
 * the port its tunnel is reached at from here exists only once it has sent to us (a handshake of
 * ours to its tunnel's own port is dropped by its router). Our tunnel is then given the provider's
 * key before the path is punched (`ConsumerService.expectPeer`) and answers its first handshake.
 */
export function peerSendsFirst(peer: DirectOffer): boolean {
  return peer.mapping === "endpoint-dependent";
}

/** The tunnel's route over the path the channel met: the provider's tunnel port at the path's address (on a LAN, its own port; see `peerSendsFirst`). */
export function directTunnelRoute(path: { kind: DirectRoute["kind"]; address: string }, peer: DirectOffer, tunnelPort: number): DirectRoute {
  const first = path.kind !== "local" && peerSendsFirst(peer);
  return { kind: path.kind, address: path.address, tunnelPort, ...(first ? { peerSendsFirst: true as const } : {}) };
}
