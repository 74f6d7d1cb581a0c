import type net from "node:net";
import { isIP } from "node:net";
/**
 * The service-specific part of a session, as ports: the session machinery negotiates, the
 * service provides. Each service type is an adapter in its own folder under services/, listed in
 * services/registry.ts; session/ knows none of them by name.
 */

/**
 * How the session's two nodes reached each other directly (node/nat/direct), for a tunnel that
 * follows that path instead of the address in the service config: the peer's address on the path
 * (its LAN address, its router's public address), and the UDP port its tunnel listens on, as the
 * peer said inside the signed dialog. The tunnel's own packets, sent by both ends at once, punch
 * their way through both routers as the channel's probes did.
 */
export interface DirectRoute {
  kind: "local" | "mapped" | "public" | "reflexive" | "punched" | "relayed";
  address: string;
  tunnelPort: number;
  /**
   * The local port our tunnel must listen on: a socket of hard-NAT probing that the peer's tunnel
   * port reached (our router maps per destination; its mapping for that port is the open one).
   */
  localPort?: number;
  /**
   * Relayed: `address`/`tunnelPort` is a forwarder on this host (services/relay), and this is where
   * the tunnel's packets really leave it (the relay's TURN server): the kill switch lets it through
   * and the host route outside the tunnel goes to it.
   */
  outside?: TunnelEndpoint;
  /**
   * The provider's router gives each destination a new port, so the port its tunnel is reached at
   * from here is known only once its tunnel has sent to ours: our tunnel names no endpoint, answers
   * the provider's first handshake (its key was given in advance, `ConsumerService.expectPeer`) and
   * sends where that came from.
   */
  peerSendsFirst?: true;
}

/** What a tunnel's spray did: datagrams sent, datagrams its socket refused, and whether it stopped early (the tunnels met). */
export type TunnelSprayCount = { sent: number; dropped: number; stopped?: boolean; firstSentAt?: number };

/** The session a consumer's tunnel is brought up for (`ConsumerService.connect`). */
export type ConnectTarget = {
  id: string;
  provider: string;
  serviceConfig: unknown;
  route?: DirectRoute;
  stream?: () => Promise<net.Socket>;
  giveUp?: AbortSignal;
};

/** What the provider side of a service does for sessions. */
export interface ProviderService {
  readonly type: string;
  isRunning(): boolean;
  /** Reserves what the session needs; returns the service config the consumer connects with. */
  openSession(session: { id: string; consumer: string; consumerData: unknown }): Promise<unknown>;
  /**
   * Releases the session: cut the consumer off, free its resources. Idempotent. `byConsumer`: the
   * consumer ended it and is leaving by itself (it is still cut off if it does not).
   */
  closeSession(sessionId: string, reason: string, options?: { byConsumer?: boolean }): Promise<void>;
  /**
   * Bytes the session's consumer moved so far, as the provider meters them (what it invoices).
   * After `closeSession` it keeps answering with the final counts (history, metrics read them).
   * `downMs`: time the service could not carry the session (its server restarting), not billed.
   */
  usage?(sessionId: string): { bytesIn: number; bytesOut: number; downMs?: number } | undefined;
  /** Stops the service and releases what it holds (processes, firewall rules). */
  stop?(): Promise<void>;
  /** Whether the session's consumer is connected to the service now (its tunnel is up). */
  isConnected?(sessionId: string): boolean;
  /** How the session's consumer reaches the service, when the service knows it first-hand (a relay: UDP, TCP or TLS). */
  transportOf?(sessionId: string): "udp" | "tcp" | "tls" | undefined;
  /** The tunnel carries IPv6 (the provider has IPv6 egress): the proposal says so. */
  readonly ipv6?: boolean;
  /**
   * "public-or-mapped": the consumer's tunnel must reach the provider's address unasked (OpenVPN's
   * server only answers), so the proposal says it needs a provider with a public address or a mapped
   * port, and consumers do not pick it from a provider reachable only by punching.
   */
  readonly reach?: "public-or-mapped";
  /**
   * The port its consumers' tunnels reach (OpenVPN's, wireguard-go's): the node asks its router to
   * keep it mapped (UPnP / NAT-PMP, nat/monitor.ts), so a provider behind such a router is reachable
   * there without punching — which is all a `reach: "public-or-mapped"` tunnel can use.
   */
  readonly listenPort?: { port: number; protocol: "udp" | "tcp" };
  /** The UDP port the service's tunnel listens on, when its own packets can punch (WireGuard). */
  readonly tunnelPort?: number;
  /**
   * The session's consumer was reached directly: send the tunnel's own packets (handshakes,
   * keepalives) to its tunnel there, which opens our router for the consumer's.
   */
  directRoute?(sessionId: string, route: DirectRoute): Promise<void>;
  /**
   * Sends these datagrams from the tunnel's own UDP socket (hard-NAT probing for a consumer whose
   * router maps per destination): the tunnel's port opens our router toward the one of the
   * consumer's mappings they reach. Resolves with how many were sent and how many the socket refused.
   */
  sprayFromTunnel?(datagrams: Iterable<{ address: string; port: number; bytes: Buffer }>): Promise<TunnelSprayCount | undefined>;
  /**
   * The hard-side half of that, the other way round (our router maps per destination): the
   * consumer's tunnel spray reached our probing socket on `localPort`; from now on the tunnel's
   * packets to the consumer's tunnel (`address`:`port`) leave from that port, in the kernel.
   */
  punchRoute?(sessionId: string, punch: { address: string; port: number; localPort: number }): Promise<void>;
  /** Optional: that search has started; what `punchRoute` will need is made now (removed when the session ends). */
  preparePunchRoute?(sessionId: string): Promise<void>;
}

