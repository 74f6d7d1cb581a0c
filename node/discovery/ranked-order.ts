import type { ProposalFilter } from "../proposal/filter";
import { ALLOWLIST, type EntryTable, IPV6, LISTED } from "./index-entry";

/**
 * Listed keys in a ranked order (`ProposalIndex.rankedOrder`): slot, the slot's generation then (a slot
 * reused for another key since is skipped), its score (NaN: unrated) and rank. Typed arrays only: 24
 * bytes a listed key, no string or object per key (a whole order is a few array buffers).
 */
export interface RankedOrder {
  readonly slots: Int32Array;
  readonly generations: Uint32Array;
  readonly scores: Float64Array;
  /** What each is ranked by (its score, or the neutral rank when unrated). */
  readonly ranks: Float64Array;
}

type Rate = (provider: string, serviceType: string) => { rank: number; score: number | null };

/** The keys of an order's slots as the table holds them now (undefined where a slot was reused): tests, the bench. */
export function keysOf(t: EntryTable, order: RankedOrder): (string | undefined)[] {
  return Array.from(order.slots, (s, i) => (t.generationOf(s) === order.generations[i] ? t.keys[s] : undefined));
}

/**
 * Every listed slot (`listed`, in key order) ranked by `rate` (higher rank first, ties in key order),
 * with its score: the order a query sorted by quality walks. Made in full only at the first ranked
 * query or when too much changed at once; otherwise `rerankedOrderOf` moves what changed.
 */
export function rankedOrderOf(t: EntryTable, listed: Iterable<number> & { readonly size: number }, rate: Rate): RankedOrder {
  const n = listed.size;
  const inKeyOrder = new Int32Array(n);
  const ranks = new Float64Array(n);
  const scoreOf = new Float64Array(n);
  let i = 0;
  for (const e of listed) {
    const key = t.keys[e] as string;
    const r = rate(key.slice(0, 42), key.slice(43));
    inKeyOrder[i] = e;
    ranks[i] = r.rank;
    scoreOf[i++] = r.score ?? Number.NaN;
  }
  const by = byRank(ranks);
  const out = emptyOrder(n);
  for (let j = 0; j < n; j++) {
    const at = by[j];
    out.slots[j] = inKeyOrder[at];
    out.generations[j] = t.generationOf(inKeyOrder[at]);
    out.scores[j] = scoreOf[at];
    out.ranks[j] = ranks[at];
  }
  return out;
}

function emptyOrder(n: number): RankedOrder {
  return { slots: new Int32Array(n), generations: new Uint32Array(n), scores: new Float64Array(n), ranks: new Float64Array(n) };
}

/** Marks of slots to move (by slot number), reused between re-ranks: no set of strings per re-rank. */
let marks = new Uint8Array(0);

/**
 * `order` with the slots in `changed` (listed now: their score changed, or they were listed since)
 * taken out and put back at their new rank (`rate`), and the slots no longer listed (or reused for
 * another key) dropped, merged in one pass over typed arrays: what keeping the order costs when a few
 * scores or listings changed. The result is the order `rankedOrderOf` would make: rank, then key.
 */
