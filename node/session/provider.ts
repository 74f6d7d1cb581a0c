import type { MystError } from "../errors/MystError";
import crypto from "node:crypto";
import { EventEmitter } from "node:events";
import type { Dialog, Dialogs } from "../dialog/dialogs";
import { silentLogger, type Logger } from "../log/logger";
import type { DirectChannel } from "../nat/direct/channel";
import type { DirectPeering } from "../nat/direct/peering";
import { parseSignedProposal, proposalTerms, type Proposal, type VerifyOptions } from "../proposal/proposal";
import { sameAddress, type Address } from "../values/address";
import { SessionError } from "./errors";
import {
  SERVICE_AVAILABILITY,
  type Availability,
  SESSION_CONFIRM,
  SESSION_CREATE,
  SESSION_DESTROY,
  SESSION_NOTICE,
  SESSION_KEEPALIVE,
  SESSION_RELAY,
  check,
  type CreateRequest,
  type CreateResponse,
  type RefusalCode,
} from "./messages";
import { checkRelayedAddress } from "./relayed-address";
import { followDirectPath, tunnelOffer } from "./provider-punch";
import type { ProviderService } from "./service";

export type ProviderSessionState = "accepted" | "active" | "ended";

export interface ProviderSession {
  id: string;
  consumer: Address;
  serviceType: string;
  proposal: Proposal;
  state: ProviderSessionState;
  createdAt: number;
  confirmedAt?: number;
  endedAt?: number;
  endReason?: string;
  lastSeen: number;
  dialog: Dialog;
  /** The session's direct channel with its consumer, when both made one (it carries the dialog while up). */
  channel?: DirectChannel;
  /** The consumer's relayed address, when the session runs through a relay the consumer pays (with the relay's identity and transport, as the consumer names them). */
  relayed?: { address: string; port: number; relay?: string; transport?: string };
  /** How the consumer's tunnel reached us, as it said in `session.confirm`. */
  tunnelPath?: "public" | "mapped" | "local" | "punched" | "relayed";
  /** `session.relay` messages it may still send now (a few relay moves, then one per RELAY_REFILL_MS). */
  relayAllowance?: { left: number; at: number };
}

/** The path a provider's session took, as its history keeps it (the relayed address from `session.relay`, the rest the consumer's word). */
export function providerSessionPath(
  s: ProviderSession,
): { tunnel: NonNullable<ProviderSession["tunnelPath"]>; relay?: { provider?: string; address: string; transport?: string } } | undefined {
  const tunnel = s.relayed ? "relayed" : s.tunnelPath;
  if (!tunnel) return undefined;
  if (!s.relayed) return { tunnel };
  const { address, relay, transport } = s.relayed;
  return { tunnel, relay: { ...(relay ? { provider: relay } : {}), address, ...(transport ? { transport } : {}) } };
}

/** A session may name a relayed address this many times at once (a connect and two moves)… */
const RELAY_BURST = 3;
/** …and once more per this long: each makes our tunnel send to an address the consumer chose. */
const RELAY_REFILL_MS = 20_000;

/** A decision a payment policy (or any other) may add before a session is accepted. */
export type Admission = (request: { consumer: string; proposal: Proposal }) => Promise<{ code: RefusalCode; message: string } | null>;

