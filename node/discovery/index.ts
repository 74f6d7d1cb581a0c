import { MystError } from "../errors/MystError";
import type { ProposalFilter } from "../proposal/filter";
import type { Proposal, SignedProposal } from "../proposal/proposal";
import { ALLOWLIST, EntryTable, type IndexEntry, IPV6, LISTED, WITHDRAWN } from "./index-entry";
import { type ItemQuality, PageWriter } from "./page-json";
import { filteredPageOf, keysOf, matcher, type RankedOrder, rankedOrderOf, rankedPageOf, rerankedOrderOf } from "./ranked-order";
import { proposalRecord, type StoredRecord } from "./record";
import { band, Buckets } from "./index-buckets";
import { SortedEntries } from "./sorted-entries";

export { IndexEntry } from "./index-entry";
export type { RankedOrder } from "./ranked-order";

export type UpsertResult = "added" | "replaced" | "refreshed";

export class IndexRejection extends MystError {
  constructor(
    readonly code: "PROPOSAL_STALE" | "PROPOSAL_WITHDRAWN" | "PROVIDER_LIMIT" | "INDEX_FULL" | "STORE_CONFLICT",
    message: string,
  ) {
    super(code, message);
  }
}

export function indexKey(provider: string, serviceType: string): string {
  return `${provider.toLowerCase()}/${serviceType}`;
}

/** What a write to the store must look like for an announcement the index accepts. */
export interface Decision {
  key: string;
  result: UpsertResult;
  /** The revision the store must still be at (0: the key must not exist), so a concurrent writer is detected. */
  revision: number;
}

/**
 * A replica's in-memory view of the shared proposal store: one entry per (provider, service type),
 * kept in key order so that a cursor (the last key returned) pages stably while proposals come and
 * go. Listed entries are also bucketed by service type, country, IP type, country + IP
 * type, service type + country, metering (per hour, per GiB) and price band (per hour, per GiB: a
 * factor of two each); a query walks the smallest bucket its filter allows — a price filter walks
 * the bands up to its price, merged in key order — so no documented filter scans the whole index.
 *
 * The rules (`decide`, `decideWithdrawal`) say what a verified announcement may write; the store's
 * revisions make two replicas deciding at once safe (the second write is refused and decided again).
 * `apply` takes whatever the store holds, from this replica or another, in revision order.
 */
export class ProposalIndex {
  /** Every key known, in columns (index-entry.ts); the sets below hold its slot numbers. */
  readonly #t = new EntryTable();
  #all = new SortedEntries(this.#t.keys);
  /** Listed entries (kept while bulk loading too, when the sorted sets wait for `endBulk`). */
  #listed = 0;
  /** Counts every listing and unlisting: a ranked order made at another count misses or holds a key. */
  #listings = 0;
  readonly #buckets = new Buckets(this.#t);
  #bulk = false;
  /** Slots listed since `takeListed` (null: too many to list; a ranked order is made again in full). */
  #listedSince: number[] | null = [];
  readonly #writer = new PageWriter();

  constructor(
    /** The store's TTL: an entry not written again for this long is dropped. */
    public ttlMs: number,
    private readonly maxEntries = 1_000_000,
    /** Service types one provider may have in the index at once. Default 16. */
    private readonly maxPerProvider = 16,
  ) {}

  /** Listed proposals (including ones that expired since the last sweep). */
  get size(): number {
    return this.#listed;
  }

  /** Changes of the listed set so far (a ranked order made at another count must be made again in full). */
  get listings(): number {
    return this.#listings;
  }

  #onListings?: () => void;
  /** Calls `fn` at every change of the listed set (the ranked order's keeper schedules its update: ranked-keeper.ts). */
  onListings(fn: () => void): void {
    this.#onListings = fn;
  }

  /** Keys known, listed or only remembered. */
  get known(): number {
    return this.#t.size;
  }

