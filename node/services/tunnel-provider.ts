import fs from "node:fs";
import path from "node:path";
import { silentLogger, type Logger } from "../log/logger";
import type { ProviderService } from "../session/service";
import type { TunnelControls } from "./controls/tunnel-controls";
import { TunnelFirewall } from "./firewall";
import { Supervisor } from "./supervision";
import { requireCapabilities, tunnelCapabilities } from "./capabilities";
import type { TunnelServiceOptions } from "./tunnel-options";
import { TunnelResolver } from "./tunnel-resolver";

/** What a provider meters of one session, whatever carries it. */
export interface MeteredSession {
  id: string;
  consumer: string;
  /** Counts of the supervised process now running (`bytesIn` from the consumer, `bytesOut` to it). */
  bytesIn: number;
  bytesOut: number;
  /** Counts of earlier processes (a restart starts the counters again). */
  carriedIn: number;
  carriedOut: number;
  /** Time the session could not be served: its process died and the consumer has not come back yet. */
  downMs: number;
  downSince?: number;
}

export type SessionUsage = { bytesIn: number; bytesOut: number; downMs: number };

/** The supervised tunnel process as the skeleton sees it. */
export interface TunnelProcess {
  readonly pid?: number;
  readonly running: boolean;
  stop(): Promise<void>;
}

/** How many closed sessions' final byte counts stay answerable by `usage`. */
const ENDED_KEPT = 1000;

/**
 * The provider side every tunnel adapter shares: one supervised process, the firewall (NAT, LAN
 * block) and the tunnel resolver around it, the controls on its device, the sessions' meters
 * (carried over a restart, kept a while after the session closed) and the one start/stop order.
 * An adapter says how to prepare (keys, config, its device), launch its process, meter it, and cut
 * one consumer off.
 */
export abstract class TunnelProvider<S extends MeteredSession> implements ProviderService {
  abstract readonly type: string;
  protected readonly log: Logger;
  protected readonly sessions = new Map<string, S>();
  /** The resolver consumers use through the tunnel, on the server's tunnel address. */
  readonly resolver: TunnelResolver;
  protected readonly supervisor: Supervisor;
  /** Set by the adapter once it knows its device (in its constructor or in `prepare`). */
  protected firewall?: TunnelFirewall;
  protected controls?: TunnelControls;
  /** The server's own address in the tunnel subnet (.1). */
  protected readonly serverAddress: string;
  /** Final byte counts of recently closed sessions, oldest first. */
  readonly #ended = new Map<string, SessionUsage>();
  #meter?: NodeJS.Timeout;

