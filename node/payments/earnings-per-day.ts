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
 * Earnings per calendar day in one time zone, fed promise by promise (oldest first), so a reader
 * that follows the promise store adds only what is new. Each promise pays for the time since the
 * session's previous promise (or since the session started): its increase is spread over that
 * interval in proportion to the time that fell on each day, so a session that runs over midnight
 * is credited to both days, not to the day it started. Amounts stay exact: each increase's parts
 * add up to it.
 */
export class DailyEarnings {
  readonly #offset: number;
  readonly #totals = new Map<number, bigint>();
  readonly #previous = new Map<string, number>();

  constructor(readonly utcOffsetMinutes: number) {
    this.#offset = utcOffsetMinutes * 60_000;
  }

  /** Adds promises received after every one added before; `startOf` says when a session started. */
  add(increases: EarnedIncrease[], startOf: (sessionId: string) => number | undefined): void {
    for (const p of increases) {
      const from = Math.min(this.#previous.get(p.sessionId) ?? startOf(p.sessionId) ?? p.receivedAt, p.receivedAt);
      this.#previous.set(p.sessionId, p.receivedAt);
      if (p.increase <= 0n) continue;
      const last = this.#dayOf(p.receivedAt);
      const span = p.receivedAt - from;
      let given = 0n;
      for (let day = span === 0 ? last : this.#dayOf(from); day <= last; day++) {
        const start = Math.max(from, day * DAY_MS - this.#offset);
        const end = Math.min(p.receivedAt, (day + 1) * DAY_MS - this.#offset);
        // The last day takes the remainder, so rounding loses no wei.
        const part = day === last ? p.increase - given : (p.increase * BigInt(end - start)) / BigInt(span);
        given += part;
        this.#totals.set(day, (this.#totals.get(day) ?? 0n) + part);
      }
    }
  }

  /** The last `days` days up to `now`, oldest first, days without earnings as 0. */
  days(days: number, now: number): DayEarnings[] {
    const lastDay = this.#dayOf(now);
    const out: DayEarnings[] = [];
    for (let day = lastDay - days + 1; day <= lastDay; day++) {
      out.push({ date: new Date(day * DAY_MS).toISOString().slice(0, 10), earnedWei: (this.#totals.get(day) ?? 0n).toString() });
    }
    return out;
  }

  /** Forgets days before `before` (ms) and sessions whose last promise came before it. */
  prune(before: number): void {
    const first = this.#dayOf(before);
    for (const day of this.#totals.keys()) if (day < first) this.#totals.delete(day);
    for (const [session, at] of this.#previous) if (at < before) this.#previous.delete(session);
  }

  #dayOf(t: number): number {
    return Math.floor((t + this.#offset) / DAY_MS);
  }
}

/** Earnings per calendar day of a list of promises (see DailyEarnings), the last `days` days up to `now`. */
export function earningsPerDay(
  increases: EarnedIncrease[],
  sessionStarts: ReadonlyMap<string, number>,
  options: { days: number; now: number; utcOffsetMinutes: number },
): DayEarnings[] {
  const daily = new DailyEarnings(options.utcOffsetMinutes);
  daily.add(
    [...increases].sort((a, b) => a.receivedAt - b.receivedAt),
    (id) => sessionStarts.get(id),
  );
  return daily.days(options.days, options.now);
}
