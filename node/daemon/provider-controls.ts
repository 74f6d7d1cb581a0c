import { silentLogger, type Logger } from "../log/logger";
import type { ServicePolicy } from "../services/controls/service-policy";
import { capStatus, localDay, type TrafficCapStatus } from "../services/controls/traffic-cap";
import type { Admission, ProviderSessions } from "../session/provider";
import type { TrafficStore } from "../store/traffic-store";
import type { RefusalCode } from "../session/messages";

/** Why a service is not offered now. */
export type WithdrawnBecause = "TRAFFIC_CAP" | "OUTSIDE_SCHEDULE";

export interface ProviderControlsOptions {
  sessions: ProviderSessions;
  /** Where the node's traffic per day is kept (caps survive restarts); without it caps count from start. */
  traffic?: TrafficStore;
  /** Bytes a session moved so far (its service's meter). */
  usage: (sessionId: string) => { bytesIn: number; bytesOut: number } | undefined;
  /** Stop announcing a service's proposal (unregister it), and start again. */
  withdraw: (serviceType: string) => Promise<void>;
  offer: (serviceType: string) => void;
  /** The node's clock (tests move it). Default Date.now. */
  clock?: () => number;
  /** How often traffic is counted and the policies looked at. Default 1 s. */
  tickMs?: number;
  log?: Logger;
}

/** A service's controls now, as status, the API and metrics show them. */
export interface ControlsStatus {
  offered: boolean;
  withdrawnBecause?: WithdrawnBecause;
  trafficCap?: TrafficCapStatus;
  schedule?: { open: boolean; windows: string[]; nextChange?: string };
  access?: { policy: "open" | "allowlist" };
}

interface Controlled {
  policy: ServicePolicy;
  withdrawn?: WithdrawnBecause;
  /** Sessions told they will end (a cap), with their timers. */
  noticed: Map<string, NodeJS.Timeout>;
}

/**
 * Enforces each service's policy (node/services/controls/service-policy.ts) on the provider's
 * sessions: refuses sessions at admission (ACCESS_DENIED, OUTSIDE_SCHEDULE, TRAFFIC_CAP), counts the
 * node's traffic per local day into the store, withdraws a service's proposal while its cap is
 * reached or its schedule is closed (and offers it again when the period rolls over or the window
 * opens), ends running sessions at a window's close and after a notice at a cap, and ends sessions
 * of consumers an access list no longer admits.
 */
export class ProviderControls {
  readonly #o: ProviderControlsOptions;
  readonly #log: Logger;
  readonly #clock: () => number;
  readonly #services = new Map<string, Controlled>();
  /** Bytes of each live session already counted. */
  readonly #counted = new Map<string, number>();
  /** Traffic counted since start when there is no store (caps then hold until a restart). */
  readonly #memory = new Map<string, number>();
  #timer?: NodeJS.Timeout;
  #ticking = false;

  constructor(options: ProviderControlsOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.#clock = options.clock ?? Date.now;
    options.sessions.on("session-ended", (s) => {
      this.#count(s.id);
      this.#counted.delete(s.id);
      const c = this.#services.get(s.serviceType);
      const timer = c?.noticed.get(s.id);
      if (timer) clearTimeout(timer);
      c?.noticed.delete(s.id);
    });
  }

  /** The admission check ProviderSessions runs before a session is accepted. */
  readonly admission: Admission = async ({ consumer, proposal }) => this.#refusal(proposal.serviceType, consumer);

  /** Whether `consumer` could have a session of `type` now, and if not, why (what a consumer that finds no proposal is told). */
  async availability(type: string, consumer: string): Promise<{ offered: boolean; refusal?: RefusalCode; message: string }> {
    const refusal = this.#refusal(type, consumer);
    return refusal ? { offered: false, refusal: refusal.code, message: refusal.message } : { offered: true, message: "offered" };
  }

  #refusal(type: string, consumer: string): { code: RefusalCode; message: string } | null {
    const c = this.#services.get(type);
    if (!c) return null;
    const denied = c.policy.access?.refusal(consumer);
    if (denied) return { code: "ACCESS_DENIED", message: denied };
    const now = new Date(this.#clock());
    if (!c.policy.schedule.isOpen(now)) {
      const opens = c.policy.schedule.nextChange(now);
      return {
        code: "OUTSIDE_SCHEDULE",
        message: `the service is not offered at this time (its schedule is closed)${opens ? `; it opens again at ${opens.toISOString()}` : ""}`,
      };
    }
    const cap = this.#capStatus(c.policy, now);
    if (cap.reached) {
      const resetsAt = cap[cap.reached]!.resetsAt;
      return { code: "TRAFFIC_CAP", message: `the provider's ${cap.reached} traffic cap is reached; it sells again from ${resetsAt}` };
    }
    return null;
  }

