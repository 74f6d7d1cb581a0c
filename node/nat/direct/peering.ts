import dgram from "node:dgram";
import dns from "node:dns/promises";
import net from "node:net";
import { silentLogger, type Logger } from "../../log/logger";
import { parseServer, stunBinding, type TransportAddress } from "../stun";
import { type Candidate, localAddresses, type PeerMapping, type DirectOffer } from "./candidates";
import { DirectChannel, type DirectChannelOptions } from "./channel";
import { channelKeys, newSecret } from "./keys";

/** What a node knows of its own reachability (measured at start: nat/reachability.ts). */
export interface OwnReachability {
  mapping: PeerMapping;
  /** Its address on the internet, when it has one of its own (mapping "none") or STUN saw one. */
  publicAddress?: string;
}

export interface DirectPeeringOptions {
  /**
   * STUN servers ("host:port"): each channel's socket asks them what its router makes of it (its
   * reflexive address, and with a second destination whether the mapping depends on it: RFC 5780's
   * test II on the very socket the peer will probe). None: only local candidates, mapping unknown.
   */
  stunServers?: string[];
  /** Instead of measuring (tests): what the node's router does, as if measured. */
  reachability?: () => OwnReachability | undefined;
  /** This machine's LAN addresses. Default: its interfaces' IPv4 addresses. */
  localAddresses?: () => string[];
  /** The address the channel's socket binds. Default all. */
  bindAddress?: string;
  log?: Logger;
  /** Channel settings (channel.ts). */
  deadlineMs?: number;
  keepaliveMs?: number;
  hardSockets?: number;
  sprayPorts?: number;
  allowLoopback?: boolean;
}

/** One side's half of a channel, made before negotiation: its socket, its offer, its secret. */
export interface PreparedChannel {
  offer: DirectOffer;
  socket: dgram.Socket;
  /**
   * Makes the channel once the peer's offer and the session id are known. `sprayFromTunnel`: the
   * provider's tunnel can send the hard-NAT probes from its own port (WireGuard's).
   */
  open(sessionId: string, role: "consumer" | "provider", peer: DirectOffer, o?: { sprayFromTunnel?: DirectChannelOptions["sprayFromTunnel"] }): DirectChannel;
  /** Nothing came of it (refused, failed): closes the socket. */
  discard(): void;
}

/**
 * Prepares direct channels for sessions: a socket per session, its candidates (local addresses
 * for a peer on the same LAN, the STUN-reflexive mapping of that very socket, the node's own public
 * address when it has one), and a fresh secret. The offer travels only inside the session's signed
 * and encrypted dialog messages, so the local addresses reach the peer and nobody else.
 */
export class DirectPeering {
  readonly #log: Logger;

  constructor(private readonly o: DirectPeeringOptions) {
    this.#log = o.log ?? silentLogger;
  }

  /** Whether each channel's socket is measured with STUN (an answer from none of them means UDP gets nothing back). */
  get measures(): boolean {
    return !this.o.reachability && !!this.o.stunServers?.length;
  }