  constructor(
    protected readonly options: TunnelServiceOptions,
    private readonly tunnel: {
      /** For the log and errors: "openvpn", "wireguard-go". */
      process: string;
      /** For errors (a missing capability): "an OpenVPN service". */
      service: string;
      /** The IPv4 subnet (/24) unless the options name one. */
      subnet: string;
      /** The IPv6 subnet (/64) when the service carries IPv6. */
      subnet6: string;
    },
  ) {
    this.log = options.log ?? silentLogger;
    this.serverAddress = this.subnet.replace(/\.0$/, ".1");
    // Without IPv6 in the tunnel the resolver drops AAAA answers, so applications go straight to IPv4.
    this.resolver = new TunnelResolver({
      listen: this.serverAddress,
      netns: options.netns,
      blockPrivate: options.blockPrivate,
      filterIpv6: !options.ipv6,
      pidFile: path.join(options.dir, "dnsmasq.pid"),
      log: this.log,
    });
    this.supervisor = new Supervisor({ what: tunnel.process, log: this.log, down: () => this.#down(), relaunch: () => this.relaunch() });
  }

  /** The supervised process now (undefined before the start). */
  protected abstract get process(): TunnelProcess | undefined;
  /** Makes what the process needs before it starts (keys, config, the device and its firewall). */
  protected abstract prepare(): Promise<void>;
  /** Starts the process (again, after a crash); resolves once it serves. */
  protected abstract launch(): Promise<void>;
  /** Supervision: a new process after a crash, and what goes with it. */
  protected abstract relaunch(): Promise<void>;
  /** Reads every session's byte counts from the process. */
  abstract meter(): Promise<void>;
  /** Cuts off the consumer of a session that just closed (its meter is read and kept). */
  protected abstract cutOff(session: S, reason: string, options: { byConsumer?: boolean }): Promise<void>;
  /** The process died: what the adapter forgets of a session's connection (its counters are carried over already). */
  protected abstract disconnected(session: S): void;
  abstract openSession(session: { id: string; consumer: string; consumerData: unknown }): Promise<unknown>;
  abstract isConnected(sessionId: string): boolean;

  /** Each restart of the supervised process, for tests and status. */
  get restarts(): readonly number[] {
    return this.supervisor.restarts;
  }

  get pid(): number | undefined {
    return this.process?.pid;
  }

  get ipv6(): boolean {
    return this.options.ipv6 === true;
  }

  isRunning(): boolean {
    return !this.supervisor.stopping && !!this.process?.running;
  }

  async start(): Promise<void> {
    requireCapabilities(this.tunnel.service, tunnelCapabilities("tunnel device", this.options));
    this.supervisor.start();
    fs.mkdirSync(this.options.dir, { recursive: true, mode: 0o700 });
    try {
      await this.prepare();
      await this.firewall?.apply();
      await this.launch();
      await this.resolver.start();
      await this.controls?.apply();
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.#meter = setInterval(() => void this.meter().catch(() => undefined), this.options.meterMs ?? 1000);
    this.#meter.unref();
  }

  async stop(): Promise<void> {
    // After a restart under way: the process it made is the one stopped below.
    await this.supervisor.stop();
    clearInterval(this.#meter);
    await this.process?.stop();
    await this.resolver.stop();
    await this.controls?.remove();
    await this.firewall?.remove();
  }

  async closeSession(sessionId: string, reason: string, options: { byConsumer?: boolean } = {}): Promise<void> {
    const session = this.sessions.get(sessionId);
    if (!session) return;
    // The last reading stays answerable after the session closes: history, metrics and the
    // final invoice read it once the session has ended.
    await this.meter().catch(() => undefined);
    this.#ended.set(sessionId, this.usage(sessionId)!);
    if (this.#ended.size > ENDED_KEPT) this.#ended.delete(this.#ended.keys().next().value!);
    this.sessions.delete(sessionId);
    await this.cutOff(session, reason, options);
    // After the cut-off: without its class the session's last packets would leave unlimited.
    await this.controls?.sessionDown(sessionId).catch(() => undefined);
  }

  /**
   * Bytes the session's consumer moved (`bytesIn` received from it, `bytesOut` sent to it), and
   * `downMs`: how long it could not be served (from a crash of the process until its consumer was back).
   */
  usage(sessionId: string): SessionUsage | undefined {
    const s = this.sessions.get(sessionId);
    if (!s) return this.#ended.get(sessionId);
    const down = s.downMs + (s.downSince !== undefined ? Date.now() - s.downSince : 0);
    return { bytesIn: s.carriedIn + s.bytesIn, bytesOut: s.carriedOut + s.bytesOut, downMs: down };
  }

  /** The rules of the tunnel subnet on `device` (NAT, the LAN block, the resolver's port). */
  protected firewallOn(device: string): TunnelFirewall {
    return new TunnelFirewall({
      netns: this.options.netns,
      subnet: `${this.subnet}/24`,
      tunDevice: device,
      uplink: this.options.uplink,
      blockPrivate: this.options.blockPrivate,
      allow: this.options.allowPrivate,
      dnsAddress: this.serverAddress,
      ...(this.options.ipv6 ? { subnet6: this.tunnel.subnet6 } : {}),
    });
  }

  protected get subnet(): string {
    return this.options.subnet ?? this.tunnel.subnet;
  }

  /** The process exited while the service runs: the sessions' counters so far are carried over. */
  #down(): void {
    const now = Date.now();
    for (const s of this.sessions.values()) {
      s.carriedIn += s.bytesIn;
      s.carriedOut += s.bytesOut;
      s.bytesIn = s.bytesOut = 0;
      s.downSince ??= now;
      this.disconnected(s);
    }
  }
}
