import { writing } from "./errors";
import type { Db } from "./database";

export interface StoredPromise {
  /** pairIdOf(consumer, provider), kept in the `channel_id` column (named when pairs had channels). */
  pairId: string;
  consumer: string;
  provider: string;
  sessionId: string;
  /** The pair's cumulative amount, across sessions. */
  amount: bigint;
  /** How much this promise adds to the pair's previous one (what its session earned by it). */
  increase: bigint;
  signature: string;
  receivedAt: number;
}

export interface Settlement {
  pairId: string;
  amount: bigint;
  txHash: string | null;
  paid: bigint | null;
  /** The relayer's fee out of `paid` (MYST wei), when settled through a relayer. */
  fee: bigint | null;
  status: "pending" | "mined" | "failed";
  error: string | null;
  at: number;
}

/**
 * Promises a provider received and what it settled. `save` returns only once the promise is on
 * disk; the latest promise per pair is the one worth settling.
 */
export class PromiseStore {
  constructor(private readonly db: Db) {}

  /** Throws a StoreError (STORE_FULL, STORE_READ_ONLY, STORE_FAILED) when the disk cannot take it. */
  save(p: StoredPromise): void {
    writing(this.db, "storing a promise", () =>
      this.db
        .prepare(
          "INSERT OR IGNORE INTO promises (channel_id, consumer, provider, session_id, amount, increase, signature, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .run(p.pairId, p.consumer, p.provider, p.sessionId, p.amount.toString().padStart(78, "0"), p.increase.toString(), p.signature, p.receivedAt),
    );
  }

  latest(pairId: string): StoredPromise | undefined {
    const row = this.db.prepare("SELECT * FROM promises WHERE channel_id = ? ORDER BY amount DESC LIMIT 1").get(pairId) as Row | undefined;
    return row && fromRow(row);
  }

  /** The latest promise of every pair. */
  latestPerPair(): StoredPromise[] {
    const rows = this.db
      .prepare(
        "SELECT p.* FROM promises p JOIN (SELECT channel_id, MAX(amount) amount FROM promises GROUP BY channel_id) m ON p.channel_id = m.channel_id AND p.amount = m.amount",
      )
      .all() as Row[];
    return rows.map(fromRow);
  }

  /** The highest amount a mined settlement covered for the pair. */
  settledAmount(pairId: string): bigint {
    const row = this.db.prepare("SELECT MAX(amount) a FROM settlements WHERE channel_id = ? AND status = 'mined'").get(pairId) as { a: string | null };
    return row.a ? BigInt(row.a) : 0n;
  }

  recordSettlement(s: Omit<Settlement, "at">): void {
    writing(this.db, "recording a settlement", () =>
      this.db
        .prepare("INSERT INTO settlements (channel_id, amount, tx_hash, paid, fee, status, error, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .run(s.pairId, s.amount.toString().padStart(78, "0"), s.txHash, s.paid?.toString() ?? null, s.fee?.toString() ?? null, s.status, s.error, Date.now()),
    );
  }

  settlements(): Settlement[] {
    return (this.db.prepare("SELECT * FROM settlements ORDER BY at").all() as SettlementRow[]).map((r) => ({
      pairId: r.channel_id,
      amount: BigInt(r.amount),
      txHash: r.tx_hash,
      paid: r.paid === null ? null : BigInt(r.paid),
      fee: r.fee === null ? null : BigInt(r.fee),
      status: r.status as Settlement["status"],
      error: r.error,
      at: r.at,
    }));
  }

  /** Per session: what its promises added to its pair (its own earnings, not the pair's total). */
  earningsBySession(): { sessionId: string; consumer: string; pairId: string; promised: bigint }[] {
    const rows = this.db.prepare("SELECT session_id, consumer, channel_id, increase FROM promises ORDER BY rowid").all() as {
      session_id: string;
      consumer: string;
      channel_id: string;
      increase: string;
    }[];
    const bySession = new Map<string, { sessionId: string; consumer: string; pairId: string; promised: bigint }>();
    for (const r of rows) {
      const entry = bySession.get(r.session_id) ?? { sessionId: r.session_id, consumer: r.consumer, pairId: r.channel_id, promised: 0n };
      entry.promised += BigInt(r.increase);
      bySession.set(r.session_id, entry);
    }
    return [...bySession.values()];
  }

  /** Changes whenever a promise or a settlement is stored: readers recompute only then. */
  version(): { lastPromise: number; settlements: number } {
    const r = this.db.prepare("SELECT IFNULL(MAX(rowid), 0) p, (SELECT COUNT(*) FROM settlements) s FROM promises").get() as { p: number; s: number };
    return { lastPromise: r.p, settlements: r.s };
  }

  /**
   * Promises stored after the one with `rowid` (0: all) and received since `since` (ms), in the order
   * they were stored: a reader keeps running sums and asks only for what is new.
   */
  increasesAfter(rowid: number, since = 0): { rowid: number; sessionId: string; receivedAt: number; increase: bigint }[] {
    const rows = this.db
      .prepare("SELECT rowid, session_id, received_at, increase FROM promises WHERE rowid > ? AND received_at >= ? ORDER BY rowid")
      .all(rowid, since) as { rowid: number; session_id: string; received_at: number; increase: string }[];
    return rows.map((r) => ({ rowid: r.rowid, sessionId: r.session_id, receivedAt: r.received_at, increase: BigInt(r.increase) }));
  }

  /** What one session's promises added to its pair. */
  sessionAmount(sessionId: string): bigint {
    const rows = this.db.prepare("SELECT increase FROM promises WHERE session_id = ?").all(sessionId) as { increase: string }[];
    return rows.reduce((sum, r) => sum + BigInt(r.increase), 0n);
  }
}

interface Row {
  channel_id: string;
  consumer: string;
  provider: string;
  session_id: string;
  amount: string;
  increase: string;
  signature: string;
  received_at: number;
}
interface SettlementRow {
  channel_id: string;
  amount: string;
  tx_hash: string | null;
  paid: string | null;
  fee: string | null;
  status: string;
  error: string | null;
  at: number;
}

function fromRow(r: Row): StoredPromise {
  return {
    pairId: r.channel_id,
    consumer: r.consumer,
    provider: r.provider,
    sessionId: r.session_id,
    amount: BigInt(r.amount),
    increase: BigInt(r.increase),
    signature: r.signature,
    receivedAt: r.received_at,
  };
}
