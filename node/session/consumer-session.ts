import { EventEmitter } from "node:events";
import type net from "node:net";
import { peerCodeOf, type Dialog } from "../dialog/dialogs";
import type { Logger } from "../log/logger";
import type { DirectChannel, DirectPath } from "../nat/direct/channel";
import type { Proposal, SignedProposal } from "../proposal/proposal";
import { SESSION_DESTROY, SESSION_KEEPALIVE } from "./messages";
import type { Tunnel, TunnelEndpoint } from "./service";

/**
 * The path a session's traffic takes: `tunnel` is how the tunnel reaches the provider (its own
 * public address, a port its router maps, the shared LAN, or a punched hole); `channel` is what
 * carries the session's messages now (the direct channel, or the broker).
 */
export interface SessionPath {
  tunnel: "public" | "mapped" | "local" | "punched" | "relayed";
  channel: "direct" | "broker";
  /** The direct channel's path, once it is up. */
  direct?: DirectPath;
  /** Relayed: which relay (its identity and TURN server) and over what the consumer reaches it. */
  relay?: { provider: string; address: string; port: number; transport: "udp" | "tcp" | "tls" };
}

/**
 * A relay the consumer pays for this session (services/relay; the consumer node opens it): its
 * relayed address, which the provider's tunnel sends to, the local forwarder our tunnel sends to,
 * and where its packets really leave this host. Closing it ends the relay's session.
 */
export interface RelayLeg {
  provider: string;
  /** The relay's signed proposal: the provider checks the relayed address against it (session.relay). */
  proposal: SignedProposal;
  /** The provider's addresses the relay was told it may let in (it cuts off an allocation that permits others). */
  peers: string[];
  relayed: { address: string; port: number };
  local: { address: string; port: number };
  outside: TunnelEndpoint;
  /** How this node reaches the relay: UDP, TCP, or TLS over TCP (`outside` says TCP then). */
  transport: "udp" | "tcp" | "tls";
  /** Lets these addresses (the provider's public ones) send to the relayed address. */
  permit(addresses: string[]): Promise<void>;
  /** Called once if the relay's allocation or session ends by itself. */
  onDown(listener: (reason: string) => void): void;
  close(reason: string): Promise<void>;
  /** The relay's meter of this session (the TURN transport's bytes), and what was promised to the relay for it. */
  stats(): { bytesIn: number; bytesOut: number };
  /**
   * Credits the relay's data only as far as the session's tunnel authenticated it: `tunnel` is
   * the session's WireGuard (its meter counts only messages that decrypted under the session's
   * keys), `base` its meter when this relay began to carry it.
   */
  capBy(tunnel: Pick<Tunnel, "stats" | "refresh" | "wireBytes">, base?: { bytesIn: number; bytesOut: number }): void;
  promised(): bigint;
  /** A TCP relay (`tcp` opener): the credential the provider holds its allocation with, for the session's consumer data. */
  grant?: unknown;
  /** A TCP relay this host holds (tcp-held.ts): where the provider dials back, for the session's consumer data. */
  dialBack?: unknown;
  /** With `dialBack`: the provider's connection, as the relay splices it (the proxy runs over it). */
  stream?: () => Promise<net.Socket>;
}

export type ConsumerSessionState = "active" | "ended";

/** Milliseconds since the epoch at which each phase of connecting finished. */
export interface ConnectTimings {
  started: number;
  accepted: number;
  tunnelUp: number;
  confirmed: number;
}

/**
 * The consumer's side of one session: negotiated, confirmed, kept alive. It ends when either side
 * destroys it, the tunnel goes down, or the provider stops answering keepalives ("ended" event,
 * and `ended` resolves with the reason); "path" when its path changes (another relay).
 */
export class ConsumerSession extends EventEmitter<{ ended: [reason: string]; path: [SessionPath] }> {
  state: ConsumerSessionState = "active";
  endReason?: string;
  /** The provider said it will end the session (a cap, its schedule): why, and when. */
  notice?: { reason: string; endsAt: number };
  readonly ended: Promise<string>;
  #resolveEnded!: (reason: string) => void;
  #keepalive?: NodeJS.Timeout;
  #missed = 0;
  /** Since when keepalives go unanswered while the broker is down or the tunnel still works. */
  #outageSince?: number;
  /** What to tell the provider before a disconnect of the consumer's own (beforeDestroy). */
  readonly #lastWords: (() => Promise<void>)[] = [];

