import { retryDelayMs } from "../lifecycle/retry";

/**
 * `--reconnect`: when a session ends by itself (tunnel down, provider silent or gone), the node
 * negotiates a new one — the same provider first, then the cheapest other match for the same
 * filters — while the kill switch holds. Bounded: `RECONNECT_ATTEMPTS` attempts, waiting
 * `reconnectDelayMs(n)` before attempt n (1 s, 2 s, 4 s, 8 s, 16 s: about 31 s in all), then it
 * gives up and the kill switch keeps blocking until `myst disconnect`.
 */
export const RECONNECT_ATTEMPTS = 5;

export function reconnectDelayMs(attempt: number): number {
  return retryDelayMs(attempt, { baseMs: 1000, maxMs: 16_000 });
}

/** What `myst status` and `GET /v1/connection` show of the current (or last) reconnect. */
export interface ReconnectStatus {
  /** `reconnecting`: between sessions, the kill switch holding; `connected`: a new session is up; `gave-up`: blocked until disconnect. */
  state: "reconnecting" | "connected" | "gave-up";
  /** Attempts made so far in this reconnect. */
  attempts: number;
  maxAttempts: number;
  /** When the session that started this reconnect ended. */
  since: string;
  /** Why the last session ended, then why the last attempt failed. */
  lastError: string;
  /** When the next attempt starts (while waiting). */
  nextAttemptAt?: string;
  /** The provider of the new session, once connected. */
  provider?: string;
}
