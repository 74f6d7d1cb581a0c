import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { formatUnits } from "ethers";
import type { Dialogs } from "../dialog/dialogs";
import type { ProviderSession } from "../session/provider";
import type { Connection } from "./consumer-node";
import type { ProviderNode } from "./provider-node";

type Role = "provider" | "consumer";
type Direction = "in" | "out";
const myst = (wei: bigint) => Number(formatUnits(wei, 18));

/**
 * The node's Prometheus metrics: sessions, bytes, promises, settlements and errors, for both
 * roles, read from the events of the running parts. Served by the daemon's API at `/metrics`.
 */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly #started = new Counter({
    name: "myst_sessions_started_total",
    help: "sessions started, by role and service type",
    labelNames: ["role", "service_type"],
    registers: [this.registry],
  });
  readonly #ended = new Counter({
    name: "myst_sessions_ended_total",
    help: "sessions ended, by role and service type",
    labelNames: ["role", "service_type"],
    registers: [this.registry],
  });
  readonly #promises = new Counter({
    name: "myst_promises_total",
    help: "payment promises: received and accepted or rejected (provider), issued and acknowledged (consumer)",
    labelNames: ["role", "result"],
    registers: [this.registry],
  });
  readonly #promised = new Counter({
    name: "myst_promised_myst_total",
    help: "MYST promised: to this provider, or by this consumer",
    labelNames: ["role"],
    registers: [this.registry],
  });
  readonly #settlements = new Counter({
    name: "myst_settlements_total",
    help: "settlement attempts by result (mined; failed, retried; rejected by the chain, not retried)",
    labelNames: ["result"],
    registers: [this.registry],
  });
  readonly #settled = new Counter({ name: "myst_settled_myst_total", help: "MYST paid out to the beneficiary by settlements", registers: [this.registry] });
  readonly #settleGas = new Counter({ name: "myst_settlement_gas_total", help: "gas used by mined settlements", registers: [this.registry] });
  readonly #errors = new Counter({
    name: "myst_errors_total",
    help: "errors by where they happened and their code",
    labelNames: ["source", "code"],
    registers: [this.registry],
  });
  /** Bytes of sessions that have ended, per role and direction; live sessions are added when scraped. */
  readonly #endedBytes: Record<Role, Record<Direction, number>> = { provider: { in: 0, out: 0 }, consumer: { in: 0, out: 0 } };
  readonly #reportedBytes: Record<Role, Record<Direction, number>> = { provider: { in: 0, out: 0 }, consumer: { in: 0, out: 0 } };
  #provider?: ProviderNode;
  #connection?: () => Connection | undefined;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "myst_" });
    const self = this;
    new Gauge({
      name: "myst_sessions_active",
      help: "sessions running now, by role",
      labelNames: ["role"],
      registers: [this.registry],
      collect() {
        this.set({ role: "provider" }, self.#provider?.sessions.liveCount ?? 0);
        this.set({ role: "consumer" }, self.#connection?.()?.session.state === "active" ? 1 : 0);
      },
    });
    new Gauge({
      name: "myst_provider_traffic_bytes",
      help: "bytes the provider moved (all services, both directions) in the current local day and calendar month: what traffic caps count",
      labelNames: ["period"],
      registers: [this.registry],
      collect() {
        const t = self.#provider?.controls.traffic();
        if (!t) return;
        this.set({ period: "day" }, t.todayBytes);
        this.set({ period: "month" }, t.monthBytes);
      },
    });
    new Gauge({
      name: "myst_provider_cap_remaining_bytes",
      help: "traffic a service's cap still allows in its period, by service type and period (daily, monthly)",
      labelNames: ["service_type", "period"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of self.#provider?.selling() ?? []) {
          for (const period of ["daily", "monthly"] as const) {
            const u = s.controls?.trafficCap?.[period];
            if (u) this.set({ service_type: s.type, period }, u.remainingBytes);
          }
        }
      },
    });
    new Gauge({
      name: "myst_provider_service_offered",
      help: "1 while a service is announced, 0 while withdrawn (traffic cap reached, outside its schedule), by service type and reason",
      labelNames: ["service_type", "withdrawn_because"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of self.#provider?.selling() ?? []) {
          this.set({ service_type: s.type, withdrawn_because: s.controls?.withdrawnBecause ?? "" }, s.controls?.offered === false ? 0 : 1);
        }
      },
    });
    new Gauge({
      name: "myst_settlements_pending",
      help: "pairs (consumer, provider) whose latest promise is not settled yet, by state (queued, submitted, retrying, waiting-top-up, rejected)",
      labelNames: ["state"],
      registers: [this.registry],
      collect() {
        const counts: Record<string, number> = { queued: 0, submitted: 0, retrying: 0, "waiting-top-up": 0, rejected: 0 };
        for (const p of self.#provider?.settler.pending() ?? []) counts[p.state]++;
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    new Counter({
      name: "myst_session_bytes_total",
      help: "bytes moved through sessions, by role and direction (as each side's meter counts them)",
      labelNames: ["role", "direction"],
      registers: [this.registry],
      collect() {
        for (const role of ["provider", "consumer"] as const) {
          const live = self.#liveBytes(role);
          for (const direction of ["in", "out"] as const) {
            const total = self.#endedBytes[role][direction] + live[direction];
            // Counters only go up; a live meter read lower than its last reading adds nothing.
            const step = Math.max(0, total - self.#reportedBytes[role][direction]);
            this.inc({ role, direction }, step);
            self.#reportedBytes[role][direction] += step;
          }
        }
      },
    });
  }

  /** Counts an error the node answered or logged (API requests, refusals, drops, failed settlements). */
  error(source: string, code: string): void {
    this.#errors.inc({ source, code });
  }

  watchProvider(node: ProviderNode): void {
    this.#provider = node;
    node.sessions.on("session-accepted", (s: ProviderSession) => this.#started.inc({ role: "provider", service_type: s.serviceType }));
    node.sessions.on("session-ended", (s: ProviderSession) => {
      this.#ended.inc({ role: "provider", service_type: s.serviceType });
      const usage = node.usage(s.id);
      if (usage) this.#addEnded("provider", usage);
    });
    node.sessions.on("session-refused", (r: { code: string }) => this.error("session", r.code));
    node.payments?.on("promise-accepted", (p: { increase: bigint }) => {
      this.#promises.inc({ role: "provider", result: "accepted" });
      this.#promised.inc({ role: "provider" }, myst(p.increase));
    });
    node.payments?.on("promise-rejected", (p: { code: string }) => {
      this.#promises.inc({ role: "provider", result: "rejected" });
      this.error("payment", p.code);
    });
    node.settler?.on("settled", (s: { paid: bigint; gasUsed: bigint }) => {
      this.#settlements.inc({ result: "mined" });
      this.#settled.inc(myst(s.paid));
      this.#settleGas.inc(Number(s.gasUsed));
    });
    node.settler?.on("settlement-rejected", () => {
      this.#settlements.inc({ result: "rejected" });
      this.error("settlement", "SETTLEMENT_REJECTED");
    });
    node.settler?.on("settlement-failed", () => {
      this.#settlements.inc({ result: "failed" });
      this.error("settlement", "SETTLEMENT_FAILED");
    });
    this.watchDialogs(node.dialogs);
  }

  watchDialogs(dialogs: Dialogs): void {
    dialogs.on("dropped", (d) => this.error("dialog", d.reason));
  }

  /** Follows the consumer's connection (the getter gives the current one, if any). */
  watchConsumer(current: () => Connection | undefined): void {
    this.#connection = current;
  }

  /** Counts a new consumer connection and its payments. */
  connected(c: Connection): void {
    const serviceType = c.proposal.proposal.serviceType;
    this.#started.inc({ role: "consumer", service_type: serviceType });
    c.payments?.on("promise-issued", (p: { increase: bigint }) => {
      this.#promises.inc({ role: "consumer", result: "issued" });
      this.#promised.inc({ role: "consumer" }, myst(p.increase));
    });
    void c.session.ended.then(() => {
      this.#ended.inc({ role: "consumer", service_type: serviceType });
      this.#addEnded("consumer", c.session.tunnel.stats());
    });
  }

  #addEnded(role: Role, usage: { bytesIn: number; bytesOut: number }): void {
    this.#endedBytes[role].in += usage.bytesIn;
    this.#endedBytes[role].out += usage.bytesOut;
  }

  #liveBytes(role: Role): Record<Direction, number> {
    const sum = { in: 0, out: 0 };
    if (role === "provider" && this.#provider) {
      for (const s of this.#provider.sessions.list()) {
        if (s.state === "ended") continue;
        const u = this.#provider.usage(s.id);
        if (u) (sum.in += u.bytesIn), (sum.out += u.bytesOut);
      }
    }
    const c = this.#connection?.();
    if (role === "consumer" && c && c.session.state === "active") {
      const u = c.session.tunnel.stats();
      (sum.in += u.bytesIn), (sum.out += u.bytesOut);
    }
    return sum;
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