  constructor(
    readonly id: string,
    readonly provider: string,
    readonly proposal: Proposal,
    readonly dialog: Dialog,
    readonly tunnel: Tunnel,
    readonly serviceConfig: unknown,
    readonly timings: ConnectTimings,
    private readonly log: Logger,
    /** The session's direct channel, when both nodes made one. */
    readonly channel?: DirectChannel,
    readonly tunnelPath: SessionPath["tunnel"] = "public",
    /** The relay this session runs through, when it is relayed (another one after it died). */
    public relay?: RelayLeg,
  ) {
    super();
    this.ended = new Promise((resolve) => (this.#resolveEnded = resolve));
  }

  /** How the session's traffic and messages travel now. */
  get path(): SessionPath {
    return {
      tunnel: this.tunnelPath,
      channel: this.channel?.up ? "direct" : "broker",
      ...(this.channel?.path ? { direct: this.channel.path } : {}),
      ...(this.relay
        ? {
            relay: {
              provider: this.relay.provider,
              address: this.relay.outside.address,
              port: this.relay.outside.port,
              transport: this.relay.transport,
            },
          }
        : {}),
    };
  }

  /**
   * Starts keepalives. Two missed answers in a row end the session, unless the broker is down or
   * the tunnel is still up (the provider is alive and serving; only the broker path is broken):
   * then the session lives on for up to `outageToleranceMs` of silence, and keepalives (and
   * payments) resume when the broker is back.
   */
  keepAlive(intervalMs: number, o: { connected: () => boolean; outageToleranceMs: number }): void {
    this.#keepalive = setInterval(async () => {
      if (this.state === "ended") return;
      try {
        await this.dialog.request(SESSION_KEEPALIVE, { sessionId: this.id }, { timeoutMs: intervalMs });
        this.#missed = 0;
        this.#outageSince = undefined;
      } catch (err) {
        const peerCode = peerCodeOf(err);
        if (peerCode === "SESSION_UNKNOWN" || peerCode === "SESSION_ENDED") {
          // A keepalive can cross the provider's destroy; a notice it sent earlier says why.
          if (this.notice) return void this.finish(`provider ended it: ${this.notice.reason}`);
          return void this.finish(`provider no longer knows the session (${peerCode})`);
        }
        const code = (err as { code?: string }).code;
        if (!o.connected() || this.tunnel.isUp?.() === true || this.channel?.up) {
          const now = Date.now();
          this.#outageSince ??= now;
          if (now - this.#outageSince > o.outageToleranceMs)
            void this.finish(`provider unreachable over the broker for ${Math.round((now - this.#outageSince) / 1000)} s`);
          return;
        }
        if (++this.#missed >= 2) void this.finish(`provider silent (${code ?? "no answer"})`);
      }
    }, intervalMs);
    this.#keepalive.unref();
  }

  /**
   * Runs `fn` when the consumer ends the session itself, before the provider is told (the dialog
   * still open): an unacknowledged promise is sent again there. Its failure does not stop the
   * disconnect.
   */
  beforeDestroy(fn: () => Promise<void>): void {
    this.#lastWords.push(fn);
  }

  /** Ends the session from the consumer's side: the provider is told, the tunnel torn down. */
  async destroy(reason = "consumer disconnected"): Promise<void> {
    if (this.state === "ended") return;
    for (const fn of this.#lastWords) await fn().catch((err) => this.log.warn({ err: (err as Error).message, sessionId: this.id }, "before the disconnect"));
    // Tunnel first: the provider then sees the client leave on its own before it is told why.
    await this.tunnel.stop().catch((err) => this.log.error({ err, sessionId: this.id }, "stopping the tunnel failed"));
    try {
      await this.dialog.request(SESSION_DESTROY, { sessionId: this.id, reason }, { timeoutMs: 2000 });
    } catch (err) {
      this.log.warn({ err: (err as Error).message, sessionId: this.id }, "the provider did not acknowledge the disconnect");
    }
    await this.finish(reason);
  }

  /** Ends locally (the peer already knows, or cannot be told). */
  async finish(reason: string): Promise<void> {
    if (this.state === "ended") return;
    this.state = "ended";
    this.endReason = reason;
    clearInterval(this.#keepalive);
    await this.tunnel.stop().catch((err) => this.log.error({ err, sessionId: this.id }, "stopping the tunnel failed"));
    this.dialog.close();
    this.channel?.close();
    await this.relay?.close(`the relayed session ended: ${reason}`).catch(() => undefined);
    this.log.info({ sessionId: this.id, reason }, "session ended");
    this.emit("ended", reason);
    this.#resolveEnded(reason);
  }
}
