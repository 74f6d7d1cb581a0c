import type { TrafficStore } from "../../store/traffic-store";
import { CONTROLS_DEFAULTS } from "../../config/defaults";
import { ControlsError } from "./errors";

export const GIB = 1024 ** 3;

/** Traffic caps as the operator sets them (GiB may be fractional: 0.5 is 512 MiB). */
export interface TrafficCapSettings {
  dailyGiB?: number;
  monthlyGiB?: number;
  /** The day of the month a monthly period starts, 1–28. Default 1. */
  monthStartDay?: number;
}

export type CapPeriod = "daily" | "monthly";

/** One cap's state now. */
export interface CapUsage {
  capBytes: number;
  usedBytes: number;
  remainingBytes: number;
  /** When the period rolls over (ISO time). */
  resetsAt: string;
}

export interface TrafficCapStatus {
  daily?: CapUsage;
  monthly?: CapUsage;
  /** The first cap reached, if any. */
  reached: CapPeriod | null;
}

export function checkTrafficCap(s: TrafficCapSettings): TrafficCapSettings {
  for (const [name, v] of [
    ["dailyGiB", s.dailyGiB],
    ["monthlyGiB", s.monthlyGiB],
  ] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new ControlsError("BAD_TRAFFIC_CAP", `${name} must be a positive number of GiB, not ${v}`);
  }
  const d = s.monthStartDay;
  if (d !== undefined && !(Number.isInteger(d) && d >= 1 && d <= 28)) throw new ControlsError("BAD_TRAFFIC_CAP", `monthStartDay must be a day 1–28, not ${d}`);
  return s;
}

/** `YYYY-MM-DD` of a local date. */
export function localDay(at: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${at.getFullYear()}-${p(at.getMonth() + 1)}-${p(at.getDate())}`;
}

/** The local start of the monthly period `at` falls in, and of the next one. */
export function monthPeriod(at: Date, startDay = 1): { start: Date; next: Date } {
  let start = new Date(at.getFullYear(), at.getMonth(), startDay);
  if (at < start) start = new Date(at.getFullYear(), at.getMonth() - 1, startDay);
  return { start, next: new Date(start.getFullYear(), start.getMonth() + 1, startDay) };
}

/** How much of the caps the node's traffic (in the store) has used at `at`. */
export function capStatus(settings: TrafficCapSettings, store: Pick<TrafficStore, "between">, at: Date): TrafficCapStatus {
  const today = localDay(at);
  const status: TrafficCapStatus = { reached: null };
  const usage = (capGiB: number, used: number, resetsAt: Date): CapUsage => {
    const capBytes = Math.round(capGiB * GIB);
    return { capBytes, usedBytes: used, remainingBytes: Math.max(0, capBytes - used), resetsAt: resetsAt.toISOString() };
  };
  if (settings.dailyGiB !== undefined) {
    status.daily = usage(settings.dailyGiB, store.between(today, today), new Date(at.getFullYear(), at.getMonth(), at.getDate() + 1));
    if (status.daily.remainingBytes === 0) status.reached = "daily";
  }
  if (settings.monthlyGiB !== undefined) {
    const { start, next } = monthPeriod(at, settings.monthStartDay ?? CONTROLS_DEFAULTS.monthStartDay);
    status.monthly = usage(settings.monthlyGiB, store.between(localDay(start), today), next);
    if (status.monthly.remainingBytes === 0) status.reached ??= "monthly";
  }
  return status;
}
