import type { Connection } from "../../daemon/consumer-node";
import type { NodeCore } from "../../daemon/core";
import type { MystError } from "../../errors/MystError";
import { AbortError, retry } from "../../lifecycle/retry";
import { RECONNECT_ATTEMPTS, reconnectDelayMs, type ReconnectStatus } from "../../session/reconnect";
import type { SessionProtection } from "../../session/service";
import type { WantedConnection } from "./request";

/**
 * The reconnect of a connection whose session ended by itself: a new session (the same provider
 * first, then the next match for the same filters) while the kill switch holds, a bounded number of
 * times; a disconnect or stop cuts it short.
 */
export class Reconnector {
  /** The reconnect in progress, or the last one of this connection. */
  status?: ReconnectStatus;
  /** Set while a reconnect runs. */
  running?: Promise<void>;
  /** Cuts a reconnect's wait short (disconnect, stop). */
  #wake?: () => void;

  constructor(
    private readonly core: NodeCore,
    private readonly o: { isWanted: (w: WantedConnection) => boolean; watch: (c: Connection, w: WantedConnection) => void },
  ) {}

  start(last: Connection, wanted: WantedConnection, reason: string): void {
    this.running = this.#after(last, wanted, reason)
      .catch((err) => this.core.log.error({ err: (err as Error).message }, "reconnecting failed"))
      .finally(() => (this.running = undefined));
  }

  /** A reconnect in progress stops (its attempt finishes first). */
  async cancel(): Promise<void> {
    this.#wake?.();
    await this.running;
  }

  async #after(last: Connection, wanted: WantedConnection, reason: string): Promise<void> {
    const { log, metrics } = this.core;
    const status: ReconnectStatus = { state: "reconnecting", attempts: 0, maxAttempts: RECONNECT_ATTEMPTS, since: new Date().toISOString(), lastError: reason };
    this.status = status;
    log.warn({ sessionId: last.session.id, reason }, "session ended by itself: reconnecting while the kill switch holds");
    // Between sessions nothing passes, not even to the provider that just went away.
    if (wanted.protection) await wanted.protection.block();
    // A failed attempt must leave the kill switch blocking, not lift it as a failed first connect does.
    const holding: SessionProtection | undefined = wanted.protection && {
      prepare: () => wanted.protection!.prepare(),
      discard: () => wanted.protection!.discard(),
      engage: (plan) => wanted.protection!.engage(plan),
      tunnelUp: (tunnel) => wanted.protection!.tunnelUp(tunnel),
      abandon: () => wanted.protection!.block(),
      holds: () => wanted.protection!.holds(),
      admit: (endpoints) => wanted.protection!.admit(endpoints),
      withdraw: (endpoints) => wanted.protection!.withdraw(endpoints),
      retire: (endpoints) => wanted.protection!.retire(endpoints),
    };
    // A disconnect or stop cuts the waits short and ends the retrying.
    const stop = new AbortController();
    this.#wake = () => stop.abort();
    const nextAttemptIn = (attempt: number) => (status.nextAttemptAt = new Date(Date.now() + reconnectDelayMs(attempt)).toISOString());
    let failed: string[] = [];
    let provider: string | undefined;
    try {
      nextAttemptIn(1);
      if (!(await pause(reconnectDelayMs(1), stop.signal)) || !this.o.isWanted(wanted)) return;
      const { consumer } = this.core.online();
      const { filter } = wanted.request;
      const connection = await retry(
        async (attempt) => {
          if (!this.o.isWanted(wanted)) throw new AbortError("disconnected");
          status.attempts = attempt;
          delete status.nextAttemptAt;
          // The same provider first (it may be back), then the cheapest other match for the same filters.
          provider = wanted.request.provider;
          provider ??= failed.includes(last.session.provider)
            ? (await consumer.pick({ filter, service: wanted.service, exclude: failed })).proposal.provider
            : last.session.provider;
          return consumer.connect({ provider, filter, service: wanted.service, protection: holding, viaRelay: wanted.request.viaRelay });
        },
        {
          attempts: RECONNECT_ATTEMPTS,
          baseMs: reconnectDelayMs(2),
          maxMs: reconnectDelayMs(RECONNECT_ATTEMPTS),
          signal: stop.signal,
          onFailure: (err, attempt) => {
            const code = (err as MystError).code ?? "INTERNAL";
            status.lastError = `${code}: ${(err as Error).message}`;
            metrics.error("reconnect", code);
            log.warn({ attempt, of: RECONNECT_ATTEMPTS, provider, code, err: (err as Error).message }, "reconnect attempt failed");
            if (code === "NO_PROPOSAL") failed = [];
            else if (provider && !failed.includes(provider)) failed.push(provider);
            if (attempt < RECONNECT_ATTEMPTS) nextAttemptIn(attempt + 1);
          },
        },
      );
      if (!this.o.isWanted(wanted)) {
        // Disconnected while this attempt ran: the disconnect lifts the protection once this returns.
        await connection.session.destroy("consumer disconnected");
        return;
      }
      Object.assign(status, { state: "connected", provider: connection.session.provider });
      metrics.connected(connection);
      log.info({ sessionId: connection.session.id, provider: connection.session.provider, attempt: status.attempts }, "reconnected");
      this.o.watch(connection, wanted);
    } catch {
      if (stop.signal.aborted || !this.o.isWanted(wanted)) return;
      status.state = "gave-up";
      delete status.nextAttemptAt;
      log.error({ attempts: RECONNECT_ATTEMPTS }, "gave up reconnecting: traffic stays blocked by the kill switch until `myst disconnect`");
    } finally {
      this.#wake = undefined;
    }
  }
}

/** Waits `ms`; false when a disconnect or stop cut the wait short. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const timer = setTimeout(() => resolve(true), ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve(false)), { once: true });
  });
}
