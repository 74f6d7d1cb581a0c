import { ControlsError } from "./errors";

/**
 * When a service is offered: windows in the node's local time, each on some days of the week.
 * Written as the operator types them: `mon-fri 08:00-22:00`, `sat,sun 10:00-14:00`,
 * `daily 22:00-06:00` (a window whose end is before its start runs past midnight into the next
 * day), `24:00` allowed as an end.
 */
export interface ScheduleWindow {
  /** Days the window opens on, 0 = Sunday … 6 = Saturday. */
  days: number[];
  /** Minutes after local midnight. */
  start: number;
  end: number;
}

const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const WINDOW = /^\s*([a-z,*-]+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$/;

function parseDays(text: string, spec: string): number[] {
  if (text === "daily" || text === "*") return [0, 1, 2, 3, 4, 5, 6];
  if (text === "weekdays") return [1, 2, 3, 4, 5];
  if (text === "weekends") return [0, 6];
  const days = new Set<number>();
  for (const part of text.split(",")) {
    const [a, b] = part.split("-");
    const from = DAYS.indexOf(a);
    const to = b === undefined ? from : DAYS.indexOf(b);
    if (from < 0 || to < 0)
      throw new ControlsError("BAD_SCHEDULE", `schedule "${spec}": "${part}" is not a day (mon … sun, a range like mon-fri, daily, weekdays, weekends)`);
    // A range may wrap the week: fri-mon.
    for (let d = from; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === to) break;
    }
  }
  return [...days].sort();
}

/** One window from its text; a ControlsError names what is wrong. */
export function parseWindow(spec: string): ScheduleWindow {
  const m = WINDOW.exec(spec.toLowerCase());
  if (!m) throw new ControlsError("BAD_SCHEDULE", `schedule "${spec}" is not "<days> HH:MM-HH:MM" (e.g. "mon-fri 08:00-22:00")`);
  const [, days, h1, m1, h2, m2] = m;
  const minutes = (h: string, mm: string, isEnd: boolean) => {
    const v = Number(h) * 60 + Number(mm);
    if (Number(mm) > 59 || v > (isEnd ? 1440 : 1439)) throw new ControlsError("BAD_SCHEDULE", `schedule "${spec}": ${h}:${mm} is not a time of day`);
    return v;
  };
  const start = minutes(h1, m1, false);
  const end = minutes(h2, m2, true);
  if (start === end) throw new ControlsError("BAD_SCHEDULE", `schedule "${spec}" opens and closes at the same minute`);
  return { days: parseDays(days, spec), start, end };
}

/** A set of windows; no windows means always open. */
export class Schedule {
  readonly windows: ScheduleWindow[];

  constructor(specs: string[] = []) {
    this.windows = specs.map(parseWindow);
  }

  get always(): boolean {
    return this.windows.length === 0;
  }

  /** Whether the service is offered at `at` (the node's local time). */
  isOpen(at: Date): boolean {
    if (this.always) return true;
    const day = at.getDay();
    const minute = at.getHours() * 60 + at.getMinutes();
    return this.windows.some((w) =>
      w.start < w.end
        ? w.days.includes(day) && minute >= w.start && minute < w.end
        : (w.days.includes(day) && minute >= w.start) || (w.days.includes((day + 6) % 7) && minute < w.end),
    );
  }

  /** When the state at `at` next changes (open ↔ closed), searched minute by minute for a week; undefined if never. */
  nextChange(at: Date): Date | undefined {
    if (this.always) return undefined;
    const open = this.isOpen(at);
    const t = new Date(at);
    t.setSeconds(0, 0);
    for (let i = 0; i < 7 * 1440; i++) {
      t.setMinutes(t.getMinutes() + 1);
      if (this.isOpen(t) !== open) return new Date(t);
    }
    return undefined;
  }
}
