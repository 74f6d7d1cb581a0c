import type { Duplex } from "node:stream";

/**
 * A token bucket: `rate` bytes a second, at most `burst` saved up. `take(n)` spends n bytes and
 * says how long to wait before the next spend (it may go into debt: a chunk already read is sent).
 */
export class TokenBucket {
  #tokens: number;
  readonly #clock: () => number;
  #at: number;
  readonly #burst: number;

  /** `clock`: milliseconds (tests give their own; a loaded machine's wall clock moves between two calls). */
  constructor(
    readonly rate: number,
    clock: () => number = Date.now,
  ) {
    this.#clock = clock;
    this.#at = clock();
    // 20 ms of the rate, at least one large chunk.
    this.#burst = Math.max(64 * 1024, rate / 50);
    this.#tokens = this.#burst;
  }

  take(bytes: number): number {
    const now = this.#clock();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.rate);
    this.#at = now;
    this.#tokens -= bytes;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.rate) * 1000);
  }
}

/** Mbit/s to a bucket (none for 0 or absent: no limit). */
export function bucketFor(mbps: number | undefined, clock?: () => number): TokenBucket | undefined {
  return mbps && mbps > 0 ? new TokenBucket((mbps * 1e6) / 8, clock) : undefined;
}

/**
 * Copies `from` into `to`, counting each chunk and holding the source back while the destination
 * is full or a bucket is in debt. Ends `to` when `from` ends.
 */
export function pump(from: Duplex, to: Duplex, count: (bytes: number) => void, buckets: (TokenBucket | undefined)[] = []): void {
  const limited = buckets.filter((b): b is TokenBucket => !!b);
  let waiting = 0;
  const resume = () => {
    if (--waiting === 0 && !from.destroyed) from.resume();
  };
  const hold = () => {
    if (waiting++ === 0) from.pause();
  };
  from.on("data", (chunk: Buffer) => {
    count(chunk.length);
    if (!to.write(chunk)) {
      hold();
      to.once("drain", resume);
    }
    const delay = limited.reduce((d, b) => Math.max(d, b.take(chunk.length)), 0);
    if (delay > 0) {
      hold();
      setTimeout(resume, delay);
    }
  });
  from.once("end", () => to.end());
}