/** Where a tunnel's own packets go: the provider's endpoint, reached outside the tunnel. */
export interface TunnelEndpoint {
  address: string;
  port: number;
  protocol: "udp" | "tcp";
}

export const sameEndpoint = (a: TunnelEndpoint, b: TunnelEndpoint): boolean => a.address === b.address && a.port === b.port && a.protocol === b.protocol;

/** An IP address in one spelling: IPv6 compressed and in lower case, an IPv4-mapped IPv6 address as the IPv4 address its packets go to. */
export function canonicalAddress(address: string): string {
  if (isIP(address) !== 6) return address;
  const compressed = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(compressed);
  if (!mapped) return compressed;
  const [hi, lo] = [Number.parseInt(mapped[1], 16), Number.parseInt(mapped[2], 16)];
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join(".");
}

/**
 * The resolvers among `dns` at an address the tunnel's own packets go to outside it (an endpoint, a
 * tunnel peer). That address keeps a route outside the tunnel, so a name lookup sent there leaves
 * beside the tunnel, in clear text (let out with the tunnel's packets when the endpoint's port is 53),
 * or not at all: such a resolver is never reached through the tunnel.
 */
export function resolversOutsideTunnel(dns: string[], outside: { address: string }[]): string[] {
  const addresses = new Set(outside.map((o) => canonicalAddress(o.address)));
  return [...new Set(dns.filter((a) => addresses.has(canonicalAddress(a))))];
}

/** What a consumer says when refusing a provider's resolver at its own endpoint (the session is not made). */
export const resolverOutsideTunnelMessage = (resolvers: string[]): string =>
  `the provider names ${resolvers.join(", ")} as its resolver, an address its tunnel's own packets go to (its endpoint), which is reached outside the tunnel: name lookups sent there would leave in clear text, so the session is refused`;

/**
 * A peer whose tunnel may answer from any UDP port of its address, to our tunnel's own port (a
 * router that maps per destination gives the provider's tunnel a port of its choosing toward us).
 */
export interface TunnelPeer {
  address: string;
  /** Our tunnel's own UDP port on this host (wireguard-go's socket). */
  localPort: number;
}

/**
 * What consumer protection must know before a tunnel comes up, to let exactly it through the kill
 * switch: its interface and its endpoints. Made from the provider's service config, checked.
 */
export interface TunnelPlan {
  device: string;
  endpoints: TunnelEndpoint[];
  /**
   * UDP between our tunnel's own port and these addresses, on any port of theirs, both ways: the
   * tunnel roams to wherever the provider's router mapped it (only the tunnel's port; nothing else
   * of ours may reach those other ports).
   */
  tunnelPeers?: TunnelPeer[];
  /**
   * The resolvers the tunnel will bring, when the service config says so in advance: the guard
   * admits them from the start, so it need not be replaced once the tunnel is up.
   */
  dns?: string[];
  /** Whether the tunnel will carry IPv6 (same reason). */
  ipv6?: boolean;
}

