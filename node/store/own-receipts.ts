import type { Db } from "./database";
import { writing } from "./errors";

/** What a consumer's own receipts say of one provider recently. */
export interface OwnEvidence {
  successes: number;
  failures: number;
  /** The stage of the last failure, if the last receipt is one. */
  lastFailed: string | null;
}

/**
 * The session receipts this consumer signed (docs/quality.md), kept in its database: its own
 * evidence about providers, which it prefers to discovery's scores when it picks one.
 */
export class OwnReceipts {
  constructor(private readonly db: Db) {}

  save(r: { id: string; provider: string; serviceType: string; failed: string | null; at: number; signed: string }): void {
    writing(this.db, "recording a session receipt", () =>
      this.db
        .prepare("INSERT OR REPLACE INTO receipts (id, provider, service_type, failed, at, signed) VALUES (?, ?, ?, ?, ?, ?)")
        .run(r.id, r.provider.toLowerCase(), r.serviceType, r.failed, r.at, r.signed),
    );
  }

  /** This consumer's receipts about each of `providers` since `since` (ms). */
  evidence(serviceType: string, since: number): Map<string, OwnEvidence> {
    const rows = this.db.prepare("SELECT provider, failed FROM receipts WHERE service_type = ? AND at >= ? ORDER BY at").all(serviceType, since) as {
      provider: string;
      failed: string | null;
    }[];
    const out = new Map<string, OwnEvidence>();
    for (const row of rows) {
      let e = out.get(row.provider);
      if (!e) out.set(row.provider, (e = { successes: 0, failures: 0, lastFailed: null }));
      if (row.failed === null) e.successes++;
      else e.failures++;
      e.lastFailed = row.failed;
    }
    return out;
  }

  /** The signed receipts, newest first (the API's and the tests' view). */
  list(limit = 100): { provider: string; serviceType: string; failed: string | null; at: number; signed: string }[] {
    return this.db.prepare("SELECT provider, service_type AS serviceType, failed, at, signed FROM receipts ORDER BY at DESC LIMIT ?").all(limit) as {
      provider: string;
      serviceType: string;
      failed: string | null;
      at: number;
      signed: string;
    }[];
  }
}
