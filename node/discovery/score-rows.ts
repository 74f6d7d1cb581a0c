import { STAGES, type Stage } from "../quality/receipt";
import type { ScoreRow } from "../quality/score";

/** A receipt's id as two numbers: its first 52 bits (the row's `tie`) and the next 32. */
export interface RowId {
  hi: number;
  lo: number;
}

/** The id `receiptId` gave, in the form the table keeps (`hi` is also the row's `tie`). */
export function rowIdOf(id: string): RowId {
  return { hi: Number.parseInt(id.slice(0, 13), 16), lo: Number.parseInt(id.slice(13, 21), 16) };
}

const NONE = -1;
/** `#meta`: the stage's index + 1 in the low 3 bits (0: none failed), then whether it is paid. */
const STAGE_BITS = 7;
const PAID = 8;
/** A connect time this large or larger (or not a whole number) is kept in `#bigConnect`. */
const CONNECT_BIG = 0xffffffff;
/** The largest order number a row gets before the rows held are numbered again from 1. */
export const SEQ_LIMIT = 0xffffffff;

/**
 * The rows a replica scores from (score.ts ScoreRow), one per receipt or probe result it holds, in
 * columns of typed arrays (61 bytes a row, no object per receipt), chained per (provider, service
 * type) through `next`; the raw signed receipts stay in the store (JetStream's disk). The receipts'
 * ids (84 bits of each) sit in an open-addressed table: the replay check without a string per
 * receipt. Consumers are interned: a row holds a number. Each column is as narrow as its values
 * allow, exactly: the stage and the paid flag share a byte, a connect time is 32 bits (the rare one
 * that is not, past 49 days, kept apart), the order rows came in 32 bits (numbered again from 1 in
 * the rare case it would pass them).
 */
export class ScoreRows {
  #cap = 0;
  #at = new Float64Array(0);
  #hi = new Float64Array(0);
  #lo = new Uint32Array(0);
  #consumer = new Int32Array(0);
  #budget = new BigInt64Array(0);
  #draw = new BigInt64Array(0);
  #connect = new Uint32Array(0);
  /** Connect times that do not fit `#connect` (CONNECT_BIG there), by slot. */
  readonly #bigConnect = new Map<number, number>();
  #bandwidth = new Float64Array(0);
  /** The failed stage and the paid flag (STAGE_BITS, PAID). */
  #meta = new Uint8Array(0);
  #next = new Int32Array(0);
  /** The order rows were added in (what a stream's per-subject limit pushes out by). */
  #seq = new Uint32Array(0);
  #added = 0;
  readonly #seqLimit: number;
  #free = NONE;
  #end = 0;
  #size = 0;
  /** Open addressing: slot + 1, 0 empty, -1 a removed one. */
  #ids = new Int32Array(1024);
  #idsUsed = 0;
  readonly #consumers: string[] = [];
  readonly #consumerIds = new Map<string, number>();

  /** `seqLimit`: the largest order number before the held rows are numbered again (tests make it small). */
  constructor(seqLimit = SEQ_LIMIT) {
    this.#seqLimit = Math.min(seqLimit, SEQ_LIMIT);
  }

  get size(): number {
    return this.#size;
  }

