/** One stored promise's increase over the channel's previous one, and when it arrived. */
export interface EarnedIncrease {
  sessionId: string;
  /** ms since the epoch */
  receivedAt: number;
  increase: bigint;
}

/** Earnings of one calendar day (in the caller's time zone offset). */
export interface DayEarnings {
  /** YYYY-MM-DD */
  date: string;
  earnedWei: string;
}

const DAY_MS = 86_400_000;

/**
 * Earnings per calendar day, oldest first, the last `days` days up to `now` (days without
 * earnings included, as 0). Each promise pays for the time since the session's previous promise
 * (or since the session started): its increase is spread over that interval in proportion to the
 * time that fell on each day, so a session that runs over midnight is credited to both days, not
 * to the day it started. Amounts stay exact: each increase's parts add up to it.
 */
export function earningsPerDay(
  increases: EarnedIncrease[],
  sessionStarts: ReadonlyMap<string, number>,
  options: { days: number; now: number; utcOffsetMinutes: number },
): DayEarnings[] {
  const offset = options.utcOffsetMinutes * 60_000;
  const dayOf = (t: number) => Math.floor((t + offset) / DAY_MS);
  const lastDay = dayOf(options.now);
  const firstDay = lastDay - options.days + 1;
  const totals = new Map<number, bigint>();
  const add = (day: number, wei: bigint) => {
    if (day >= firstDay && day <= lastDay) totals.set(day, (totals.get(day) ?? 0n) + wei);
  };
  const previous = new Map<string, number>();
  for (const p of [...increases].sort((a, b) => a.receivedAt - b.receivedAt)) {
    const from = Math.min(previous.get(p.sessionId) ?? sessionStarts.get(p.sessionId) ?? p.receivedAt, p.receivedAt);
    previous.set(p.sessionId, p.receivedAt);
    if (p.increase <= 0n) continue;
    const span = p.receivedAt - from;
    if (span === 0) {
      add(dayOf(p.receivedAt), p.increase);
      continue;
    }
    let given = 0n;
    for (let day = dayOf(from); day <= dayOf(p.receivedAt); day++) {
      const start = Math.max(from, day * DAY_MS - offset);
      const end = Math.min(p.receivedAt, (day + 1) * DAY_MS - offset);
      // The last day takes the remainder, so rounding loses no wei.
      const part = day === dayOf(p.receivedAt) ? p.increase - given : (p.increase * BigInt(end - start)) / BigInt(span);
      given += part;
      add(day, part);
    }
  }
  const out: DayEarnings[] = [];
  for (let day = firstDay; day <= lastDay; day++) {
    out.push({ date: new Date(day * DAY_MS).toISOString().slice(0, 10), earnedWei: (totals.get(day) ?? 0n).toString() });
  }
  return out;
}
