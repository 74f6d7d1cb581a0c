import type { DirectOffer } from "../nat/direct/candidates";
import { DirectChannelError } from "../nat/direct/channel";
import type { PunchPlan } from "../nat/direct/plan";
import { directContactOf, type Proposal } from "../proposal/proposal";
import { channelEndpoints, peerSendsFirst, tunnelCannotFollow } from "./offer-addresses";
import type { DirectRoute, TunnelPlan, TunnelSprayCount } from "./service";

/**
 * The tunnel ahead of the direct channel (docs/direct-channel.md, "The tunnels meet first"): with a
 * provider whose router maps per destination, the tunnels meet by a birthday search of their own,
 * beside the channel's. The consumer's tunnel comes up while they search (kill switch, routes, the
 * provider's key known, no endpoint): its handshake with the provider's tunnel is the meeting.
 */

/**
 * How long after the tunnel's last spray probe left the tunnels may still meet: the provider hears
 * the probe, routes its tunnel from the probing socket's port (5–60 ms, more under load) and its
 * first handshake comes; the provider's probing sockets started before our spray did.
 */
export const TUNNELS_AFTER_SPRAY_MS = 1500;

type Spray = (datagrams: Iterable<{ address: string; port: number; bytes: Buffer }>) => Promise<TunnelSprayCount | undefined>;

/**
 * Our tunnel's spray for the tunnels' meeting, watched, so that a pair whose tunnels cannot meet
 * fails fast (issue 28: ≤ 3 s, with the reason) instead of waiting out the handshake (10 s): `signal`
 * is aborted, with a `NO_DIRECT_PATH` error that says why, when the spray could not be sent (its
 * sender failed, wireguard-go's socket was not found) or when it ended and the provider's tunnel had
 * not answered `TUNNELS_AFTER_SPRAY_MS` later (none of its probes met a probing socket). Never once
 * the tunnels met. What the spray sent, and what its socket refused, is named in the reason (the
 * channel logs it).
 */
export class TunnelSprayWatch {
  readonly #giveUp = new AbortController();
  readonly signal = this.#giveUp.signal;
  #sent?: Promise<TunnelSprayCount | Error | undefined>;
  #watching = false;
  #met = false;

  constructor(
    private readonly spray: Spray,
    private readonly afterMs = TUNNELS_AFTER_SPRAY_MS,
  ) {}

  /** What the channel calls with the spray's datagrams. */
  readonly send: Spray = (datagrams) => {
    const sending = this.spray(datagrams);
    this.#sent = sending.catch((err: Error) => err);
    if (this.#watching) this.#afterSpray(this.#sent);
    return sending;
  };

  /**
   * Watches for a meeting that cannot come, from now (the spray handed over before is watched too). The
   * meeting itself is the tunnel's handshake: `met()` says it came. A handshake lost after the meeting
   * is the handshake wait's to retry: it honours the give-up only while no provider's packet reached
   * the tunnel (services/wireguard/handshake.ts).
   */
  watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    if (this.#sent) this.#afterSpray(this.#sent);
  }

  /** The tunnels met (the tunnel's handshake came): nothing is given up from now on. */
  met(): void {
    this.#met = true;
  }

  #afterSpray(sent: Promise<TunnelSprayCount | Error | undefined>): void {
    void sent.then((count) => {
      if (count instanceof Error) return this.#cannot(`our tunnel could not send its probes to the provider's: ${count.message}`);
      if (!count || count.stopped) return; // stopped: the tunnels met
      const refused = count.dropped > 0 ? ` (${count.dropped} more refused by its socket)` : "";
      const why = `the tunnels did not meet: ours sent ${count.sent} probes${refused} and the provider's did not answer within ${this.afterMs} ms of the last`;
      setTimeout(() => this.#cannot(why), this.afterMs).unref();
    });
  }

  #cannot(why: string): void {
    if (!this.#met && !this.signal.aborted) this.#giveUp.abort(new DirectChannelError("NO_DIRECT_PATH", why));
  }
}

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
