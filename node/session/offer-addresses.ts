import { isIP } from "node:net";
import { type DirectOffer, usableCandidates } from "../nat/direct/candidates";
import { directContactOf, type Proposal } from "../proposal/proposal";
import { isPublicAddress } from "../values/ip";
import type { TunnelEndpoint } from "./service";

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
 * others (its network changed); the relay is then opened anew for those.
 */
export function announcedAddressesOf(proposal: Proposal): string[] {
  const candidates = directContactOf(proposal)?.candidates ?? [];
  return [...new Set(candidates.filter((c) => isIP(c.address) === 4 && isPublicAddress(c.address)).map((c) => c.address))];
}