  /** Controls a service by its policy (when the service is added). */
  add(type: string, policy: ServicePolicy): void {
    // Withdrawn from the start when its cap is reached or its schedule closed: never announced then.
    const controlled: Controlled = { policy, noticed: new Map(), withdrawn: this.#because(policy, new Date(this.#clock())) };
    this.#services.set(type, controlled);
    policy.onAccessChange(() => void this.#recheckAccess(type).catch((err) => this.#log.error({ err: (err as Error).message }, "access re-check failed")));
    policy.start();
  }

  /** Whether a service is offered now (its proposal announced). */
  offered(type: string): boolean {
    return this.#services.get(type)?.withdrawn === undefined;
  }

  remove(type: string): void {
    const c = this.#services.get(type);
    if (!c) return;
    c.policy.stop();
    for (const t of c.noticed.values()) clearTimeout(t);
    this.#services.delete(type);
  }

  status(type: string): ControlsStatus | undefined {
    const c = this.#services.get(type);
    if (!c) return undefined;
    const now = new Date(this.#clock());
    const next = c.policy.schedule.nextChange(now);
    return {
      offered: c.withdrawn === undefined,
      ...(c.withdrawn ? { withdrawnBecause: c.withdrawn } : {}),
      ...(c.policy.capped ? { trafficCap: this.#capStatus(c.policy, now) } : {}),
      ...(c.policy.schedule.always
        ? {}
        : {
            schedule: { open: c.policy.schedule.isOpen(now), windows: c.policy.settings.schedule ?? [], ...(next ? { nextChange: next.toISOString() } : {}) },
          }),
      ...(c.policy.access ? { access: { policy: c.policy.access.policy } } : {}),
    };
  }

  /** The node's traffic (all services, both directions) today and in the calendar month, bytes. */
  traffic(): { todayBytes: number; monthBytes: number } {
    const now = new Date(this.#clock());
    const today = localDay(now);
    return { todayBytes: this.#between(today, today), monthBytes: this.#between(localDay(new Date(now.getFullYear(), now.getMonth(), 1)), today) };
  }

  start(): void {
    this.#timer = setInterval(() => void this.tick(), this.#o.tickMs ?? 1000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    for (const s of this.#o.sessions.list()) this.#count(s.id);
    for (const type of [...this.#services.keys()]) this.remove(type);
  }

  /** Counts traffic and applies every policy now (the timer calls it; tests may too). */
  async tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      for (const s of this.#o.sessions.list()) if (s.state !== "ended") this.#count(s.id);
      for (const [type, c] of this.#services) await this.#apply(type, c);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, "applying the provider controls failed");
    } finally {
      this.#ticking = false;
    }
  }

  async #apply(type: string, c: Controlled): Promise<void> {
    const now = new Date(this.#clock());
    const because = this.#because(c.policy, now);
    const closed = because === "OUTSIDE_SCHEDULE";
    if (because && c.withdrawn === undefined) {
      c.withdrawn = because;
      this.#log.warn({ service: type, because }, "service withdrawn");
      await this.#o.withdraw(type);
    } else if (!because && c.withdrawn !== undefined) {
      this.#log.info({ service: type, was: c.withdrawn }, "service offered again");
      c.withdrawn = undefined;
      this.#o.offer(type);
    }
    if (!because) return;
    const live = this.#o.sessions.list().filter((s) => s.serviceType === type && s.state !== "ended");
    if (closed) {
      const reason = "the service's schedule closed";
      for (const s of live) this.#o.sessions.notice(s.id, reason, 0);
      await Promise.all(live.map((s) => this.#o.sessions.end(s.id, reason)));
      return;
    }
    const reason = `the provider's ${this.#capStatus(c.policy, now).reached} traffic cap is reached`;
    for (const s of live) {
      if (c.noticed.has(s.id)) continue;
      this.#o.sessions.notice(s.id, reason, c.policy.noticeMs);
      const timer = setTimeout(() => void this.#o.sessions.end(s.id, reason), c.policy.noticeMs);
      timer.unref();
      c.noticed.set(s.id, timer);
    }
  }

  #because(policy: ServicePolicy, now: Date): WithdrawnBecause | undefined {
    if (!policy.schedule.isOpen(now)) return "OUTSIDE_SCHEDULE";
    if (policy.capped && this.#capStatus(policy, now).reached) return "TRAFFIC_CAP";
    return undefined;
  }

  async #recheckAccess(type: string): Promise<void> {
    const c = this.#services.get(type);
    if (!c?.policy.access) return;
    for (const s of this.#o.sessions.list()) {
      if (s.serviceType !== type || s.state === "ended") continue;
      const refusal = c.policy.access.refusal(s.consumer);
      if (refusal) await this.#o.sessions.end(s.id, `access revoked: ${refusal}`);
    }
  }

  #count(sessionId: string): void {
    const u = this.#o.usage(sessionId);
    if (!u) return;
    const total = u.bytesIn + u.bytesOut;
    const delta = total - (this.#counted.get(sessionId) ?? 0);
    if (delta <= 0) return;
    this.#counted.set(sessionId, total);
    const day = localDay(new Date(this.#clock()));
    if (this.#o.traffic) this.#o.traffic.add(day, delta);
    else this.#memory.set(day, (this.#memory.get(day) ?? 0) + delta);
  }

  #between(first: string, last: string): number {
    if (this.#o.traffic) return this.#o.traffic.between(first, last);
    let sum = 0;
    for (const [day, bytes] of this.#memory) if (day >= first && day <= last) sum += bytes;
    return sum;
  }

  #capStatus(policy: ServicePolicy, now: Date): TrafficCapStatus {
    return capStatus(policy.cap, { between: (a, b) => this.#between(a, b) }, now);
  }
}