  /** Bytes of signatures and signed texts held, and of their buffer (used, reserved): for the bench and tests. */
  get textBytes(): { held: number; used: number; reserved: number } {
    return this.#t.textBytes;
  }

  /** Whether a verified proposal may replace what the index holds; throws IndexRejection if not. */
  decide(proposal: Proposal, text: string, now = Date.now()): Decision {
    const key = indexKey(proposal.provider, proposal.serviceType);
    const t = this.#t;
    const e = t.slotOf(key);
    const listed = e !== undefined && t.has(e, LISTED);
    const live = listed && t.liveUntil[e] > now;
    if (e !== undefined && t.has(e, WITHDRAWN) && proposal.createdAt <= t.createdAt[e]) {
      throw new IndexRejection("PROPOSAL_WITHDRAWN", `${proposal.provider} withdrew its ${proposal.serviceType} proposal; announce a newer one`);
    }
    if (e !== undefined && proposal.createdAt < t.createdAt[e]) {
      throw new IndexRejection("PROPOSAL_STALE", `a newer proposal of ${proposal.provider} for ${proposal.serviceType} was seen`);
    }
    const same = live && t.textIs(e, text);
    if (live && proposal.createdAt === t.createdAt[e] && !same) {
      throw new IndexRejection("PROPOSAL_STALE", `a newer proposal of ${proposal.provider} for ${proposal.serviceType} is live`);
    }
    if (!live) {
      if (this.#buckets.ofProvider(this.#all, key.slice(0, 42)).length >= this.maxPerProvider && !listed) {
        throw new IndexRejection("PROVIDER_LIMIT", `${proposal.provider} already has ${this.maxPerProvider} service types in the index`);
      }
      if (!listed && this.size >= this.maxEntries) throw new IndexRejection("INDEX_FULL", "the index is full");
    }
    return { key, revision: e === undefined ? 0 : t.revision[e], result: !live ? "added" : same ? "refreshed" : "replaced" };
  }

  /** Whether an unregister signed at `at` writes a withdrawal (null: a newer proposal or withdrawal is known). */
  decideWithdrawal(provider: string, serviceType: string, at: number, now = Date.now()): (Decision & { removes: boolean }) | null {
    const key = indexKey(provider, serviceType);
    const t = this.#t;
    const e = t.slotOf(key);
    if (e === undefined) return { key, revision: 0, result: "replaced", removes: false };
    if (t.createdAt[e] > at || (t.has(e, WITHDRAWN) && t.createdAt[e] === at)) return null;
    return { key, revision: t.revision[e], result: "replaced", removes: t.has(e, LISTED) && t.liveUntil[e] > now };
  }