export interface ProviderSessionsOptions {
  dialogs: Dialogs;
  /** The services this provider runs, by type. */
  services: Map<string, ProviderService>;
  /** The provider's current signed proposal for a service type, if it offers one. */
  currentProposal: (serviceType: string) => Proposal | undefined;
  log?: Logger;
  /** Sessions at once, over all services. Default 50. */
  maxSessions?: number;
  /**
   * Sessions one consumer may hold at once, unconfirmed ones included; past it its session.create
   * is refused with TOO_MANY_SESSIONS, so one deposit cannot take every slot. Default 2.
   */
  maxSessionsPerConsumer?: number;
  /** How often the consumer must show it is alive. Default 5 s. */
  keepaliveMs?: number;
  /** Keepalive periods a consumer may miss before its session ends. Default 3. */
  missedKeepalives?: number;
  /** How long an accepted session may wait for `confirmed`. Default 30 s. */
  confirmTimeoutMs?: number;
  /**
   * How long a session outlives broker silence: while the broker is down, or while the consumer's
   * tunnel is still connected though its keepalives do not arrive. Default 120 s.
   */
  outageToleranceMs?: number;
  admission?: Admission;
  /** The registry, to verify the relay's proposal a `session.relay` carries (relayed-address.ts). None: only a public address is checked (tests). */
  relaySigners?: VerifyOptions;
  /**
   * Whether a service is offered now and, if not, why (the provider's controls: its schedule, its
   * cap, this consumer's access): what a consumer that finds no proposal in discovery is told.
   */
  availability?: (serviceType: string, consumer: Address) => Promise<Omit<Availability, "serviceType">>;
  /** Direct channels with consumers that offer one (node/nat/direct). Without it, the broker carries every session. */
  direct?: DirectPeering;
  /** Whether the router keeps this port mapped for the node now (nat/monitor.ts): a service's tunnel there needs no punching. */
  routerMaps?: (port: number, protocol: "udp" | "tcp") => boolean;
}

/**
 * The provider's side of sessions: answers `session.create` with accepted or refused, tracks
 * confirmation and keepalives, and ends sessions (service cut-off, peer told) on destroy, failed
 * confirmation, or silence. Emits "session-accepted", "session-active", "session-ended" (with the
 * session) and "session-refused" ({consumer, code}).
 */
/** What ProviderSessions tells its listeners. */
export interface ProviderSessionsEvents {
  "session-accepted": [ProviderSession];
  "session-active": [ProviderSession];
  /** An active session's path changed (the consumer moved to another relay). */
  "session-path": [ProviderSession];
  "session-ended": [ProviderSession];
  "session-refused": [{ consumer: string; code: RefusalCode; message: string }];
}

export class ProviderSessions extends EventEmitter<ProviderSessionsEvents> {
  readonly #o: Required<Omit<ProviderSessionsOptions, "admission" | "availability" | "log" | "direct" | "routerMaps" | "relaySigners">> &
    Pick<ProviderSessionsOptions, "admission" | "availability" | "direct" | "routerMaps" | "relaySigners"> & { log: Logger };
  readonly #sessions = new Map<string, ProviderSession>();
  /** Creates past the capacity check and not yet recorded (they await admission and the service). */
  #admitting = 0;
  /** Since when the broker has been down (undefined while it is up). */
  #outageSince?: number;
  /** The last time the broker was seen down: silence is counted from after it. */
  #quietUntil = 0;
  /** The same, per consumer. */
  readonly #admittingBy = new Map<string, number>();
  #timer?: NodeJS.Timeout;

