import type dgram from "node:dgram";
import { MystError } from "../../errors/MystError";
import type { Logger } from "../../log/logger";
import type { Candidate, CandidateKind, PeerMapping } from "./candidates";
import type { ChannelKeys } from "./keys";

export type DirectChannelErrorCode = "NO_DIRECT_PATH" | "CHANNEL_CLOSED";

/** No direct path between the two nodes; `message` says why in words (and what would help). */
export class DirectChannelError extends MystError<DirectChannelErrorCode> {}

/** The path a channel took: which of the peer's candidates answered, and how it was reached. */
export interface DirectPath {
  /** `local`: over a shared LAN; `mapped`: a port the peer's router maps; `public`/`reflexive`: its internet address; `punched`: found by hard-NAT probing. */
  kind: CandidateKind | "punched";
  address: string;
  port: number;
  /** Our own address as the peer saw it on this path (what our router made of it). */
  seenAs?: { address: string; port: number };
  /** ms from the first probe to the path chosen. */
  tookMs: number;
}

export type ChannelState = "idle" | "checking" | "up" | "lost" | "failed" | "closed";

export interface DirectChannelOptions {
  /** The consumer is the controlling side (RFC 8445): it picks the pair both use. */
  role: "consumer" | "provider";
  keys: ChannelKeys;
  /** Our channel socket, bound (its port is the one our candidates name). */
  socket: dgram.Socket;
  own: { mapping: PeerMapping; candidates: Candidate[] };
  peer: { mapping: PeerMapping; candidates: Candidate[] };
  log?: Logger;
  /** How long connecting may take before it fails with the reason. Default 3 s. */
  deadlineMs?: number;
  /** Between probes to one candidate while checking. Default 50 ms. */
  probeEveryMs?: number;
  /** After the first answered pair, how long to wait for a better one. Default 120 ms. */
  nominateAfterMs?: number;
  /** A keepalive goes out when nothing was sent for this long (routers drop idle UDP mappings after 30-120 s). Default 2.5 s. */
  keepaliveMs?: number;
  /** Nothing heard for this long: the path is lost, probes go out again (re-punch) and the dialog falls back to the broker. Default 4× keepalive. */
  lostAfterMs?: number;
  /** Hard-NAT probing bounds (plan.ts). */
  hardSockets?: number;
  sprayPorts?: number;
  /** Accept loopback candidates (tests on one machine only). */
  allowLoopback?: boolean;
  /**
   * The peer's tunnel port (WireGuard's), for hard-NAT probing of the tunnel's own path: when our
   * router maps per destination (we are the hard side), our many sockets probe it too, and the one
   * the peer's spray from that port reaches is handed to our tunnel (`tunnelPunch`: a consumer's
   * tunnel takes its port; a provider's tunnel sends from it, services/wireguard/punch-route.ts).
   */
  peerTunnelPort?: number;
  /**
   * The easy side's half of that: sends sealed probes from our tunnel's own socket (wireguard-go's:
   * `ProviderService.sprayFromTunnel`, `ConsumerService.sprayFromTunnel`), so no tunnel packet ever
   * passes through us.
   */
  sprayFromTunnel?: (datagrams: Iterable<{ address: string; port: number; bytes: Buffer }>) => Promise<{ sent: number; dropped: number } | undefined>;
}

/** Every option's default (the hard-NAT bounds: plan.ts and birthday.ts). */
export function channelDefaults(options: { keepaliveMs?: number }): Required<Omit<DirectChannelOptions, "log" | "role" | "keys" | "socket" | "own" | "peer">> {
  return {
    deadlineMs: 3000,
    probeEveryMs: 50,
    nominateAfterMs: 120,
    keepaliveMs: 2500,
    lostAfterMs: 4 * (options.keepaliveMs ?? 2500),
    // 256 sockets × 4,096 ports over 64,512: 1 − e^(−16.3), a miss about once in 10 million tries (128 gave
    // 99.97%); the first meeting after about 250 probes instead of 500 (birthday.ts): half the search's time.
    hardSockets: 256,
    sprayPorts: 4096,
    allowLoopback: false,
    peerTunnelPort: 0,
    sprayFromTunnel: async () => undefined,
  };
}

/** A socket the peer's tunnel port reached (hard-NAT probing): its local port goes to our tunnel. */
export interface TunnelPunch {
  localPort: number;
  /** The peer's tunnel as our socket saw it (its router's mapping of the tunnel port). */
  address: string;
  port: number;
}

export interface Pair {
  socket: dgram.Socket;
  address: string;
  port: number;
  kind: DirectPath["kind"];
}

export function kindRank(kind: DirectPath["kind"]): CandidateKind {
  return kind === "punched" ? "reflexive" : kind;
}