  /**
   * Takes the store's record for `key` at `revision` (null: the store no longer holds the key).
   * Older revisions than the one applied are ignored; the same one only refreshes its times.
   */
  apply(key: string, record: StoredRecord | null, revision: number, storedAt: number, now = Date.now()): void {
    const t = this.#t;
    let e = t.slotOf(key);
    if (e !== undefined && record === null && revision === 0) {
      // Read from the store just now: it holds nothing (its TTL passed). Keep the history.
      this.#unlist(e);
      t.revision[e] = 0;
      return;
    }
    if (e !== undefined && revision < t.revision[e]) return;
    if (e !== undefined && record !== null && revision > t.revision[e] && createdAtOf(record) < t.createdAt[e]) {
      // Older than what was seen, at a newer revision: no replica's decision writes that (a replay
      // put into the store by someone else). The store's revision is remembered, nothing else.
      t.revision[e] = revision;
      return;
    }
    if (e !== undefined && revision === t.revision[e] && record !== null) {
      t.keepUntil[e] = storedAt + this.ttlMs;
      if (t.has(e, LISTED)) t.liveUntil[e] = Math.min(t.expiresAt[e], t.keepUntil[e]);
      return;
    }
    if (record === null) {
      if (e === undefined) return;
      this.#unlist(e);
      t.revision[e] = revision;
      return;
    }
    if (e === undefined) e = t.add(key, revision);
    t.revision[e] = revision;
    t.keepUntil[e] = storedAt + this.ttlMs;
    if (record.kind === "withdrawal") {
      this.#unlist(e);
      t.set(e, WITHDRAWN, true);
      t.createdAt[e] = record.at;
      return;
    }
    const perHour = BigInt(record.perHour);
    const perGiB = BigInt(record.perGiB);
    const country = t.label(record.country);
    const ipType = t.label(record.ipType);
    const rebucket =
      t.has(e, LISTED) && (t.country[e] !== country || t.ipType[e] !== ipType || t.hourBand[e] !== band(perHour) || t.gibBand[e] !== band(perGiB));
    if (rebucket) this.#unlist(e);
    t.set(e, WITHDRAWN, false);
    t.createdAt[e] = record.createdAt;
    t.expiresAt[e] = record.expiresAt;
    t.liveUntil[e] = Math.min(record.expiresAt, t.keepUntil[e]);
    t.country[e] = country;
    t.ipType[e] = ipType;
    t.setPrices(e, perHour, perGiB);
    t.hourBand[e] = band(perHour);
    t.gibBand[e] = band(perGiB);
    t.bandwidthMbps[e] = record.bandwidthMbps;
    t.set(e, IPV6, record.ipv6 === true);
    t.set(e, ALLOWLIST, record.accessPolicy === "allowlist");
    t.setBody(e, record.signature, record.text);
    if (t.liveUntil[e] <= now) this.#unlist(e);
    else if (!t.has(e, LISTED)) this.#list(e);
  }

  /**
   * The store holds, at `revision`, something this replica did not verify (junk, a forged or
   * unsigned record, a deletion nobody signed): what is listed stays listed, and the revision is
   * remembered so that the provider's next announcement replaces it.
   */
  ignore(key: string, revision: number, storedAt: number): void {
    const t = this.#t;
    const e = t.slotOf(key);
    if (e === undefined) t.keepUntil[t.add(key, revision)] = storedAt + this.ttlMs;
    else if (revision > t.revision[e]) t.revision[e] = revision;
  }

  /** The store revision this index holds for `key` (0: none). */
  revisionOf(key: string): number {
    const e = this.#t.slotOf(key);
    return e === undefined ? 0 : this.#t.revision[e];
  }

  /**
   * A key held at a store revision below `revision` that the store should still hold (its TTL not
   * passed): if the store no longer has it, nor a newer value, the store lost it.
   */
  heldBelow(revision: number, now = Date.now()): string | undefined {
    const t = this.#t;
    for (const e of t.slots()) if (t.revision[e] > 0 && t.revision[e] < revision && t.keepUntil[e] > now + 1000) return t.keys[e];
    return undefined;
  }

  /**
   * The store lost every value below `revision` (a purge; Infinity: its stream was deleted and
   * made again, counting from 1): entries keep what they list, and their next write creates the
   * key afresh.
   */
  forgetRevisions(below: number): void {
    const t = this.#t;
    for (const e of t.slots()) if (t.revision[e] < below) t.revision[e] = 0;
  }

  /** Decides and applies in this index alone (no store): a replica on its own, and tests. */
  upsert(signed: SignedProposal, proposal: Proposal, now = Date.now()): UpsertResult {
    const d = this.decide(proposal, signed.proposal, now);
    this.apply(d.key, proposalRecord(signed, proposal), d.revision + 1, now, now);
    return d.result;
  }

  /**
   * In this index alone: removes the proposal if it is not newer than `notAfter` (an unregister
   * signed at that time), and remembers the withdrawal; without `notAfter`, just unlists it.
   */
  remove(provider: string, serviceType: string, notAfter = Number.MAX_SAFE_INTEGER, now = Date.now()): boolean {
    if (notAfter === Number.MAX_SAFE_INTEGER) {
      const t = this.#t;
      const e = t.slotOf(indexKey(provider, serviceType));
      if (e === undefined) return false;
      const live = t.has(e, LISTED) && t.liveUntil[e] > now;
      this.#unlist(e);
      return live;
    }
    const d = this.decideWithdrawal(provider, serviceType, notAfter, now);
    if (!d) return false;
    this.apply(d.key, { kind: "withdrawal", at: notAfter }, d.revision + 1, now, now);
    return d.removes;
  }