export function rerankedOrderOf(t: EntryTable, order: RankedOrder, changed: Iterable<number>, rate: Rate): RankedOrder {
  if (marks.length < t.keys.length) marks = new Uint8Array(Math.max(1024, t.keys.length * 2));
  const back: { slot: number; key: string; rank: number; score: number }[] = [];
  for (const e of changed) {
    const key = t.keys[e];
    if (key === undefined || marks[e] === 1 || !t.has(e, LISTED)) continue;
    marks[e] = 1;
    const r = rate(key.slice(0, 42), key.slice(43));
    back.push({ slot: e, key, rank: r.rank, score: r.score ?? Number.NaN });
  }
  back.sort((a, b) => b.rank - a.rank || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const backRanks = Float64Array.from(back, (b) => b.rank);
  const nBack = back.length;
  const old = order.slots.length;
  const out = emptyOrder(old + back.length);

  const slots = order.slots;
  const generations = order.generations;
  const ranks = order.ranks;
  const flags = t.flags;
  const now = t.generations;
  let i = 0;
  let j = 0;
  let n = 0;
  for (;;) {
    // Skip what moved, was unlisted, or whose slot another key took (typed arrays only: no call per slot).
    while (i < old && (marks[slots[i]] !== 0 || (flags[slots[i]] & LISTED) === 0 || now[slots[i]] !== generations[i])) i++;
    if (i === old && j === nBack) break;
    // (back[j] is read only below its length: an out-of-bounds read sends V8 down its slow path.)
    const fromOld = j === nBack || (i < old && (ranks[i] > backRanks[j] || (ranks[i] === backRanks[j] && (t.keys[slots[i]] as string) < back[j].key)));
    if (fromOld) {
      out.slots[n] = slots[i];
      out.generations[n] = generations[i];
      out.scores[n] = order.scores[i];
      out.ranks[n++] = ranks[i++];
    } else {
      const b = back[j++];
      out.slots[n] = b.slot;
      out.generations[n] = now[b.slot];
      out.scores[n] = b.score;
      out.ranks[n++] = b.rank;
    }
  }
  for (const b of back) marks[b.slot] = 0;
  // Views of the first n (the moved ones were counted twice in the room made): no copy.
  return n === out.slots.length
    ? out
    : { slots: out.slots.subarray(0, n), generations: out.generations.subarray(0, n), scores: out.scores.subarray(0, n), ranks: out.ranks.subarray(0, n) };
}

/** Positions sorted by rank, higher first; equal ranks keep key order (the position breaks the tie). */
function byRank(ranks: Float64Array): Int32Array {
  const n = ranks.length;
  const by = new Int32Array(n);
  // Scores are whole tenths from 0 to 100: rank and position packed in one number, sorted natively
  // (no comparator call per step: about ten times faster at 100k proposals).
  const packed = new Float64Array(n);
  let tenths = n < POSITIONS;
  for (let j = 0; j < n && tenths; j++) {
    const t = Math.round(ranks[j] * 10);
    tenths = t >= 0 && t <= 1000 && Math.abs(t - ranks[j] * 10) < 1e-6;
    packed[j] = (1000 - t) * POSITIONS + j;
  }
  if (tenths) {
    packed.sort();
    for (let j = 0; j < n; j++) by[j] = packed[j] % POSITIONS;
    return by;
  }
  for (let j = 0; j < n; j++) by[j] = j;
  return by.sort((a, b) => ranks[b] - ranks[a] || a - b);
}

const POSITIONS = 2 ** 22;

/**
 * Up to `limit` live proposals of a ranked order that match `filter` and whose score `keep` takes,
 * the first `offset` of them skipped; `more` when another follows. A key that left the index since
 * the order was made is skipped (a slot reused by another key is not served in its place).
 */
export function rankedPageOf(
  t: EntryTable,
  order: RankedOrder,
  filter: ProposalFilter,
  limit: number,
  offset: number,
  keep: (score: number | null) => boolean,
  now: number,
): { slots: number[]; more: boolean } {
  const providers = filter.providerIds?.length ? new Set(filter.providerIds.map((a) => a.toLowerCase())) : undefined;
  const match = matcher(t, filter, providers);
  const found: number[] = [];
  let seen = 0;
  for (let i = 0; i < order.slots.length; i++) {
    const e = order.slots[i];
    if (t.generationOf(e) !== order.generations[i] || !t.has(e, LISTED) || t.liveUntil[e] <= now || !match(e)) continue;
    const score = order.scores[i];
    if (!keep(Number.isNaN(score) ? null : score)) continue;
    if (seen++ < offset) continue;
    if (found.length === limit) return { slots: found, more: true };
    found.push(e);
  }
  return { slots: found, more: false };
}

/** `rankedPageOf` for a walk in key order (`walk`: the smallest bucket), `keep` judging by provider and service type. */
export function filteredPageOf(
  t: EntryTable,
  walk: Iterator<number>,
  filter: ProposalFilter,
  limit: number,
  offset: number,
  keep: (provider: string, serviceType: string) => boolean,
  now: number,
): { slots: number[]; more: boolean } {
  const providers = filter.providerIds?.length ? new Set(filter.providerIds.map((a) => a.toLowerCase())) : undefined;
  const match = matcher(t, filter, providers);
  const found: number[] = [];
  let seen = 0;
  for (let step = walk.next(); !step.done; step = walk.next()) {
    const e = step.value;
    if (t.liveUntil[e] <= now || !match(e)) continue;
    const key = t.keys[e] as string;
    if (!keep(key.slice(0, 42), key.slice(43))) continue;
    if (seen++ < offset) continue;
    if (found.length === limit) return { slots: found, more: true };
    found.push(e);
  }
  return { slots: found, more: false };
}

/** The test a listed slot must pass to match `f` (labels compared by id, prices as bigints). */
export function matcher(t: EntryTable, f: ProposalFilter, providers?: Set<string>): (e: number) => boolean {
  const country = f.country === undefined ? undefined : (t.knownLabel(f.country) ?? -1);
  const ipType = f.ipType === undefined ? undefined : (t.knownLabel(f.ipType) ?? -1);
  const service = f.serviceType === undefined ? undefined : `/${f.serviceType}`;
  return (e) => {
    const key = t.keys[e] as string;
    if (service !== undefined && !(key.length === 42 + service.length && key.endsWith(service))) return false;
    if (country !== undefined && t.country[e] !== country) return false;
    if (ipType !== undefined && t.ipType[e] !== ipType) return false;
    if (f.metering === "hour" && t.perHour(e) === 0n) return false;
    if (f.metering === "gib" && t.perGiB(e) === 0n) return false;
    if (f.maxPricePerHour !== undefined && t.perHour(e) > f.maxPricePerHour) return false;
    if (f.maxPricePerGiB !== undefined && t.perGiB(e) > f.maxPricePerGiB) return false;
    if (f.minBandwidthMbps !== undefined && t.bandwidthMbps[e] < f.minBandwidthMbps) return false;
    if (f.ipv6 === true && !t.has(e, IPV6)) return false;
    if (f.accessPolicy !== undefined && t.has(e, ALLOWLIST) !== (f.accessPolicy === "allowlist")) return false;
    if (providers && !providers.has(key.slice(0, 42))) return false;
    return true;
  };
}
