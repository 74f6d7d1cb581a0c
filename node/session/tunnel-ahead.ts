import type { DirectOffer } from "../nat/direct/candidates";
import type { PunchPlan } from "../nat/direct/plan";
import { directContactOf, type Proposal } from "../proposal/proposal";
import { channelEndpoints, peerSendsFirst, tunnelCannotFollow } from "./offer-addresses";
import type { DirectRoute, TunnelPlan } from "./service";

/**
 * The tunnel ahead of the direct channel (docs/direct-channel.md, "The tunnels meet first"): with a
 * provider whose router maps per destination, the tunnels meet by a birthday search of their own,
 * beside the channel's. The consumer's tunnel comes up while they search (kill switch, routes, the
 * provider's key known, no endpoint): its handshake with the provider's tunnel is the meeting.
 */

/**
 * Whether the consumer's tunnel will likely spray for the tunnels' meeting, as far as the proposal
 * says before the provider answers: its router maps per destination and it named nothing reachable
 * without a punch (no public or mapped candidate). The spray's sender is then started in advance.
 */
export function tunnelMaySpray(proposal: Proposal): boolean {
  const direct = directContactOf(proposal);
  return direct?.nat.mapping === "endpoint-dependent" && !direct.candidates.some((c) => c.kind === "public" || c.kind === "mapped");
}

/**
 * The tunnel's route when it need not wait for the channel to meet: the provider's router maps per
 * destination, ours keeps one port per socket, and the tunnels meet by their own birthday search
 * (our tunnel's spray, the provider's probing sockets: `tunnelCannotFollow` finds both halves). That
 * search and the channel's are two (two sockets of ours, two mappings of the provider's router); the
 * provider's tunnel sends to ours as soon as the first lands (`followDirectPath`), and ours answers it
 * wherever it comes from (`peerSendsFirst`), so the connect waits for one search only, and the channel
 * comes up beside the tunnel. Undefined: wait for the channel as before (a shared LAN may give a local
 * path; any other pair's tunnel follows the channel's path).
 */
export function tunnelAheadOfChannel(plan: PunchPlan, peer: DirectOffer, own: DirectOffer | undefined, canSpray: boolean): DirectRoute | undefined {
  if (plan.kind !== "easy-side" || plan.sharedLan || !peer.tunnelPort || !peerSendsFirst(peer) || !own) return undefined;
  if (own.mapping !== "endpoint-independent" || tunnelCannotFollow(peer, own, canSpray)) return undefined;
  const address = plan.peerCandidates.find((c) => c.kind !== "local")?.address;
  return address ? { kind: "punched", address, tunnelPort: peer.tunnelPort, peerSendsFirst: true } : undefined;
}

/**
 * What the kill switch lets out for the direct channel: each of the provider's candidates and the
 * path it met on (exact address and port). When the tunnel went ahead of the channel, its search is
 * still on: our channel socket's port may then reach any port of the provider's address, as the
 * tunnel's own port may (`tunnelPeers`): nothing else of ours may.
 */
export function withChannel(
  plan: TunnelPlan,
  peer: DirectOffer,
  o: { path?: { address: string; port: number }; searching?: { address: string; localPort: number } },
): TunnelPlan {
  const endpoints = [...plan.endpoints, ...channelEndpoints(peer, o.path)];
  return { ...plan, endpoints, ...(o.searching ? { tunnelPeers: [...(plan.tunnelPeers ?? []), o.searching] } : {}) };
}
