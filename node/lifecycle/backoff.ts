/**
 * The one backoff schedule of the node: the delay before retry `attempt` (1 for the first retry)
 * is `baseMs · 2^(attempt−1)`, at most `maxMs`; with `immediateFirst` the first retry goes at once.
 * Settlement, service supervision (openvpn, the tunnel resolver), reconnect and announcements
 * all retry on it, each deciding for itself what is worth retrying (a revert never is).
 */
export interface Backoff {
  baseMs: number;
  maxMs: number;
  immediateFirst?: boolean;
}

export function backoffMs(attempt: number, o: Backoff): number {
  if (attempt < 1) return 0;
  if (o.immediateFirst && attempt === 1) return 0;
  const exponent = Math.min(o.immediateFirst ? attempt - 2 : attempt - 1, 30);
  return Math.min(o.baseMs * 2 ** exponent, o.maxMs);
}