  constructor(options: ProviderSessionsOptions) {
    super();
    this.#o = {
      ...options,
      maxSessions: options.maxSessions ?? 50,
      maxSessionsPerConsumer: options.maxSessionsPerConsumer ?? 2,
      keepaliveMs: options.keepaliveMs ?? 5000,
      missedKeepalives: options.missedKeepalives ?? 3,
      confirmTimeoutMs: options.confirmTimeoutMs ?? 30_000,
      outageToleranceMs: options.outageToleranceMs ?? 120_000,
      log: options.log ?? silentLogger,
    };
  }

  start(): void {
    this.#o.dialogs.onDialog((dialog) => this.#attach(dialog));
    this.#timer = setInterval(() => void this.#sweep(), Math.max(50, Math.floor(this.#o.keepaliveMs / 2)));
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.all([...this.#sessions.values()].filter((s) => s.state !== "ended").map((s) => this.end(s.id, "provider stopping")));
  }

  get(id: string): ProviderSession | undefined {
    return this.#sessions.get(id);
  }

  list(): ProviderSession[] {
    return [...this.#sessions.values()];
  }

  get liveCount(): number {
    let n = 0;
    for (const s of this.#sessions.values()) if (s.state !== "ended") n++;
    return n;
  }

  /** Ends a session: the service cuts the consumer off and the consumer is told why. */
  async end(id: string, reason: string, options: { tellConsumer?: boolean } = {}): Promise<void> {
    const session = this.#sessions.get(id);
    if (!session || session.state === "ended") return;
    session.state = "ended";
    session.endedAt = Date.now();
    session.endReason = reason;
    const byConsumer = options.tellConsumer === false;
    // The consumer is told first, then its tunnel is closed: told after, it would see its tunnel
    // die before the reason (a cap, the schedule, non-payment) arrived, and report "tunnel down".
    if (!byConsumer && !session.dialog.closed) {
      try {
        session.dialog.notify(SESSION_DESTROY, { sessionId: id, reason });
      } catch {
        // the broker is gone; the consumer will notice by keepalive
      }
    }
    await this.#o.services
      .get(session.serviceType)
      ?.closeSession(id, reason, { byConsumer })
      .catch((err) => {
        this.#o.log.error({ err, sessionId: id }, "closing the service side of a session failed");
      });
    session.channel?.close();
    this.#o.log.info({ sessionId: id, consumer: session.consumer, reason }, "session ended");
    this.emit("session-ended", session);
    this.#closeIfIdle(session.dialog);
  }

  /** Tells a session's consumer that the provider will end it in `endsInMs`, and why (a cap, the schedule). */
  notice(id: string, reason: string, endsInMs: number): void {
    const session = this.#sessions.get(id);
    if (!session || session.state === "ended" || session.dialog.closed) return;
    try {
      session.dialog.notify(SESSION_NOTICE, { sessionId: id, reason: reason.slice(0, 512), endsInMs: Math.max(0, Math.round(endsInMs)) });
    } catch {
      // the broker is gone; the session ends anyway
    }
  }

  #liveOf(consumer: Address): number {
    let n = 0;
    for (const s of this.#sessions.values()) if (s.state !== "ended" && s.consumer === consumer) n++;
    return n;
  }

  /**
   * Closes a dialog that carries no live session (after a refusal, or once its session ended), so
   * an honest consumer's finished dialogs do not count against its per-peer dialog limit.
   */
  #closeIfIdle(dialog: Dialog): void {
    setImmediate(() => {
      for (const s of this.#sessions.values()) if (s.dialog === dialog && s.state !== "ended") return;
      dialog.close();
    });
  }

  #attach(dialog: Dialog): void {
    dialog.handle(SESSION_CREATE, (body) => this.#create(dialog, body));
    dialog.handle(SESSION_CONFIRM, (body) => this.#confirm(dialog, body));
    dialog.handle(SESSION_KEEPALIVE, (body) => this.#keepalive(dialog, body));
    dialog.handle(SESSION_DESTROY, (body) => this.#destroy(dialog, body));
    dialog.on(SESSION_DESTROY, (body) => void this.#destroy(dialog, body).catch(() => undefined));
    dialog.handle(SERVICE_AVAILABILITY, (body) => this.#availability(dialog, body));
    dialog.handle(SESSION_RELAY, (body) => this.#relay(dialog, body));
  }

  /**
   * The consumer reaches us through a relay: our tunnel sends its own packets to the relayed
   * address it names (plain UDP; the relay lets in any port of our address). Only a public IPv4
   * address a relay announces (relayed-address.ts): a consumer cannot point our tunnel at our LAN,
   * at this host, or at an address no relay announced.
   */
  async #relay(dialog: Dialog, body: unknown): Promise<Record<string, never>> {
    if (!check.relay.Check(body)) throw new SessionError("BAD_REQUEST", "session.relay does not match the schema");
    const session = this.#own(dialog, body.sessionId);
    if (session.state === "ended") throw new SessionError("SESSION_ENDED", `session ended: ${session.endReason}`);
    // Each one points our tunnel (and a kick) at an address the consumer chose: a few relay moves, not a stream of targets.
    const now = Date.now();
    const allowance = session.relayAllowance ?? { left: RELAY_BURST, at: now };
    const refilled = Math.min(RELAY_BURST, allowance.left + Math.floor((now - allowance.at) / RELAY_REFILL_MS));
    if (refilled < 1)
      throw new SessionError(
        "RATE_LIMITED",
        `session.relay: at most ${RELAY_BURST} relayed addresses at once and one per ${RELAY_REFILL_MS / 1000} s per session`,
      );
    session.relayAllowance = { left: refilled - 1, at: refilled > allowance.left ? now : allowance.at };
    await checkRelayedAddress(body, this.#o.relaySigners);
    const service = this.#o.services.get(session.serviceType);
    if (!service?.directRoute) throw new SessionError("BAD_REQUEST", `a ${session.serviceType} tunnel cannot be relayed`);
    session.relayed = {
      address: body.address,
      port: body.port,
      ...(body.relay ? { relay: body.relay } : {}),
      ...(body.transport ? { transport: body.transport } : {}),
    };
    session.lastSeen = Date.now();
    await service.directRoute(session.id, { kind: "relayed", address: body.address, tunnelPort: body.port });
    this.#o.log.info({ sessionId: session.id, relayed: `${body.address}:${body.port}` }, "the consumer is reached through a relay");
    // A relay replaced mid-session: the history's path follows.
    if (session.state === "active") this.emit("session-path", session);
    return {};
  }

  async #availability(dialog: Dialog, body: unknown): Promise<Availability> {
    this.#closeIfIdle(dialog);
    if (!check.availability.Check(body)) throw new SessionError("BAD_REQUEST", "service.availability needs {serviceType}");
    const { serviceType } = body;
    const service = this.#o.services.get(serviceType);
    if (!service || !this.#o.currentProposal(serviceType))
      return { serviceType, offered: false, refusal: "SERVICE_NOT_RUNNING", message: `this provider does not sell ${serviceType}` };
    if (!service.isRunning()) return { serviceType, offered: false, refusal: "SERVICE_NOT_RUNNING", message: `the ${serviceType} service is not running` };
    const controlled = await this.#o.availability?.(serviceType, dialog.peer);
    return { serviceType, ...(controlled ?? { offered: true, message: "offered" }) };
  }

  async #create(dialog: Dialog, body: unknown): Promise<CreateResponse> {
    const correlationId =
      typeof (body as { correlationId?: unknown })?.correlationId === "string" ? (body as { correlationId: string }).correlationId.slice(0, 64) : "";
    const refuse = (code: RefusalCode, message: string): CreateResponse => {
      this.#o.log.info({ consumer: dialog.peer, code, message }, "session refused");
      this.emit("session-refused", { consumer: dialog.peer, code, message });
      this.#closeIfIdle(dialog);
      return { refused: { code, message, correlationId } };
    };
    if (!check.create.Check(body)) return refuse("BAD_REQUEST", "session.create does not match the schema");
    let offered: Proposal;
    try {
      offered = parseSignedProposal(body.proposal).proposal;
    } catch (err) {
      return refuse("PROPOSAL_UNKNOWN", (err as Error).message);
    }
    const current = this.#o.currentProposal(offered.serviceType);
    const service = this.#o.services.get(offered.serviceType);
    if (!current || !service || !sameAddress(offered.provider, current.provider)) {
      return refuse("PROPOSAL_UNKNOWN", `this provider offers no ${offered.serviceType} proposal`);
    }
    if (proposalTerms(offered) !== proposalTerms(current)) {
      return refuse("PROPOSAL_CHANGED", "the proposal's terms have changed; fetch the current one");
    }
    if (!service.isRunning()) return refuse("SERVICE_NOT_RUNNING", `the ${offered.serviceType} service is not running`);
    // Slots are taken before the first await: creates arriving together cannot all pass the checks.
    const ofConsumer = this.#liveOf(dialog.peer) + (this.#admittingBy.get(dialog.peer) ?? 0);
    if (ofConsumer >= this.#o.maxSessionsPerConsumer) {
      return refuse("TOO_MANY_SESSIONS", `${dialog.peer} holds ${ofConsumer} sessions (accepted or active), the most one consumer may; end one first`);
    }
    if (this.liveCount + this.#admitting >= this.#o.maxSessions) return refuse("CAPACITY_REACHED", `${this.#o.maxSessions} sessions are running`);
    this.#admitting++;
    this.#admittingBy.set(dialog.peer, (this.#admittingBy.get(dialog.peer) ?? 0) + 1);
    try {
      return await this.#admit(dialog, body, offered, current, service, refuse);
    } finally {
      this.#admitting--;
      const left = (this.#admittingBy.get(dialog.peer) ?? 1) - 1;
      if (left > 0) this.#admittingBy.set(dialog.peer, left);
      else this.#admittingBy.delete(dialog.peer);
    }
  }

  async #admit(
    dialog: Dialog,
    body: CreateRequest,
    offered: Proposal,
    current: Proposal,
    service: ProviderService,
    refuse: (code: RefusalCode, message: string) => CreateResponse,
  ): Promise<CreateResponse> {
    if (body.maxPrice) {
      const tooDear = BigInt(current.price.perHour) > BigInt(body.maxPrice.perHour) || BigInt(current.price.perGiB) > BigInt(body.maxPrice.perGiB);
      if (tooDear) return refuse("PRICE_NOT_ACCEPTED", `the price (${current.price.perHour}/h, ${current.price.perGiB}/GiB) is above the consumer's limit`);
    }
    const admitted = await this.#o.admission?.({ consumer: dialog.peer, proposal: current });
    if (admitted) return refuse(admitted.code, admitted.message);

    const id = crypto.randomBytes(16).toString("hex");
    let serviceConfig: unknown;
    try {
      serviceConfig = await service.openSession({ id, consumer: dialog.peer, consumerData: body.consumerData });
    } catch (err) {
      // What the consumer sent the service is wrong (a relay's peers that are not the provider's): it is told what, in the service's own words.
      if ((err as MystError).code === "BAD_CONSUMER_DATA") return refuse("BAD_REQUEST", (err as Error).message.slice(0, 400));
      // It could not check (the registry is down): the consumer is told so, not that its request was bad.
      if ((err as MystError).code === "REGISTRY_UNAVAILABLE") return refuse("REGISTRY_UNAVAILABLE", (err as Error).message.slice(0, 400));
      this.#o.log.error({ err, consumer: dialog.peer }, "the service could not open a session");
      return refuse("SERVICE_FAILED", "the service could not open a session");
    }
    const prepared = body.direct
      ? await this.#o.direct?.prepare(service.tunnelPort).catch((err) => {
          this.#o.log.warn({ err: (err as Error).message }, "no direct channel for this session (the broker carries it)");
          return undefined;
        })
      : undefined;
    const now = Date.now();
    const session: ProviderSession = {
      id,
      consumer: dialog.peer,
      serviceType: offered.serviceType,
      proposal: current,
      state: "accepted",
      createdAt: now,
      lastSeen: now,
      dialog,
    };
    this.#sessions.set(id, session);
    dialog.onClose(() => void this.end(id, "dialog closed", { tellConsumer: false }));
    this.#o.log.info({ sessionId: id, consumer: dialog.peer, serviceType: offered.serviceType }, "session accepted");
    this.emit("session-accepted", session);
    if (prepared && body.direct) {
      const sprayFromTunnel = service.sprayFromTunnel?.bind(service);
      this.#punch(session, service, prepared.open(id, "provider", body.direct, { sprayFromTunnel }), body.direct.tunnelPort);
    }
    return {
      accepted: {
        sessionId: id,
        serviceConfig,
        keepaliveMs: this.#o.keepaliveMs,
        correlationId: body.correlationId,
        ...(prepared ? { direct: tunnelOffer(prepared.offer, service, this.#o.routerMaps) } : {}),
      },
    };
  }

  /**
   * Probes the consumer's candidates as soon as the answer is on its way (the consumer starts on
   * receiving it: both at once is the hole punch). Once up, the channel carries the session's
   * dialog, and the tunnel is told where the consumer's tunnel is, so its own packets go there.
   */
  #punch(session: ProviderSession, service: ProviderService, channel: DirectChannel, consumerTunnelPort: number | undefined): void {
    session.channel = channel;
    session.dialog.useTransport(channel);
    const [ended, relayed] = [() => session.state === "ended", () => session.relayed !== undefined];
    followDirectPath({ sessionId: session.id, ended, relayed, service, channel, consumerTunnelPort, log: this.#o.log });
    setImmediate(() =>
      channel.connect().catch((err) => this.#o.log.info({ sessionId: session.id, reason: (err as Error).message }, "no direct channel with the consumer")),
    );
  }

  async #confirm(dialog: Dialog, body: unknown): Promise<Record<string, never>> {
    if (!check.confirm.Check(body)) throw new SessionError("BAD_REQUEST", "session.confirm does not match the schema");
    const session = this.#own(dialog, body.sessionId);
    if (session.state !== "accepted") throw new SessionError("SESSION_STATE", `session is ${session.state}, not awaiting confirmation`);
    session.lastSeen = Date.now();
    if (!body.ok) {
      await this.end(session.id, `consumer failed to connect: ${body.reason}`, { tellConsumer: false });
      return {};
    }
    session.state = "active";
    session.confirmedAt = Date.now();
    if (body.path) session.tunnelPath = body.path;
    this.emit("session-active", session);
    return {};
  }

  async #keepalive(dialog: Dialog, body: unknown): Promise<Record<string, never>> {
    if (!check.ref.Check(body)) throw new SessionError("BAD_REQUEST", "session.keepalive does not match the schema");
    const session = this.#own(dialog, body.sessionId);
    if (session.state === "ended") throw new SessionError("SESSION_ENDED", `session ended: ${session.endReason}`);
    session.lastSeen = Date.now();
    return {};
  }

  async #destroy(dialog: Dialog, body: unknown): Promise<Record<string, never>> {
    if (!check.ref.Check(body)) throw new SessionError("BAD_REQUEST", "session.destroy does not match the schema");
    const session = this.#own(dialog, body.sessionId);
    await this.end(session.id, `consumer ended it${body.reason ? `: ${body.reason}` : ""}`, { tellConsumer: false });
    return {};
  }

  /** The session, if it belongs to the dialog's consumer: nobody touches another's session. */
  #own(dialog: Dialog, sessionId: string): ProviderSession {
    const session = this.#sessions.get(sessionId);
    if (!session || session.consumer !== dialog.peer) {
      throw new SessionError("SESSION_UNKNOWN", `no session ${sessionId} for ${dialog.peer}`);
    }
    return session;
  }

  async #sweep(): Promise<void> {
    const now = Date.now();
    const tolerance = this.#o.outageToleranceMs;
    if (this.#o.dialogs.connected) this.#outageSince = undefined;
    else {
      this.#outageSince ??= now;
      this.#quietUntil = now;
    }
    for (const s of this.#sessions.values()) {
      if (s.state === "accepted" && now - s.createdAt > this.#o.confirmTimeoutMs) {
        await this.end(s.id, "not confirmed in time");
      } else if (s.state === "active") {
        // The direct channel carries keepalives and payments: a broker outage does not touch the session.
        if (this.#outageSince !== undefined && !s.dialog.direct) {
          // No keepalive (and no payment) can arrive: the session lives on up to the tolerance.
          if (now - this.#outageSince > tolerance) await this.end(s.id, `broker unreachable for ${Math.round((now - this.#outageSince) / 1000)} s`);
          continue;
        }
        const silent = now - Math.max(s.lastSeen, this.#quietUntil);
        if (silent <= this.#o.keepaliveMs * this.#o.missedKeepalives) continue;
        // Its tunnel still connected: the consumer's own broker link may be down; give it the tolerance.
        if (silent <= tolerance && this.#o.services.get(s.serviceType)?.isConnected?.(s.id)) continue;
        await this.end(s.id, "consumer silent (no keepalive)");
      }
    }
  }
}