/**
 * Consumer protection as the session sees it (kill switch, DNS, IPv6): engaged before the tunnel
 * comes up, told when it is up. What happens when the session ends is its owner's business.
 */
export interface SessionProtection {
  /**
   * Optional: gets ready before the session is known, in parallel with its negotiation (a
   * disarmed rule set, the commands `engage` will need), so that `engage` costs one small change.
   * Blocks nothing by itself; a failure here is not the session's (`engage` does it all then).
   */
  prepare?(): void;
  /** Optional: the session ended before `engage`: undo what `prepare` did. */
  discard?(): Promise<void>;
  /** Before the tunnel: only the plan's endpoints (and the tunnel interface) may pass from now on. */
  engage(plan: TunnelPlan): Promise<void>;
  /**
   * Optional: `engage`, for a tunnel brought up beside it (`ConsumerService.connectBeside`): the
   * rules are armed while the tunnel sets up its interface and routes. What a crash must undo is
   * recorded before `routesKept` settles; nothing is let through the tunnel before `armed` does.
   */
  engageBeside?(plan: TunnelPlan): TunnelGuard;
  /** The tunnel is up: the resolver file names its resolvers (already so since the arming, unless it brought others); IPv6 through it if it carries IPv6. */
  tunnelUp(tunnel: { device: string; dns: string[]; ipv6: boolean }): Promise<void>;
  /** The tunnel never came up: undo what `engage` did. */
  abandon(): Promise<void>;
  /** Optional: whether a kill switch is in force now (a session's, or one holding between sessions). */
  holds?(): boolean;
  /**
   * Optional: lets exactly these endpoints through the kill switch, changing nothing else (a relay's
   * TURN server), until `withdraw` gives them back; each call holds each endpoint once.
   */
  admit?(endpoints: TunnelEndpoint[]): Promise<void>;
  /** Optional: gives back one `admit` of each endpoint; one nobody else needs (the plan, another admission) is taken out. */
  withdraw?(endpoints: TunnelEndpoint[]): Promise<void>;
  /** Optional: the tunnel no longer goes to these plan endpoints (it moved to another relay): taken out unless admitted. */
  retire?(endpoints: TunnelEndpoint[]): Promise<void>;
}

/** The kill switch being armed beside a tunnel that comes up (`SessionProtection.engageBeside`). */
export interface TunnelGuard {
  /**
   * Settles once the routes as they were before the tunnel are recorded (a crash undoes what the
   * tunnel adds) and the node's control endpoints keep their way out: the tunnel may change
   * routes from then on. Rejects when that failed.
   */
  routesKept: Promise<void>;
  /** Settles once the rules are in force: the tunnel may carry traffic (its handshake too) from then on. Rejects when they could not be. */
  armed: Promise<void>;
}

/** A consumer's running connection to a provider. */
export interface Tunnel {
  /** The resolvers the provider serves through the tunnel (empty: none). */
  readonly dns?: string[];
  /** Whether the tunnel carries IPv6. */
  readonly ipv6?: boolean;
  /** Tears the connection down and restores what it changed. Idempotent. */
  stop(): Promise<void>;
  /** Called once if the tunnel goes down by itself. */
  onDown(listener: (reason: string) => void): void;
  /** Bytes through the tunnel so far, as the consumer measures them. */
  stats(): { bytesIn: number; bytesOut: number };
  /** Reads the meter now (stats() may lag by a polling period). */
  refresh?(): Promise<void>;
  /**
   * At most how many bytes the provider may have counted that have not reached our meter yet: what its
   * transport lets be on the way (the proxy's HTTP/2 windows). The invoice check allows them.
   */
  inFlightBytes?(): number;
  /** Whether the tunnel is up and talking to the provider now (false while it reconnects). */
  isUp?(): boolean;
  /** Through a relay's TCP allocation: the connection's bytes on the wire, what the relay carries (the proxy's). */
  wireBytes?(): { bytesIn: number; bytesOut: number } | undefined;
  /** Where the connection's local proxy listens (`host:port`), for a service that serves the consumer locally (the proxy). */
  readonly listen?: string;
  /**
   * Sends the tunnel's packets another way without ending it (its relay died: the next relay's
   * forwarder). Afterwards `onDown` wants a listener again.
   */
  reroute?(route: DirectRoute): Promise<void>;
  /** Keeps traffic to this address outside the tunnel from now on (a relay it is about to move to). */
  exempt?(address: string): Promise<void>;
  /**
   * The consumer's stage checks once the tunnel is up (docs/quality.md): a name resolved through it
   * (when it has a resolver), the time to a first byte and a short throughput test of at most
   * `maxBytes`, all within `timeoutMs`. A tunnel without it reports the stages up to "tunnel".
   */
  check?(o: { maxBytes: number; timeoutMs: number }): Promise<TunnelCheck>;
}

