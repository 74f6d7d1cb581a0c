import type { Db } from "./database";

/**
 * Bytes a provider moved per local calendar day (`YYYY-MM-DD`), over all its sessions and
 * services: what traffic caps are checked against. A month is the sum of its days, so changing the
 * day a month starts on needs no migration. Written as the meter reads it, so a restart loses at
 * most one reading.
 */
export class TrafficStore {
  readonly #add;
  readonly #sum;

  constructor(db: Db) {
    this.#add = db.prepare("INSERT INTO traffic_days (day, bytes) VALUES (?, ?) ON CONFLICT(day) DO UPDATE SET bytes = bytes + excluded.bytes");
    this.#sum = db.prepare("SELECT COALESCE(SUM(bytes), 0) AS bytes FROM traffic_days WHERE day >= ? AND day <= ?");
  }

  add(day: string, bytes: number): void {
    if (bytes > 0) this.#add.run(day, Math.round(bytes));
  }

  /** Bytes of the days from `first` to `last`, both included. */
  between(first: string, last: string): number {
    return (this.#sum.get(first, last) as { bytes: number }).bytes;
  }
}
