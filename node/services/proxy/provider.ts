import crypto from "node:crypto";
import fs from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import type { SignerDirectory } from "../../identity/protocol-signature";
import { silentLogger, type Logger } from "../../log/logger";
import type { ProviderService } from "../../session/service";
import { TunnelError } from "../system";
import { ensureCertificate, type ServiceCertificate } from "../certificate";
import {
  CONNECTION_WINDOW,
  CREDENTIAL_HEADER,
  IDLE_GOAWAY,
  PROXY_LIMITS,
  type ProxyLimits,
  REFUSAL_HEADER,
  STREAM_WINDOW,
  TOO_MANY_CONNECTIONS,
  TOO_MANY_STREAMS,
  type ProxyServiceConfig,
} from "./config";
import { type DestinationPolicy, DestinationRefused, parseAuthority } from "./destination";
import { bucketFor, pump, type TokenBucket } from "./throttle";
import { type RelayGrant, relayGrantOf } from "../relay/tcp-grant";
import { connectRelayed, DIAL_BACK_PROOFS_PER_MINUTE, type DialBack, dialBackOf, ProofBudget, proveRelayAt, relayDialBack } from "../relay/tcp-held";
import { TcpRelayedListener } from "../relay/turn-tcp";

/** The lowest port a relay may relay from (services/relay/tunnel.ts: minPort ≥ 1024). */
const RELAYED_PORT_MIN = 1024;

export interface ProxyProviderOptions {
  /** Where the key and certificate are kept (`<data-dir>/services/proxy`). */
  dir: string;
  /** The address consumers reach the server at (sent in the session answer). */
  publicAddress: string;
  /** TCP port of the HTTP/2 server. */
  port: number;
  /** The local address to listen on. Default all (`::`, and IPv4 with it). */
  listen?: string;
  /** Where streams may go (private networks, egress lists, SMTP). */
  policy: DestinationPolicy;
  /** Each session's limit, Mbit/s each direction (the offer's bandwidth); 0 or absent: none. */
  sessionMbps?: number;
  /** The whole service's limit, Mbit/s each direction. */
  serviceMbps?: number;
  /** How long a dial out may take. Default 10 s. */
  connectTimeoutMs?: number;
  /**
   * The registry a dial-back's relay proposal is checked against (the relay must be registered and
   * have signed it). Without it, no dial-back is taken.
   */
  directory?: SignerDirectory;
  /** Streams and connections per session, idle timeouts (PROXY_LIMITS unless given). */
  limits?: Partial<ProxyLimits>;
  log?: Logger;
}

interface ProxySession {
  id: string;
  consumer: string;
  /** sha256 of the credential: the map key (no credential is kept in the clear, nor compared byte by byte). */
  credentialHash: string;
  bytesIn: number;
  bytesOut: number;
  streams: Set<http2.ServerHttp2Stream>;
  connections: Set<http2.Http2Session>;
  up?: TokenBucket;
  down?: TokenBucket;
  /** Armed while the session has no open stream: its connections are closed when it fires. */
  idle?: NodeJS.Timeout;
  /** The TCP allocation the session's consumer reaches this server through (a relay it pays), when it cannot dial it. */
  relayed?: TcpRelayedListener;
}

const ENDED_KEPT = 1000;
/** A connection that has not shown a valid credential by then is closed. */
const UNAUTHENTICATED_MS = 10_000;
const hash = (credential: string) => crypto.createHash("sha256").update(credential).digest("hex");

/**
 * The provider side of the proxy service: an HTTP/2 server over TLS that accepts CONNECT streams
 * (RFC 9113 §8.5) carrying a live session's credential, dials out on the consumer's behalf under
 * the destination policy (the name resolved here, every address judged), and meters each stream's
 * payload into its session (`bytesIn` from the consumer, `bytesOut` to it), limited per session and
 * per service by token buckets. Needs no privilege: a TCP port and outbound connections.
 */
