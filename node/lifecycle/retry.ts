// p-retry is ESM-only; Node 20 can require() it (its namespace: default and AbortError).
const { default: pRetry, AbortError } = require("p-retry") as typeof import("p-retry");

/** The node's one backoff schedule: `baseMs`, doubling, at most `maxMs`, no jitter (predictable for status and tests). */
export interface Backoff {
  baseMs: number;
  maxMs: number;
}

/** How long `retry` waits after failed attempt `attempt` (1-based) before the next one. */
export function retryDelayMs(attempt: number, o: Backoff): number {
  if (attempt < 1) return 0;
  return Math.min(o.baseMs * 2 ** Math.min(attempt - 1, 30), o.maxMs);
}

export interface RetryOptions extends Backoff {
  /** Attempts in all, the first included (`Number.POSITIVE_INFINITY`: until it succeeds or `signal` stops it). */
  attempts: number;
  /** Stops the waiting between attempts (and the retrying): a disconnect, a stop. */
  signal?: AbortSignal;
  /** Whether a failure may succeed if tried again; what never can (a revert, a bad request) is not retried. Default: all. */
  retryable?: (error: unknown) => boolean;
  /** Told of every failed attempt (1-based), before the wait for the next one; `willRetry`: whether one follows. */
  onFailure?: (error: unknown, attempt: number, willRetry: boolean) => void;
}

/**
 * Runs `attempt` until it succeeds, waiting `retryDelayMs` between tries, at most `attempts` times;
 * rejects with the last failure, at once with one that is not `retryable`, or when `signal` aborts.
 * The one retry helper, on p-retry: the reconnect loop, the announcer, the supervisors of the
 * tunnel processes and each pair of the settlement queue retry through it.
 */
export function retry<T>(attempt: (n: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const retryable = (err: unknown) => (o.retryable ? o.retryable(err) : true);
  return pRetry(
    async (n) => {
      try {
        return await attempt(n);
      } catch (err) {
        // p-retry gives up on TypeErrors (and non-errors) by itself; here `retryable` decides.
        throw err instanceof TypeError || !(err instanceof Error) ? new Carried(err) : err;
      }
    },
    {
      retries: Math.max(0, o.attempts - 1),
      factor: 2,
      minTimeout: o.baseMs,
      maxTimeout: o.maxMs,
      randomize: false,
      signal: o.signal,
      onFailedAttempt: ({ error, attemptNumber }) => o.onFailure?.(unwrap(error), attemptNumber, retryable(unwrap(error)) && attemptNumber < o.attempts),
      shouldRetry: ({ error }) => retryable(unwrap(error)),
      // A wait between attempts does not keep the process alive.
      unref: true,
    },
  ).catch((err: unknown) => {
    throw unwrap(err);
  });
}

/** A failure p-retry would not retry by itself, carried through it to `retryable`. */
class Carried extends Error {
  constructor(readonly failure: unknown) {
    super(failure instanceof Error ? failure.message : String(failure));
  }
}

const unwrap = (err: unknown): unknown => (err instanceof Carried ? err.failure : err);

export { AbortError };
