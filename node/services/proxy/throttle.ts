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
 * How much of one direction of a stream `pump` lets wait unsent in its destination before it pauses
 * the source. A stream's own mark (16 KiB) paused the source after every 64 KiB read: profiled on
 * loopback, the provider then read, wrote one TLS write and paused and resumed its destination socket
 * (four epoll_ctl calls) per 64 KiB; with this it writes about 512 KiB at a time (docs/proxy.md
 * "Measured", s9).
 */
export const PUMP_BUFFER = 1024 * 1024;

/**
 * Copies `from` into `to`, holding the source back while PUMP_BUFFER waits unsent in `to` or a bucket
 * is in debt. Each chunk is counted once `to` has sent all of it (its write's callback: for an HTTP/2
 * stream, once framed within the flow-control windows), not while it waits here, so what the provider
 * has counted and the consumer has not yet received stays within the windows
 * (ProxyTunnel.inFlightBytes). Ends `to` when `from` ends.
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
    const bytes = chunk.length;
    // A write that returned false is owed a "drain"; one that fails (the stream gone) is not counted.
    const full =
      !to.write(chunk, (err) => {
        if (!err) count(bytes);
      }) && to.writableLength >= PUMP_BUFFER;
    if (full) {
      hold();
      to.once("drain", resume);
    }
    const delay = limited.reduce((d, b) => Math.max(d, b.take(bytes)), 0);
    if (delay > 0) {
      hold();
      setTimeout(resume, delay);
    }
  });
  from.once("end", () => to.end());
}
