/** Entries per chunk of a SortedEntries: a chunk splits at twice this, so an insert moves at most that many. */
const CHUNK = 256;

/** Slot → key (EntryTable.keys): what a set sorts by. */
export type Keys = readonly (string | undefined)[];

/**
 * Slots of an EntryTable sorted by their keys, in chunks of up to 2 × CHUNK (a sorted list of sorted
 * typed arrays, 4 bytes a slot): an insert or a delete is two binary searches and a move within one
 * chunk, whatever the size, where one flat array moved every later entry (tens of microseconds each
 * at 100k, on the thread that also ingests). A chunk's room doubles as it fills (small sets, such as
 * one provider's, stay small).
 */
export class SortedEntries {
  #chunks: Int32Array[] = [];
  /** Slots used in each chunk. */
  #lengths: number[] = [];
  #size = 0;

  constructor(private readonly keys: Keys) {}

  get size(): number {
    return this.#size;
  }

  /** Builds from slots already in key order (one pass, no search). */
  static fromSorted(keys: Keys, slots: ArrayLike<number>): SortedEntries {
    const s = new SortedEntries(keys);
    for (let i = 0; i < slots.length; i += CHUNK) {
      const n = Math.min(CHUNK, slots.length - i);
      const chunk = new Int32Array(n);
      for (let j = 0; j < n; j++) chunk[j] = slots[i + j];
      s.#chunks.push(chunk);
      s.#lengths.push(n);
    }
    s.#size = slots.length;
    return s;
  }

  /** Appends a slot whose key is above every key held (building in key order). */
  append(slot: number): void {
    const c = this.#chunks.length - 1;
    if (c >= 0 && this.#lengths[c] < CHUNK) this.#put(c, this.#lengths[c], slot);
    else {
      this.#chunks.push(new Int32Array(4));
      this.#lengths.push(0);
      this.#put(c + 1, 0, slot);
    }
    this.#size++;
  }

  insert(slot: number): void {
    const key = this.keys[slot] as string;
    if (this.#chunks.length === 0) {
      this.append(slot);
      return;
    }
    const c = Math.min(this.#chunkOf(key), this.#chunks.length - 1);
    const i = this.#lowerBound(c, key);
    if (i < this.#lengths[c] && this.#chunks[c][i] === slot) return;
    this.#put(c, i, slot);
    this.#size++;
    const n = this.#lengths[c];
    if (n >= 2 * CHUNK) {
      const chunk = this.#chunks[c];
      this.#chunks.splice(c + 1, 0, chunk.slice(CHUNK, n));
      this.#lengths.splice(c + 1, 0, n - CHUNK);
      this.#lengths[c] = CHUNK;
    }
  }

  delete(slot: number): void {
    const key = this.keys[slot] as string;
    const c = this.#chunkOf(key);
    if (c >= this.#chunks.length) return;
    const chunk = this.#chunks[c];
    const i = this.#lowerBound(c, key);
    const n = this.#lengths[c];
    if (i >= n || chunk[i] !== slot) return;
    chunk.copyWithin(i, i + 1, n);
    this.#lengths[c] = n - 1;
    this.#size--;
    if (n === 1) {
      this.#chunks.splice(c, 1);
      this.#lengths.splice(c, 1);
    }
  }

  /** Every slot, in key order. */
  *[Symbol.iterator](): Iterator<number> {
    for (let c = 0; c < this.#chunks.length; c++) {
      const chunk = this.#chunks[c];
      for (let i = 0; i < this.#lengths[c]; i++) yield chunk[i];
    }
  }

  /** The slots after the key `cursor` (all of them without one), in key order. */
  *after(cursor: string | undefined): Generator<number> {
    let c = 0;
    let i = 0;
    if (cursor !== undefined) {
      c = this.#chunkOf(cursor);
      if (c < this.#chunks.length) i = this.#upperBound(c, cursor);
    }
    for (; c < this.#chunks.length; c++, i = 0) {
      const chunk = this.#chunks[c];
      const n = this.#lengths[c];
      for (; i < n; i++) yield chunk[i];
    }
  }

  /** Puts `slot` at position `i` of chunk `c`, moving the later ones up (the chunk's room doubles when full). */
  #put(c: number, i: number, slot: number): void {
    let chunk = this.#chunks[c];
    const n = this.#lengths[c];
    if (n === chunk.length) {
      const grown = new Int32Array(Math.max(4, n * 2));
      grown.set(chunk);
      this.#chunks[c] = chunk = grown;
    }
    chunk.copyWithin(i + 1, i, n);
    chunk[i] = slot;
    this.#lengths[c] = n + 1;
  }

  /** The first chunk whose last key is at or above `key` (the chunk count when none is). */
  #chunkOf(key: string): number {
    let lo = 0;
    let hi = this.#chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.keys[this.#chunks[mid][this.#lengths[mid] - 1]] as string) < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #lowerBound(c: number, key: string): number {
    const chunk = this.#chunks[c];
    let lo = 0;
    let hi = this.#lengths[c];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.keys[chunk[mid]] as string) < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #upperBound(c: number, key: string): number {
    const chunk = this.#chunks[c];
    let lo = 0;
    let hi = this.#lengths[c];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.keys[chunk[mid]] as string) <= key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** A walk over the slots that hold every match of a filter, in key order from a cursor. */
export interface Candidates {
  /** How many slots the walk may visit (the smallest walk is taken). */
  size: number;
  after(cursor: string | undefined): Iterator<number>;
}

export function walk(s: SortedEntries): Candidates {
  return { size: s.size, after: (cursor) => s.after(cursor) };
}

/** Several key-ordered buckets walked as one, in key order (a merge: a price filter takes every band up to its price). */
export function merged(keys: Keys, sets: SortedEntries[]): Candidates {
  return {
    size: sets.reduce((n, s) => n + s.size, 0),
    *after(cursor) {
      const walks = sets.map((s) => s.after(cursor));
      const heads = walks.map((w) => w.next());
      for (;;) {
        let best = -1;
        for (let k = 0; k < heads.length; k++) {
          const h = heads[k];
          if (!h.done && (best === -1 || (keys[h.value] as string) < (keys[heads[best].value as number] as string))) best = k;
        }
        if (best === -1) return;
        yield heads[best].value as number;
        heads[best] = walks[best].next();
      }
    },
  };
}