export class ProxyProviderService implements ProviderService {
  readonly type = "proxy";
  readonly #o: ProxyProviderOptions;
  readonly #log: Logger;
  readonly #sessions = new Map<string, ProxySession>();
  readonly #byCredential = new Map<string, ProxySession>();
  readonly #ended = new Map<string, { bytesIn: number; bytesOut: number }>();
  /** Each connection's session: the first credential it shows binds it; another is refused on it. */
  readonly #boundTo = new WeakMap<http2.Http2Session, ProxySession>();
  readonly #connections = new Set<http2.Http2Session>();
  readonly #serviceUp?: TokenBucket;
  readonly #serviceDown?: TokenBucket;
  readonly #limits: ProxyLimits;
  /** The relay proofs a dial-back asks for (each one TLS hello to an address a consumer chose, before any payment), per consumer. */
  readonly #proofs = new ProofBudget(DIAL_BACK_PROOFS_PER_MINUTE);
  #server?: http2.Http2SecureServer;
  #cert?: ServiceCertificate;
  #running = false;

  constructor(options: ProxyProviderOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.#limits = { ...PROXY_LIMITS, ...options.limits };
    this.#serviceUp = bucketFor(options.serviceMbps);
    this.#serviceDown = bucketFor(options.serviceMbps);
  }

  /** A TCP server: its consumers connect to it unasked, which no hole punch helps (docs/reachability.md). */
  readonly reach = "public-or-mapped" as const;

  /** Kept mapped on a router that maps (UPnP / NAT-PMP), as the proposal's reach needs. */
  get listenPort(): { port: number; protocol: "tcp" } {
    return { port: this.port, protocol: "tcp" };
  }

  get port(): number {
    const a = this.#server?.address();
    return a && typeof a === "object" ? a.port : this.#o.port;
  }