/** What a tunnel's stage checks found. */
export interface TunnelCheck {
  /** Whether a name resolved through the tunnel (undefined: not checked). */
  dns?: boolean;
  /** ms from the request to the first byte; null: none arrived in time. */
  firstByteMs: number | null;
  /** Bytes received in the throughput test, and over how long (ms, from the first byte). */
  bytes: number;
  ms: number;
  /** false: no first byte or throughput was asked for (the consumer set no target); the stages end at DNS. */
  dataChecked?: false;
}

/** What the consumer side of a service does. */
export interface ConsumerService {
  readonly type: string;
  /** Sent in `session.create`: whatever the provider's side of this service needs to know. */
  consumerData(): Promise<unknown>;
  /**
   * What the tunnel for this session will need (interface, endpoints), before it is brought up;
   * rejects a service config it cannot protect. Services without a network tunnel have none.
   */
  plan?(session: { id: string; provider: string; serviceConfig: unknown; route?: DirectRoute }): Promise<TunnelPlan>;
  /**
   * Brings the connection up with the provider's service config; rejects when it cannot. `route`:
   * the provider is reached over the session's direct path (punched, or on the same LAN), not at
   * the config's endpoint. `stream`: the connection to the provider is one a relay this host holds
   * spliced to it (a proxy provider that dialled back: tcp-held.ts), not one this host opens.
   * `giveUp`: aborted once the route cannot work (the tunnels' search cannot meet): the wait for the
   * provider's first packet ends at once, rejecting with the signal's reason.
   */
  connect(session: ConnectTarget): Promise<Tunnel>;
  /**
   * Optional: `connect` while the kill switch is armed beside it: the interface and routes are set
   * up once `guard.routesKept` settles, and nothing (not even the handshake) is sent before
   * `guard.armed` does; when either rejects, what was set up is undone and this rejects with it.
   */
  connectBeside?(session: ConnectTarget, guard: TunnelGuard): Promise<Tunnel>;
  /**
   * Optional: starts what the tunnel for `consumerData` needs before the provider has answered (a
   * device, its process), in parallel with the negotiation; `connect` then only configures it.
   * Never rejects: a failure shows when `connect` uses it. `spray`: the proposal says the provider's
   * router maps per destination and nothing else reaches it, so the tunnel will likely spray
   * (`sprayFromTunnel`): its sender is started now too.
   */
  prepare?(consumerData: unknown, o?: { spray?: boolean }): void;
  /** Optional: the session for `consumerData` will not connect: stop what `prepare` started. Idempotent. */
  discard?(consumerData: unknown): Promise<void>;
  /** The UDP port the tunnel made for `consumerData` will listen on, when its own packets can punch (WireGuard). */
  tunnelPortFor?(consumerData: unknown): number | undefined;
  /**
   * Optional: the provider's tunnel will send the first handshake (`DirectRoute.peerSendsFirst`):
   * the tunnel prepared for `consumerData` is given the provider's key from `serviceConfig` now,
   * before the direct path is punched, so that handshake is answered when it arrives. Never rejects.
   */
  expectPeer?(consumerData: unknown, serviceConfig: unknown): Promise<void>;
  /**
   * A provider nobody can dial (reach "public-or-mapped" without a public or mapped address) is
   * reached through a TCP allocation it holds on a relay this consumer pays (the proxy's streams).
   */
  readonly relayedTcp?: boolean;
  /**
   * Optional: sends these datagrams from the tunnel's own UDP socket (hard-NAT probing when the
   * provider's router is the hard one); resolves once the last left, or the tunnels met and it stopped.
   */
  sprayFromTunnel?(consumerData: unknown, datagrams: Iterable<{ address: string; port: number; bytes: Buffer }>): Promise<TunnelSprayCount | undefined>;
}