  async #measure(socket: dgram.Socket, locals: string[]): Promise<SocketMapping | undefined> {
    if (!this.o.stunServers?.length) return undefined;
    const m = await measureSocket(socket, this.o.stunServers, locals).catch((err) => {
      this.#log.debug({ err: (err as Error).message }, "the direct channel's socket could not be measured");
      return undefined;
    });
    this.#log.debug({ mapping: m?.mapping, seen: m?.seen }, "direct channel socket measured");
    return m;
  }

  /**
   * A socket and its offer. With `unmeasured` (UDP is known to get nothing back here: STUN would
   * only time out), the socket is not measured: local candidates, mapping unknown, at once.
   */
  async prepare(tunnelPort?: number, o: { unmeasured?: boolean } = {}): Promise<PreparedChannel> {
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, this.o.bindAddress, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    const port = socket.address().port;
    const locals = (this.o.localAddresses ?? localAddresses)();
    const measured = this.o.reachability || o.unmeasured ? undefined : await this.#measure(socket, locals);
    const own = o.unmeasured ? undefined : (this.o.reachability?.() ?? measured);
    const candidates: Candidate[] = locals.map((address) => ({ kind: "local" as const, address, port }));
    const seen = measured?.seen;
    if (seen && !candidates.some((c) => c.address === seen.address && c.port === seen.port)) candidates.push({ kind: "reflexive", ...seen });
    if (own?.mapping === "none" && own.publicAddress && !candidates.some((c) => c.address === own.publicAddress))
      candidates.push({ kind: "public", address: own.publicAddress, port });
    const secret = newSecret();
    const offer: DirectOffer = {
      v: 1,
      secret,
      mapping: own?.mapping ?? "unknown",
      candidates: candidates.slice(0, 16),
      ...(tunnelPort ? { tunnelPort } : {}),
    };
    let used = false;
    return {
      offer,
      socket,
      open: (sessionId, role, peer, extra = {}) => {
        used = true;
        const keys = role === "consumer" ? channelKeys(sessionId, secret, peer.secret) : channelKeys(sessionId, peer.secret, secret);
        return new DirectChannel({
          role,
          keys,
          socket,
          own: { mapping: offer.mapping, candidates: offer.candidates },
          peer: { mapping: peer.mapping, candidates: peer.candidates },
          log: this.#log,
          ...(this.o.deadlineMs ? { deadlineMs: this.o.deadlineMs } : {}),
          ...(this.o.keepaliveMs ? { keepaliveMs: this.o.keepaliveMs } : {}),
          ...(this.o.hardSockets ? { hardSockets: this.o.hardSockets } : {}),
          ...(this.o.sprayPorts ? { sprayPorts: this.o.sprayPorts } : {}),
          ...(this.o.allowLoopback ? { allowLoopback: true } : {}),
          ...(peer.tunnelPort ? { peerTunnelPort: peer.tunnelPort } : {}),
          ...(extra.sprayFromTunnel ? { sprayFromTunnel: extra.sprayFromTunnel } : {}),
        });
      },
      discard: () => {
        if (used) return;
        try {
          socket.close();
        } catch {
          // closed
        }
      },
    };
  }
}

const STUN = { rtoMs: 100, requests: 3, lastWaitFactor: 4 };

export interface SocketMapping extends OwnReachability {
  /** What the first STUN server saw of the socket. */
  seen?: { address: string; port: number };
}

/**
 * RFC 5780's mapping test on one socket: the first server that answers says what it sees; the same
 * socket then asks another destination (the server's OTHER-ADDRESS, or the next server). Same
 * answer: one public port per socket (endpoint-independent); another: per destination.
 */
export async function measureSocket(socket: dgram.Socket, stunServers: string[], locals: string[]): Promise<SocketMapping> {
  const servers: TransportAddress[] = [];
  for (const text of stunServers) {
    try {
      const { host, port } = parseServer(text);
      const address = net.isIPv4(host) ? host : (await dns.lookup(host, { family: 4 })).address;
      servers.push({ family: 4, address, port });
    } catch {
      // a server that does not resolve is skipped
    }
  }
  // Every server at once: where UDP gets nothing back, the answer "unknown" takes one STUN timeout,
  // not one per server (measured: 1.4 s of a UDP-blocked consumer's connect with two servers).
  const answers = await Promise.all(servers.map((server) => stunBinding(socket, server, STUN).catch(() => undefined)));
  const at = answers.findIndex((r) => r !== undefined);
  if (at < 0) return { mapping: "unknown" };
  const answer = answers[at]!;
  const first = { server: servers[at], mapped: answer.mapped, other: answer.otherAddress };
  const rest = servers.slice(at + 1);
  const seen = { address: first.mapped.address, port: first.mapped.port };
  if (locals.includes(seen.address) && seen.port === socket.address().port) return { mapping: "none", publicAddress: seen.address, seen };
  const next = [
    ...(first.other && first.other.address !== first.server.address ? [first.other] : []),
    ...rest.filter((s) => s.address !== first.server.address),
  ];
  for (const server of next) {
    // A server already asked above: its answer (the same socket, another destination) is the one.
    const asked = servers.findIndex((s) => s.address === server.address && s.port === server.port);
    const r = asked >= 0 ? answers[asked] : await stunBinding(socket, server, STUN).catch(() => undefined);
    if (!r) continue;
    const same = r.mapped.address === seen.address && r.mapped.port === seen.port;
    return { mapping: same ? "endpoint-independent" : "endpoint-dependent", publicAddress: seen.address, seen };
  }
  return { mapping: "unknown", publicAddress: seen.address, seen };
}

/**
 * Whether the peer (a provider) can be reached without punching: it has an address on the
 * internet of its own, or a port its router maps (UPnP / NAT-PMP / PCP).
 */
export function reachableWithoutPunch(offer: DirectOffer): boolean {
  return offer.mapping === "none" || offer.candidates.some((c) => c.kind === "mapped" || c.kind === "public");
}