  /** Adds a row in front of the chain that starts at `head`; returns its slot (the chain's new head). */
  add(row: ScoreRow, id: RowId, head: number): number {
    const slot = this.#slot();
    this.#at[slot] = row.at;
    this.#hi[slot] = id.hi;
    this.#lo[slot] = id.lo;
    this.#consumer[slot] = this.#intern(row.consumer);
    this.#budget[slot] = row.budgetWei;
    this.#draw[slot] = row.drawWei;
    const connect = row.connectMs;
    if (Number.isInteger(connect) && connect >= 0 && connect < CONNECT_BIG) this.#connect[slot] = connect;
    else {
      this.#connect[slot] = CONNECT_BIG;
      this.#bigConnect.set(slot, connect);
    }
    this.#bandwidth[slot] = row.bandwidthRatio ?? Number.NaN;
    this.#meta[slot] = (row.stage === null ? 0 : STAGES.indexOf(row.stage) + 1) | (row.paid ? PAID : 0);
    this.#next[slot] = head;
    if (this.#added >= this.#seqLimit) this.#renumber();
    this.#seq[slot] = ++this.#added;
    this.#size++;
    this.#idAdd(slot);
    return slot;
  }

  /** Removes `slot` from the chain starting at `head`; returns the chain's head after. */
  remove(slot: number, head: number): number {
    let after = head;
    if (head === slot) after = this.#next[slot];
    else
      for (let s = head; s !== NONE; s = this.#next[s])
        if (this.#next[s] === slot) {
          this.#next[s] = this.#next[slot];
          break;
        }
    this.#idRemove(slot);
    if (this.#connect[slot] === CONNECT_BIG) this.#bigConnect.delete(slot);
    this.#next[slot] = this.#free;
    this.#free = slot;
    this.#size--;
    return after;
  }

  has(id: RowId): boolean {
    return this.#find(id.hi, id.lo) >= 0;
  }

  /** The slots of a chain, newest first. */
  *chain(head: number): Generator<number> {
    for (let s = head; s !== NONE; s = this.#next[s]) yield s;
  }

  row(slot: number): ScoreRow {
    const bw = this.#bandwidth[slot];
    const meta = this.#meta[slot];
    const stage = meta & STAGE_BITS;
    const connect = this.#connect[slot];
    return {
      consumer: this.#consumers[this.#consumer[slot]],
      at: this.#at[slot],
      tie: this.#hi[slot],
      budgetWei: this.#budget[slot],
      drawWei: this.#draw[slot],
      paid: (meta & PAID) !== 0,
      stage: stage === 0 ? null : (STAGES[stage - 1] as Stage),
      connectMs: connect === CONNECT_BIG ? (this.#bigConnect.get(slot) as number) : connect,
      bandwidthRatio: Number.isNaN(bw) ? null : bw,
    };
  }

  at(slot: number): number {
    return this.#at[slot];
  }

  /** When the row was added, relative to the others (a larger number came later). */
  seq(slot: number): number {
    return this.#seq[slot];
  }

  consumerOf(slot: number): string {
    return this.#consumers[this.#consumer[slot]];
  }

  /** The rows of a chain (what the score is computed from). */
  rows(head: number): ScoreRow[] {
    const out: ScoreRow[] = [];
    for (let s = head; s !== NONE; s = this.#next[s]) out.push(this.row(s));
    return out;
  }

  /** The ids held in a chain, as "hi/lo" (to pick the raw records read back from the store). */
  idsOf(head: number): Set<string> {
    const out = new Set<string>();
    for (let s = head; s !== NONE; s = this.#next[s]) out.add(`${this.#hi[s]}/${this.#lo[s]}`);
    return out;
  }

  /**
   * Numbers the rows held again from 1, in the order they came (run when the next number would pass
   * the limit: once in 4 billion rows): the order `seq` compares stays the order rows were added in.
   */
  #renumber(): void {
    const live: number[] = [];
    for (const v of this.#ids) if (v > 0) live.push(v - 1);
    const seq = this.#seq;
    live.sort((a, b) => seq[a] - seq[b]);
    for (let i = 0; i < live.length; i++) seq[live[i]] = i + 1;
    this.#added = live.length;
  }

  #intern(consumer: string): number {
    let i = this.#consumerIds.get(consumer);
    if (i === undefined) {
      i = this.#consumers.push(consumer) - 1;
      this.#consumerIds.set(consumer, i);
    }
    return i;
  }

  #slot(): number {
    if (this.#free !== NONE) {
      const s = this.#free;
      this.#free = this.#next[s];
      return s;
    }
    if (this.#end === this.#cap) this.#grow(Math.max(1024, this.#cap * 2));
    return this.#end++;
  }

  #grow(cap: number): void {
    const to = <T extends { length: number; set(a: T): void }>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.#at = to(this.#at, (n) => new Float64Array(n));
    this.#hi = to(this.#hi, (n) => new Float64Array(n));
    this.#lo = to(this.#lo, (n) => new Uint32Array(n));
    this.#consumer = to(this.#consumer, (n) => new Int32Array(n));
    this.#budget = to(this.#budget, (n) => new BigInt64Array(n));
    this.#draw = to(this.#draw, (n) => new BigInt64Array(n));
    this.#connect = to(this.#connect, (n) => new Uint32Array(n));
    this.#bandwidth = to(this.#bandwidth, (n) => new Float64Array(n));
    this.#meta = to(this.#meta, (n) => new Uint8Array(n));
    this.#next = to(this.#next, (n) => new Int32Array(n));
    this.#seq = to(this.#seq, (n) => new Uint32Array(n));
    this.#cap = cap;
  }

  #home(hi: number, lo: number): number {
    return (Math.imul(lo ^ (hi % 0x100000000), 0x9e3779b1) >>> 0) & (this.#ids.length - 1);
  }

  #find(hi: number, lo: number): number {
    const mask = this.#ids.length - 1;
    for (let i = this.#home(hi, lo); ; i = (i + 1) & mask) {
      const v = this.#ids[i];
      if (v === 0) return NONE;
      if (v > 0 && this.#hi[v - 1] === hi && this.#lo[v - 1] === lo) return i;
    }
  }

  #idAdd(slot: number): void {
    if ((this.#idsUsed + 1) * 2 > this.#ids.length) this.#rehash(this.#size * 4 > this.#ids.length ? this.#ids.length * 2 : this.#ids.length);
    const mask = this.#ids.length - 1;
    let i = this.#home(this.#hi[slot], this.#lo[slot]);
    while (this.#ids[i] > 0) i = (i + 1) & mask;
    if (this.#ids[i] === 0) this.#idsUsed++;
    this.#ids[i] = slot + 1;
  }

  #idRemove(slot: number): void {
    const i = this.#find(this.#hi[slot], this.#lo[slot]);
    if (i >= 0 && this.#ids[i] === slot + 1) this.#ids[i] = -1;
  }

  /** A new table of `length` with the live ids only (removed ones dropped). */
  #rehash(length: number): void {
    const old = this.#ids;
    this.#ids = new Int32Array(length);
    this.#idsUsed = 0;
    const mask = length - 1;
    for (const v of old) {
      if (v <= 0) continue;
      let i = this.#home(this.#hi[v - 1], this.#lo[v - 1]);
      while (this.#ids[i] !== 0) i = (i + 1) & mask;
      this.#ids[i] = v;
      this.#idsUsed++;
    }
  }
}
