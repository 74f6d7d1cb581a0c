/**
 * The ids of every message accepted inside the time window, per sender, kept until the message's
 * own timestamp leaves the window (`ts + windowMs`: from then on the time check refuses it anyway).
 * Nothing live is ever evicted, whatever anyone sends: a sender that has `perPeer` live ids has
 * its next messages refused (`full`) until some of them expire, and past `total` live ids (all
 * senders together) every new message is refused the same way. Replay protection thus depends on
 * time alone, never on how many messages an attacker sends; a flood costs the flooder its own
 * messages, not anyone else's protection.
 */
export type ReplayVerdict = "fresh" | "replayed" | "full";

export interface ReplayCacheOptions {
  /** How far a message's timestamp may be from the receiver's clock (the dialogs' time window). */
  windowMs: number;
  /** Live ids one sender may have. Default 10,000 (over a minute's window: ~160 messages/s). */
  perPeer?: number;
  /** Live ids of all senders together. Default 1,000,000 (about 150 MB at most). */
  total?: number;
}

export class ReplayCache {
  /** Per sender: id → until when it is kept (ms since the epoch). */
  readonly #seen = new Map<string, Map<string, number>>();
  /** Per sender that was found full: no id of it expires before this time, so it need not be swept again. */
  readonly #fullUntil = new Map<string, number>();
  #size = 0;
  #nextTotalSweep = 0;
  readonly windowMs: number;
  readonly perPeer: number;
  readonly total: number;

  constructor(o: ReplayCacheOptions) {
    this.windowMs = o.windowMs;
    this.perPeer = o.perPeer ?? 10_000;
    this.total = o.total ?? 1_000_000;
  }

  /**
   * Records `id` from `peer`, whose message is timestamped `ts` (already checked to be inside the
   * window). `replayed`: seen and still live; `full`: the sender (or the cache) has no room for a
   * new live id, so the message is refused rather than an id forgotten.
   */
  remember(peer: string, id: string, ts: number, now = Date.now()): ReplayVerdict {
    let ids = this.#seen.get(peer);
    const until = ids?.get(id);
    if (until !== undefined && until > now) return "replayed";
    // The time check accepts the message while |now - ts| <= windowMs: kept one ms past that.
    const keepUntil = ts + this.windowMs + 1;
    if (until !== undefined) {
      // Its old entry expired (unswept): the slot is reused.
      ids!.set(id, keepUntil);
      return "fresh";
    }
    if (ids && ids.size >= this.perPeer && !this.#sweepPeer(peer, ids, now)) return "full";
    if (this.#size >= this.total) {
      // At most one full sweep a second while the cache is full: a flood must not buy one per message.
      if (now >= this.#nextTotalSweep) {
        this.#nextTotalSweep = now + 1000;
        this.sweep(now);
      }
      if (this.#size >= this.total) return "full";
    }
    if (!ids) this.#seen.set(peer, (ids = new Map()));
    ids.set(id, keepUntil);
    this.#size++;
    return "fresh";
  }

  /** Live ids (and expired ones not yet swept). */
  get size(): number {
    return this.#size;
  }

  /** Drops every expired id; run periodically so idle senders' ids do not linger. */
  sweep(now = Date.now()): void {
    for (const [peer, ids] of this.#seen) {
      this.#sweepPeer(peer, ids, now);
      if (ids.size === 0) {
        this.#seen.delete(peer);
        this.#fullUntil.delete(peer);
      }
    }
  }

  /** Drops `peer`'s expired ids; true when it has room for one more. */
  #sweepPeer(peer: string, ids: Map<string, number>, now: number): boolean {
    // A full sender that keeps sending would otherwise cost a sweep of all its ids per message.
    const fullUntil = this.#fullUntil.get(peer);
    if (fullUntil !== undefined && now < fullUntil && ids.size >= this.perPeer) return false;
    let earliest = Number.POSITIVE_INFINITY;
    for (const [id, until] of ids) {
      if (until <= now) {
        ids.delete(id);
        this.#size--;
      } else if (until < earliest) earliest = until;
    }
    if (ids.size < this.perPeer) {
      this.#fullUntil.delete(peer);
      return true;
    }
    this.#fullUntil.set(peer, earliest);
    return false;
  }
}