  get fingerprint(): string | undefined {
    return this.#cert?.fingerprint;
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.#o.dir, { recursive: true, mode: 0o700 });
    this.#cert = await ensureCertificate(this.#o.dir, "proxy");
    const server = http2.createSecureServer({
      key: this.#cert.key,
      cert: this.#cert.certificate,
      allowHTTP1: false,
      minVersion: "TLSv1.3",
      // A connection that has not finished its TLS handshake in 10 s is closed (the default, 120 s, lets a slow client hold sockets).
      handshakeTimeout: 10_000,
      settings: { initialWindowSize: STREAM_WINDOW, maxConcurrentStreams: 512, enableConnectProtocol: false },
    });
    server.on("session", (session) => this.#connection(session));
    server.on("stream", (stream, headers) =>
      this.#stream(stream, headers).catch((err) => {
        // A stream's failure is that stream's: it is reset, the node goes on.
        this.#log.warn({ err: (err as Error).message }, "proxy stream failed");
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }),
    );
    // A bad TLS hello or a reset connection is the peer's business, not an error of the node.
    server.on("tlsClientError", () => undefined);
    server.on("sessionError", () => undefined);
    const listen = (host: string) =>
      new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(this.#o.port, host, () => {
          server.off("error", reject);
          resolve();
        });
      });
    try {
      // Every address, IPv6 and IPv4, unless told; a host without IPv6 listens on IPv4 only.
      await listen(this.#o.listen ?? "::").catch((err: NodeJS.ErrnoException) => {
        if (this.#o.listen === undefined && (err.code === "EAFNOSUPPORT" || err.code === "EADDRNOTAVAIL")) return listen("0.0.0.0");
        throw err;
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EADDRINUSE")
        throw new TunnelError("PORT_IN_USE", `the proxy's port ${this.#o.port} is in use (--port to choose another)`, { cause: err });
      throw err;
    }
    this.#server = server;
    this.#running = true;
    this.#log.info({ port: this.port, fingerprint: this.#cert.fingerprint }, "proxy service listening (HTTP/2 CONNECT over TLS)");
  }

  isRunning(): boolean {
    return this.#running;
  }

  async openSession(session: { id: string; consumer: string; consumerData: unknown }): Promise<ProxyServiceConfig> {
    if (!this.#running || !this.#cert) throw new TunnelError("SERVICE_NOT_RUNNING", "the proxy service is not running");
    const grant = relayGrantOf(session.consumerData);
    const back = dialBackOf(session.consumerData);
    const relayed = grant ? await this.#holdRelayed(session.id, grant) : undefined;
    const dialled = back ? await this.#dialBack(session.id, session.consumer, back) : undefined;
    const credential = crypto.randomBytes(32).toString("base64url");
    const s: ProxySession = {
      id: session.id,
      consumer: session.consumer,
      credentialHash: hash(credential),
      bytesIn: 0,
      bytesOut: 0,
      streams: new Set(),
      connections: new Set(),
      up: bucketFor(this.#o.sessionMbps),
      down: bucketFor(this.#o.sessionMbps),
      relayed,
    };
    this.#sessions.set(s.id, s);
    this.#byCredential.set(s.credentialHash, s);
    this.#watchIdle(s);
    const where = relayed
      ? { address: relayed.relayed.address, port: relayed.relayed.port, relayed: true as const }
      : dialled
        ? { address: dialled.address, port: dialled.port, relayed: true as const }
        : { address: this.#o.publicAddress, port: this.port };
    return { ...where, certificate: this.#cert.certificate, fingerprint: this.#cert.fingerprint, credential };
  }

  /**
   * A TCP allocation on the relay the consumer pays (RFC 6062; docs/proxy.md "Through a relay"):
   * held over TLS with the consumer's relay credential, letting in only the consumer's address; each
   * connection the relay splices to it is served as one this server accepted. The relay's address
   * is judged by the destination policy, as any address this provider dials for a consumer.
   */
  async #holdRelayed(sessionId: string, grant: RelayGrant): Promise<TcpRelayedListener> {
    const { address, port, transport } = grant.server;
    const refused = this.#o.policy.refusalOf(address);
    if (refused) throw new TunnelError("BAD_CONSUMER_DATA", `the relay the consumer names is refused: ${refused.message}`);
    const pin = grant.certificate && grant.fingerprint ? { certificate: grant.certificate, fingerprint: grant.fingerprint } : undefined;
    const listener = await TcpRelayedListener.open(
      { address, port, transport, pin },
      { username: grant.username, password: grant.password },
      grant.peers,
    ).catch((err: Error) => {
      throw new TunnelError("RELAY_FAILED", `no TCP allocation on the relay ${address}:${port} (${transport}): ${err.message}`, { cause: err });
    });
    listener.on("connection", (socket) => this.#server?.emit("connection", socket));
    listener.on("unbound", (reason) => this.#log.warn({ sessionId, reason }, "a relayed proxy connection was not bound"));
    listener.once("closed", (reason) => this.#log.info({ sessionId, reason }, "the proxy session's relayed TCP allocation closed"));
    this.#log.info({ sessionId, relay: grant.relay, relayed: listener.relayed, peers: grant.peers }, "proxy session relayed: holding a TCP allocation");
    return listener;
  }

  /**
   * The consumer holds the TCP allocation (it can reach the relay only on its TURN port: docs/proxy.md
   * "A consumer allowed only TCP/443"): this provider connects to the relayed address, judged by the
   * destination policy as any address it dials for a consumer, and serves the connection as one its
   * server accepted (TLS, then the session's credential on every stream, as on any path). A connection
   * that shows no credential is closed after 10 s like any other.
   */
  async #dialBack(sessionId: string, consumer: string, back: DialBack): Promise<DialBack> {
    const refused = this.#o.policy.refusalOf(back.address);
    if (refused) throw new TunnelError("BAD_CONSUMER_DATA", `the relayed address the consumer names is refused: ${refused.message}`);
    // A relay's relayed ports are never below 1024 (the relay service's own bound), and the ports this
    // proxy blocks for streams (mail) are blocked here too: the dial-back comes before any payment.
    if (back.port < RELAYED_PORT_MIN)
      throw new TunnelError(
        "BAD_CONSUMER_DATA",
        `the relayed port the consumer names (${back.port}) is not a relay's: relayed ports start at ${RELAYED_PORT_MIN}`,
      );
    // The TURN port the proof below connects to, as much as the relayed port (a private address skips
    // relayDialBack's TURN_PORTS rule): neither is a port this proxy blocks.
    for (const port of [back.port, back.turnPort])
      try {
        this.#o.policy.checkPort(port);
      } catch (err) {
        throw new TunnelError("BAD_CONSUMER_DATA", `the relayed address the consumer names is refused: ${(err as Error).message}`);
      }
    if (!this.#o.directory)
      throw new TunnelError("BAD_CONSUMER_DATA", "this provider has no registry to check a relay's proposal against: it takes no dial-back");
    // Only an address a registered relay announces in its signed proposal, and that runs that relay.
    const timeoutMs = this.#o.connectTimeoutMs ?? 10_000;
    const logged = (err: Error) => {
      this.#log.warn({ sessionId, relay: back.relay, address: `${back.address}:${back.port}`, refusal: err.message }, "proxy dial-back refused");
      return err;
    };
    await relayDialBack(back, this.#o.directory, consumer).catch((err: Error) => Promise.reject(logged(err)));
    this.#proofs.take(consumer);
    await proveRelayAt(back.address, back.turnPort, back.relay, timeoutMs).catch((err: Error) => {
      // What the handshake met (refused, silent, which certificate) stays in this log: told to the
      // consumer, it would make this provider a TLS scanner that reports back.
      logged(err);
      throw new TunnelError("BAD_CONSUMER_DATA", `${back.address}:${back.turnPort} is not shown to run relay ${back.relay} (the provider's log says why)`);
    });
    const socket = await connectRelayed(back.address, back.port, timeoutMs, "the consumer's relayed address");
    this.#server?.emit("connection", socket);
    this.#log.info({ sessionId, relay: back.relay, dialled: `${back.address}:${back.port}` }, "proxy session relayed: dialled the consumer's TCP allocation");
    return back;
  }

  async closeSession(sessionId: string, reason: string): Promise<void> {
    const s = this.#sessions.get(sessionId);
    if (!s) return;
    this.#sessions.delete(sessionId);
    this.#byCredential.delete(s.credentialHash);
    clearTimeout(s.idle);
    this.#ended.set(sessionId, { bytesIn: s.bytesIn, bytesOut: s.bytesOut });
    if (this.#ended.size > ENDED_KEPT) this.#ended.delete(this.#ended.keys().next().value!);
    for (const stream of s.streams) stream.close(http2.constants.NGHTTP2_CANCEL);
    for (const c of s.connections) c.destroy();
    await s.relayed?.close().catch(() => undefined);
    this.#log.info({ sessionId, reason, bytesIn: s.bytesIn, bytesOut: s.bytesOut }, "proxy session closed");
  }

  usage(sessionId: string): { bytesIn: number; bytesOut: number } | undefined {
    const s = this.#sessions.get(sessionId);
    return s ? { bytesIn: s.bytesIn, bytesOut: s.bytesOut } : this.#ended.get(sessionId);
  }

  /** Connected: an HTTP/2 connection that showed the session's credential is open. */
  isConnected(sessionId: string): boolean {
    return (this.#sessions.get(sessionId)?.connections.size ?? 0) > 0;
  }

  async stop(): Promise<void> {
    this.#running = false;
    for (const s of this.#sessions.values()) {
      clearTimeout(s.idle);
      await s.relayed?.close().catch(() => undefined);
    }
    for (const c of this.#connections) c.destroy();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }

  #connection(c: http2.Http2Session): void {
    this.#connections.add(c);
    c.setLocalWindowSize(CONNECTION_WINDOW);
    const timer = setTimeout(() => {
      if (!this.#boundTo.has(c)) c.destroy();
    }, UNAUTHENTICATED_MS);
    timer.unref();
    c.once("close", () => {
      clearTimeout(timer);
      this.#connections.delete(c);
      this.#boundTo.get(c)?.connections.delete(c);
    });
    c.on("error", () => undefined);
  }

  /**
   * The session a stream's credential names, binding its connection to it (up to the session's
   * connections); or why the stream is refused.
   */
  #authenticate(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): ProxySession | { status: number; refusal: string } {
    const given = headers[CREDENTIAL_HEADER];
    const m = typeof given === "string" ? /^Bearer ([A-Za-z0-9_-]{43})$/.exec(given) : null;
    const s = m ? this.#byCredential.get(hash(m[1])) : undefined;
    if (!s) return { status: 407, refusal: "credential" };
    const bound = this.#boundTo.get(stream.session!);
    if (bound && bound !== s) return { status: 407, refusal: "credential" };
    if (!bound) {
      if (s.connections.size >= this.#limits.connectionsPerSession) return { status: 429, refusal: TOO_MANY_CONNECTIONS };
      this.#boundTo.set(stream.session!, s);
      s.connections.add(stream.session!);
    }
    return s;
  }

  /** Closes the session's connections once it has had no open stream for `sessionIdleMs` (re-armed as its last stream closes). */
  #watchIdle(s: ProxySession): void {
    clearTimeout(s.idle);
    if (s.streams.size > 0) return;
    s.idle = setTimeout(() => {
      if (s.streams.size > 0 || !this.#sessions.has(s.id)) return;
      if (s.connections.size) this.#log.info({ sessionId: s.id, idleMs: this.#limits.sessionIdleMs }, "proxy session idle: its connections are closed");
      for (const c of s.connections) {
        if (c.closed || c.destroyed) continue;
        c.goaway(http2.constants.NGHTTP2_NO_ERROR, 0, Buffer.from(IDLE_GOAWAY));
        c.close();
      }
    }, this.#limits.sessionIdleMs);
    s.idle.unref();
  }

  async #stream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    stream.on("error", () => undefined);
    const refuse = (status: number, refusal: string) => {
      if (stream.destroyed || stream.closed || stream.headersSent) return;
      stream.respond({ ":status": status, [REFUSAL_HEADER]: refusal }, { endStream: true });
    };
    if (headers[":method"] !== "CONNECT") return refuse(405, "method");
    const session = this.#authenticate(stream, headers);
    if ("refusal" in session) return refuse(session.status, session.refusal);
    if (session.streams.size >= this.#limits.streamsPerSession) {
      this.#log.info({ sessionId: session.id, streams: session.streams.size }, "proxy stream refused: the session has as many streams open as it may");
      return refuse(429, TOO_MANY_STREAMS);
    }
    // Counted from here (a dial under way holds its place), until the stream closes.
    session.streams.add(stream);
    clearTimeout(session.idle);
    stream.once("close", () => {
      session.streams.delete(stream);
      if (this.#sessions.has(session.id)) this.#watchIdle(session);
    });
    let addresses: string[];
    let port: number;
    try {
      const destination = parseAuthority(headers[":authority"]);
      port = destination.port;
      addresses = await this.#o.policy.addresses(destination);
    } catch (err) {
      if (!(err instanceof DestinationRefused)) throw err;
      this.#log.info(
        { sessionId: session.id, target: String(headers[":authority"]).slice(0, 100), refusal: err.refusal },
        `proxy stream refused: ${err.message}`,
      );
      return refuse(403, err.refusal);
    }
    let socket: net.Socket;
    try {
      socket = await this.#dial(addresses, port);
    } catch (err) {
      return refuse(502, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
    }
    if (!this.#sessions.has(session.id) || stream.destroyed) {
      socket.destroy();
      return refuse(407, "credential");
    }
    stream.respond({ ":status": 200 });
    const done = () => {
      socket.destroy();
      if (stream.destroyed) return;
      // A stream nghttp2 already closed (both ends sent END_STREAM) is only waiting for its reader.
      if (stream.closed) stream.destroy();
      else stream.close(http2.constants.NGHTTP2_CANCEL);
    };
    socket.once("close", () => {
      if (!stream.writableEnded) return done();
      // The destination ended cleanly and the stream with it: what it sent may still be on its way or
      // unread at the consumer, which a reset (CANCEL) would throw away. What the consumer still sends
      // has nowhere to go: it is read and dropped (uncounted), so the stream is never held paused on a
      // socket that will not drain. The stream closes when the consumer ends its side, or is cut once
      // no byte has moved on it for the idle time (the stream's own timer, cleared when it closes).
      stream.removeAllListeners("data");
      stream.resume();
      stream.setTimeout(this.#limits.streamIdleMs, done);
    });
    socket.on("error", () => undefined);
    stream.once("close", done);
    // The socket's timer runs while no byte moves either way (what the consumer sends is written to it).
    socket.setTimeout(this.#limits.streamIdleMs, () => {
      this.#log.info({ sessionId: session.id, idleMs: this.#limits.streamIdleMs }, "proxy stream closed: idle");
      done();
    });
    pump(stream, socket, (n) => (session.bytesIn += n), [session.up, this.#serviceUp]);
    pump(socket, stream, (n) => (session.bytesOut += n), [session.down, this.#serviceDown]);
  }

  /** The first of `addresses` that answers, within the timeout. */
  async #dial(addresses: string[], port: number): Promise<net.Socket> {
    let last: unknown;
    for (const host of addresses) {
      try {
        return await new Promise<net.Socket>((resolve, reject) => {
          const socket = net.connect({ host, port, noDelay: true });
          const timedOut = () => socket.destroy(new Error("ETIMEDOUT"));
          socket.setTimeout(this.#o.connectTimeoutMs ?? 10_000, timedOut);
          socket.once("connect", () => {
            socket.setTimeout(0, timedOut);
            resolve(socket);
          });
          socket.once("error", reject);
        });
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }
}