  /** While loading a whole store: entries are only marked listed; `endBulk` sorts them once and builds every bucket. */
  beginBulk(): void {
    this.#bulk = true;
  }

  endBulk(): void {
    this.#bulk = false;
    this.#rebuild();
  }

  get(provider: string, serviceType: string, now = Date.now()): IndexEntry | undefined {
    const t = this.#t;
    const e = t.slotOf(indexKey(provider, serviceType));
    return e !== undefined && t.has(e, LISTED) && t.liveUntil[e] > now ? t.entry(e) : undefined;
  }

  /** Up to `limit` live proposals matching `filter`, after `cursor`; `next` is set when more may follow. */
  query(filter: ProposalFilter, limit: number, cursor?: string, now = Date.now()): { entries: IndexEntry[]; next: string | null } {
    const page = this.querySlots(filter, limit, cursor, now);
    return { entries: page.slots.map((e) => this.#t.entry(e)), next: page.next };
  }

  /** `query` as slot numbers, for `pageJson`. */
  querySlots(filter: ProposalFilter, limit: number, cursor?: string, now = Date.now()): { slots: number[]; next: string | null } {
    const t = this.#t;
    const providers = filter.providerIds?.length ? new Set(filter.providerIds.map((a) => a.toLowerCase())) : undefined;
    const match = matcher(t, filter, providers);
    const found: number[] = [];
    const walk = this.#buckets.candidates(filter, this.#all).after(cursor);
    let more = false;
    for (let step = walk.next(); !step.done; step = walk.next()) {
      if (found.length === limit) {
        more = true;
        break;
      }
      const e = step.value;
      if (t.liveUntil[e] <= now || !match(e)) continue;
      found.push(e);
    }
    return { slots: found, next: more ? (t.keys[found[found.length - 1]] as string) : null };
  }

  /** A page of the API's JSON for `slots` (just returned by a page or query method), each with its quality (page-json.ts). */
  pageJson(slots: readonly number[], quality: (key: string) => ItemQuality, next: string | null): Buffer {
    const t = this.#t;
    return this.#writer.page(t, slots, (e) => quality(t.keys[e] as string), next);
  }

  /**
   * Every listed key ranked by `rate` (higher rank first, ties in key order), with its score: a
   * snapshot of slot numbers that `rankedPage` walks (ranked-order.ts).
   */
  rankedOrder(rate: Rate): RankedOrder {
    this.#listedSince = [];
    return rankedOrderOf(this.#t, this.#all, rate);
  }

  /**
   * `order` with the keys in `changed` ranked again by `rate`, the slots listed since the last
   * `takeListed` put in and those unlisted dropped (`listed`: from `takeListed`).
   */
  rerankedOrder(order: RankedOrder, changed: Iterable<string>, rate: Rate, listed: Iterable<number> = []): RankedOrder {
    const slots: number[] = [...listed];
    for (const key of changed) {
      const e = this.#t.slotOf(key);
      if (e !== undefined) slots.push(e);
    }
    return rerankedOrderOf(this.#t, order, slots, rate);
  }

  /** The slots listed since the last call or the last whole ranked order (null: too many; make the order again). */
  takeListed(): number[] | null {
    const listed = this.#listedSince;
    this.#listedSince = [];
    return listed;
  }

  /** The keys of an order's slots as they are now (undefined: a slot reused since): tests and the bench. */
  keysOf(order: RankedOrder): (string | undefined)[] {
    return keysOf(this.#t, order);
  }

  /** Up to `limit` live proposals of a ranked order matching `filter` and `keep`, after `offset` (ranked-order.ts). */
  rankedPage(order: RankedOrder, filter: ProposalFilter, limit: number, offset: number, keep: (score: number | null) => boolean, now = Date.now()): SlotPage {
    return new SlotPage(this.#t, rankedPageOf(this.#t, order, filter, limit, offset, keep, now));
  }

  /**
   * Like `query`, in key order, with `keep` judging each match by its provider and service type, and
   * an offset instead of a cursor (what a query leaving out low scores without sorting walks).
   */
  filteredPage(filter: ProposalFilter, limit: number, offset: number, keep: (provider: string, serviceType: string) => boolean, now = Date.now()): SlotPage {
    return new SlotPage(this.#t, filteredPageOf(this.#t, this.#buckets.candidates(filter, this.#all).after(undefined), filter, limit, offset, keep, now));
  }

  /** Unlists what expired and forgets what the store forgot; returns how many were unlisted. */
  sweep(now = Date.now()): number {
    const t = this.#t;
    const expired = [...this.#all].filter((e) => t.liveUntil[e] <= now);
    if (expired.length > 64) {
      for (const e of expired) this.#unlist(e, false);
      this.#rebuild();
    } else {
      for (const e of expired) this.#unlist(e);
    }
    const forgotten: number[] = [];
    for (const e of t.slots()) if (!t.has(e, LISTED) && t.keepUntil[e] <= now) forgotten.push(e);
    for (const e of forgotten) t.forget(e);
    return expired.length;
  }

  /** Slots in key order. */
  readonly #byKey = (a: number, b: number): number => {
    const x = this.#t.keys[a] as string;
    const y = this.#t.keys[b] as string;
    return x < y ? -1 : x > y ? 1 : 0;
  };

  #list(e: number): void {
    this.#t.set(e, LISTED, true);
    this.#listed++;
    this.#listings++;
    this.#onListings?.();
    if (this.#listedSince && this.#listedSince.length >= 50_000) this.#listedSince = null;
    this.#listedSince?.push(e);
    if (this.#bulk) return;
    this.#all.insert(e);
    for (const [map, value] of this.#buckets.of(e)) {
      let set = map.get(value);
      if (!set) map.set(value, (set = new SortedEntries(this.#t.keys)));
      set.insert(e);
    }
  }

  /** Takes `e` out of every set (`fromSets` false: the caller rebuilds them). */
  #unlist(e: number, fromSets = !this.#bulk): void {
    const t = this.#t;
    if (!t.has(e, LISTED)) return;
    t.set(e, LISTED, false);
    t.clearBody(e);
    this.#listed--;
    this.#listings++;
    this.#onListings?.();
    if (!fromSets) return;
    this.#all.delete(e);
    for (const [map, value] of this.#buckets.of(e)) {
      const set = map.get(value);
      set?.delete(e);
      if (set && set.size === 0) map.delete(value);
    }
  }

  /** Sorts the listed entries once and builds every set from them in order (after a bulk load or a large sweep). */
  #rebuild(): void {
    const t = this.#t;
    const listed: number[] = [];
    for (const e of t.slots()) if (t.has(e, LISTED)) listed.push(e);
    listed.sort(this.#buckets.byKey);
    this.#all = SortedEntries.fromSorted(t.keys, listed);
    this.#buckets.build(listed);
  }
}

/** A page of slots (`slots`, `more`), with its entries made when asked for. */
export class SlotPage {
  constructor(
    readonly table: EntryTable,
    page: { slots: number[]; more: boolean },
    readonly slots = page.slots,
    readonly more = page.more,
  ) {}

  get entries(): IndexEntry[] {
    return this.slots.map((e) => this.table.entry(e));
  }
}

type Rate = (provider: string, serviceType: string) => { rank: number; score: number | null };

function createdAtOf(r: StoredRecord): number {
  return r.kind === "withdrawal" ? r.at : r.createdAt;
}
