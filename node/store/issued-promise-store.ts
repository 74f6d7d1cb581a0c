import type { Db } from "./database";

/** A promise the consumer signed: the latest per pair is its whole debt to that provider. `pairId` is pairIdOf(consumer, provider), kept in the `channel_id` column. */
export interface IssuedPromise {
  pairId: string;
  consumer: string;
  provider: string;
  amount: bigint;
  signature: string;
  issuedAt: number;
}

/**
 * The consumer's record of what it has promised, per provider (`issued_promises`). A promise is
 * written here before it is sent, so after any crash the consumer still knows the cumulative
 * figure the provider may hold, and its next session continues from it instead of from zero.
 */
export class IssuedPromiseStore {
  constructor(private readonly db: Db) {}

  /** Records `p` if it is above the pair's stored one (a lower one never replaces it). */
  save(p: IssuedPromise): void {
    this.db
      .prepare(
        `INSERT INTO issued_promises (channel_id, consumer, provider, amount, signature, issued_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (channel_id) DO UPDATE SET amount = excluded.amount, signature = excluded.signature, issued_at = excluded.issued_at
         WHERE excluded.amount > issued_promises.amount`,
      )
      .run(p.pairId, p.consumer, p.provider, p.amount.toString().padStart(78, "0"), p.signature, p.issuedAt);
  }

  latest(pairId: string): IssuedPromise | undefined {
    const r = this.db.prepare("SELECT * FROM issued_promises WHERE channel_id = ?").get(pairId) as
      | { channel_id: string; consumer: string; provider: string; amount: string; signature: string; issued_at: number }
      | undefined;
    return r && { pairId: r.channel_id, consumer: r.consumer, provider: r.provider, amount: BigInt(r.amount), signature: r.signature, issuedAt: r.issued_at };
  }
}
