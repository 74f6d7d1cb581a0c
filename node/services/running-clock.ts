/** How often the clock looks at the event loop, ms. */
const TICK_MS = 10;
/** Lateness of a tick below this is scheduling noise, not a stall. */
const SLACK_MS = 15;

/**
 * A clock for the consumer's stage checks that counts only the time this process could run
 * (docs/quality.md "Measured on the consumer's own time"). A check that measures a provider (a
 * deadline for a first byte, a quarter-second throughput test) must not charge the provider for the
 * consumer's own stalls: on a loaded machine the node's event loop is held for hundreds of ms (other
 * work, garbage collection, a starved CPU), the bytes wait in the socket meanwhile, and a wall clock
 * would count the wait as the provider's slowness. Measured in the fleet test under load: a 1.5 s
 * stall of the consumer's loop let a 2 s deadline pass with a third of the bytes delivered, and a
 * 0.3 s one halved a working provider's measured rate; both were judged at `throughput`.
 *
 * It ticks every 10 ms while started; a tick later than 10 + 15 ms marks the excess as a stall.
 * `running(t)` is the wall time since `t` less the stalls since then (the one still going included).
 */
export class RunningClock {
  #last = 0;
  #timer?: NodeJS.Timeout;
  /** Stalls seen, as [from, to] wall times. */
  readonly #stalls: [number, number][] = [];
  readonly #deadlines = new Set<{ from: number; ms: number; maxWallMs: number; fire: () => void }>();

  start(): this {
    this.#last = Date.now();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#deadlines.clear();
  }

  /** ms this process could run since wall time `from`. */
  running(from: number, now = Date.now()): number {
    return Math.max(0, now - from - this.stalledSince(from, now));
  }

  /** ms of stalls since wall time `from`, the one still going (a late tick not yet run) included. */
  stalledSince(from: number, now = Date.now()): number {
    let stalled = 0;
    for (const [a, b] of this.#stalls) stalled += Math.max(0, Math.min(b, now) - Math.max(a, from));
    const open = now - this.#last - TICK_MS;
    if (open > SLACK_MS) stalled += Math.max(0, now - Math.max(this.#last + TICK_MS, from));
    return stalled;
  }

  /**
   * Calls `fire` once `ms` of running time have passed since now, or `maxWallMs` of wall time (a
   * process starved for good still ends its check). Returns its cancel.
   */
  after(ms: number, fire: () => void, maxWallMs = ms * 3): () => void {
    const d = { from: Date.now(), ms, maxWallMs, fire };
    this.#deadlines.add(d);
    return () => this.#deadlines.delete(d);
  }

  #tick(): void {
    const now = Date.now();
    if (now - this.#last - TICK_MS > SLACK_MS) this.#stalls.push([this.#last + TICK_MS, now]);
    this.#last = now;
    for (const d of this.#deadlines)
      if (this.running(d.from, now) >= d.ms || now - d.from >= d.maxWallMs) {
        this.#deadlines.delete(d);
        d.fire();
      }
  }
}
