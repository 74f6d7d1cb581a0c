import { MystError } from "../errors/MystError";
import type { ProposalFilter } from "../proposal/filter";
import type { Proposal, SignedProposal } from "../proposal/proposal";
import { IndexEntry, SIGNATURE_LENGTH } from "./index-entry";
import { proposalRecord, type StoredRecord } from "./record";
import { byKey, type Candidates, merged, SortedEntries, walk } from "./sorted-entries";

export { IndexEntry } from "./index-entry";

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

/** The price band of an amount: 0 for free, else its bit length (a band holds prices within a factor of two). */
function band(wei: bigint): number {
  return wei === 0n ? 0 : wei.toString(2).length;
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
 * go. Listed entries are also bucketed by provider, service type, country, IP type, country + IP
 * type, service type + country, metering (per hour, per GiB) and price band (per hour, per GiB: a
 * factor of two each); a query walks the smallest bucket its filter allows — a price filter walks
 * the bands up to its price, merged in key order — so no documented filter scans the whole index.
 *
 * The rules (`decide`, `decideWithdrawal`) say what a verified announcement may write; the store's
 * revisions make two replicas deciding at once safe (the second write is refused and decided again).
 * `apply` takes whatever the store holds, from this replica or another, in revision order.
 */
export class ProposalIndex {
  readonly #entries = new Map<string, IndexEntry>();
  #all = new SortedEntries();
  /** Listed entries (kept while bulk loading too, when the sorted sets wait for `endBulk`). */
  #listed = 0;
  readonly #byProvider = new Map<string, SortedEntries>();
  readonly #byService = new Map<string, SortedEntries>();
  readonly #byCountry = new Map<string, SortedEntries>();
  readonly #byCountryIpType = new Map<string, SortedEntries>();
  readonly #byServiceCountry = new Map<string, SortedEntries>();
  readonly #byIpType = new Map<string, SortedEntries>();
  readonly #byMetering = new Map<string, SortedEntries>();
  readonly #byHourBand = new Map<string, SortedEntries>();
  readonly #byGiBBand = new Map<string, SortedEntries>();
  #bulk = false;

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

  /** Keys known, listed or only remembered. */
  get known(): number {
    return this.#entries.size;
  }

  /** Whether a verified proposal may replace what the index holds; throws IndexRejection if not. */
  decide(proposal: Proposal, text: string, now = Date.now()): Decision {
    const key = indexKey(proposal.provider, proposal.serviceType);
    const e = this.#entries.get(key);
    const live = e !== undefined && e.listed && e.liveUntil > now;
    if (e?.withdrawn && proposal.createdAt <= e.createdAt) {
      throw new IndexRejection("PROPOSAL_WITHDRAWN", `${proposal.provider} withdrew its ${proposal.serviceType} proposal; announce a newer one`);
    }
    if (e && proposal.createdAt < e.createdAt) {
      throw new IndexRejection("PROPOSAL_STALE", `a newer proposal of ${proposal.provider} for ${proposal.serviceType} was seen`);
    }
    const same = live && e.body.length === text.length + SIGNATURE_LENGTH && e.body.endsWith(text);
    if (live && proposal.createdAt === e.createdAt && !same) {
      throw new IndexRejection("PROPOSAL_STALE", `a newer proposal of ${proposal.provider} for ${proposal.serviceType} is live`);
    }
    if (!live) {
      if ((this.#byProvider.get(key.slice(0, 42))?.size ?? 0) >= this.maxPerProvider && !e?.listed) {
        throw new IndexRejection("PROVIDER_LIMIT", `${proposal.provider} already has ${this.maxPerProvider} service types in the index`);
      }
      if (!e?.listed && this.size >= this.maxEntries) throw new IndexRejection("INDEX_FULL", "the index is full");
    }
    return { key, revision: e?.revision ?? 0, result: !live ? "added" : same ? "refreshed" : "replaced" };
  }

  /** Whether an unregister signed at `at` writes a withdrawal (null: a newer proposal or withdrawal is known). */
  decideWithdrawal(provider: string, serviceType: string, at: number, now = Date.now()): (Decision & { removes: boolean }) | null {
    const key = indexKey(provider, serviceType);
    const e = this.#entries.get(key);
    if (e && (e.createdAt > at || (e.withdrawn && e.createdAt === at))) return null;
    return { key, revision: e?.revision ?? 0, result: "replaced", removes: e !== undefined && e.listed && e.liveUntil > now };
  }

  /**
   * Takes the store's record for `key` at `revision` (null: the store no longer holds the key).
   * Older revisions than the one applied are ignored; the same one only refreshes its times.
   */
  apply(key: string, record: StoredRecord | null, revision: number, storedAt: number, now = Date.now()): void {
    let e = this.#entries.get(key);
    if (e && record === null && revision === 0) {
      // Read from the store just now: it holds nothing (its TTL passed). Keep the history.
      this.#unlist(e);
      e.revision = 0;
      return;
    }
    if (e && revision < e.revision) return;
    if (e && record !== null && revision > e.revision && createdAtOf(record) < e.createdAt) {
      // Older than what was seen, at a newer revision: no replica's decision writes that (a replay
      // put into the store by someone else). The store's revision is remembered, nothing else.
      e.revision = revision;
      return;
    }
    if (e && revision === e.revision && record !== null) {
      e.keepUntil = storedAt + this.ttlMs;
      if (e.listed) e.liveUntil = Math.min(e.expiresAt, e.keepUntil);
      return;
    }
    if (record === null) {
      if (!e) return;
      this.#unlist(e);
      e.revision = revision;
      return;
    }
    if (!e) this.#entries.set(key, (e = new IndexEntry(key, revision)));
    e.revision = revision;
    e.keepUntil = storedAt + this.ttlMs;
    if (record.kind === "withdrawal") {
      this.#unlist(e);
      e.withdrawn = true;
      e.createdAt = record.at;
      return;
    }
    const rebucket =
      e.listed &&
      (e.country !== record.country || e.ipType !== record.ipType || e.hourBand !== band(BigInt(record.perHour)) || e.gibBand !== band(BigInt(record.perGiB)));
    if (rebucket) this.#unlist(e);
    e.withdrawn = false;
    e.createdAt = record.createdAt;
    e.expiresAt = record.expiresAt;
    e.liveUntil = Math.min(record.expiresAt, e.keepUntil);
    e.serviceType = shared(key.slice(43));
    e.country = shared(record.country);
    e.ipType = shared(record.ipType);
    e.perHour = BigInt(record.perHour);
    e.perGiB = BigInt(record.perGiB);
    e.hourBand = band(e.perHour);
    e.gibBand = band(e.perGiB);
    e.bandwidthMbps = record.bandwidthMbps;
    e.ipv6 = record.ipv6 === true;
    e.accessPolicy = record.accessPolicy;
    e.body = record.signature + record.text;
    if (e.liveUntil <= now) this.#unlist(e);
    else if (!e.listed) this.#list(e);
  }

  /**
   * The store holds, at `revision`, something this replica did not verify (junk, a forged or
   * unsigned record, a deletion nobody signed): what is listed stays listed, and the revision is
   * remembered so that the provider's next announcement replaces it.
   */
  ignore(key: string, revision: number, storedAt: number): void {
    const e = this.#entries.get(key);
    if (!e) {
      const remembered = new IndexEntry(key, revision);
      remembered.keepUntil = storedAt + this.ttlMs;
      this.#entries.set(key, remembered);
    } else if (revision > e.revision) e.revision = revision;
  }

  /** The store revision this index holds for `key` (0: none). */
  revisionOf(key: string): number {
    return this.#entries.get(key)?.revision ?? 0;
  }

  /**
   * A key held at a store revision below `revision` that the store should still hold (its TTL not
   * passed): if the store no longer has it, nor a newer value, the store lost it.
   */
  heldBelow(revision: number, now = Date.now()): string | undefined {
    for (const e of this.#entries.values()) if (e.revision > 0 && e.revision < revision && e.keepUntil > now + 1000) return e.key;
    return undefined;
  }

  /**
   * The store lost every value below `revision` (a purge; Infinity: its stream was deleted and
   * made again, counting from 1): entries keep what they list, and their next write creates the
   * key afresh.
   */
  forgetRevisions(below: number): void {
    for (const e of this.#entries.values()) if (e.revision < below) e.revision = 0;
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
      const e = this.#entries.get(indexKey(provider, serviceType));
      const live = e !== undefined && e.listed && e.liveUntil > now;
      if (e) this.#unlist(e);
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
    const entry = this.#entries.get(indexKey(provider, serviceType));
    return entry && entry.listed && entry.liveUntil > now ? entry : undefined;
  }

  /** Up to `limit` live proposals matching `filter`, after `cursor`; `next` is set when more may follow. */
  query(filter: ProposalFilter, limit: number, cursor?: string, now = Date.now()): { entries: IndexEntry[]; next: string | null } {
    const providers = filter.providerIds?.length ? new Set(filter.providerIds.map((a) => a.toLowerCase())) : undefined;
    const entries: IndexEntry[] = [];
    const walk = this.#candidates(filter).after(cursor);
    let more = false;
    for (let step = walk.next(); !step.done; step = walk.next()) {
      if (entries.length === limit) {
        more = true;
        break;
      }
      const e = step.value;
      if (e.liveUntil <= now || !matches(e, filter, providers)) continue;
      entries.push(e);
    }
    return { entries, next: more ? entries[entries.length - 1].key : null };
  }

  /** Every listed entry, in key order (a ranked order is made from it). */
  listed(): Iterable<IndexEntry> {
    return this.#all;
  }

  /** Every live proposal matching `filter`, in key order (the smallest bucket walked): what a ranked query sorts. */
  *matching(filter: ProposalFilter, now = Date.now()): Generator<IndexEntry> {
    const providers = filter.providerIds?.length ? new Set(filter.providerIds.map((a) => a.toLowerCase())) : undefined;
    const walk = this.#candidates(filter).after(undefined);
    for (let step = walk.next(); !step.done; step = walk.next()) {
      const e = step.value;
      if (e.liveUntil > now && matches(e, filter, providers)) yield e;
    }
  }

  /** Unlists what expired and forgets what the store forgot; returns how many were unlisted. */
  sweep(now = Date.now()): number {
    const expired = [...this.#all].filter((e) => e.liveUntil <= now);
    if (expired.length > 64) {
      for (const e of expired) this.#unlist(e, false);
      this.#rebuild();
    } else {
      for (const e of expired) this.#unlist(e);
    }
    for (const [key, e] of this.#entries) if (!e.listed && e.keepUntil <= now) this.#entries.delete(key);
    return expired.length;
  }

  /** The smallest walk that holds every match. */
  #candidates(f: ProposalFilter): Candidates {
    const none = new SortedEntries();
    const bucket = (map: Map<string, SortedEntries>, key: string) => walk(map.get(key) ?? none);
    const options: Candidates[] = [walk(this.#all)];
    if (f.providerIds?.length) {
      const merge: IndexEntry[] = [];
      for (const id of new Set(f.providerIds.map((a) => a.toLowerCase()))) merge.push(...(this.#byProvider.get(id) ?? []));
      options.push(walk(SortedEntries.fromSorted(merge.sort(byKey))));
    }
    if (f.serviceType !== undefined) options.push(bucket(this.#byService, f.serviceType));
    if (f.country !== undefined) options.push(bucket(this.#byCountry, f.country));
    if (f.ipType !== undefined) options.push(bucket(this.#byIpType, f.ipType));
    if (f.country !== undefined && f.ipType !== undefined) options.push(bucket(this.#byCountryIpType, `${f.country}/${f.ipType}`));
    if (f.country !== undefined && f.serviceType !== undefined) options.push(bucket(this.#byServiceCountry, `${f.serviceType}/${f.country}`));
    if (f.metering !== undefined) options.push(bucket(this.#byMetering, f.metering));
    const bands = (map: Map<string, SortedEntries>, max: bigint) => merged([...map].filter(([b]) => Number(b) <= band(max)).map(([, entries]) => entries));
    if (f.maxPricePerHour !== undefined) options.push(bands(this.#byHourBand, f.maxPricePerHour));
    if (f.maxPricePerGiB !== undefined) options.push(bands(this.#byGiBBand, f.maxPricePerGiB));
    return options.reduce((a, b) => (b.size < a.size ? b : a));
  }

  #list(e: IndexEntry): void {
    e.listed = true;
    this.#listed++;
    if (this.#bulk) return;
    this.#all.insert(e);
    for (const [map, value] of this.#buckets(e)) {
      let set = map.get(value);
      if (!set) map.set(value, (set = new SortedEntries()));
      set.insert(e);
    }
  }

  /** Takes `e` out of every set (`fromSets` false: the caller rebuilds them). */
  #unlist(e: IndexEntry, fromSets = !this.#bulk): void {
    if (!e.listed) return;
    e.listed = false;
    e.body = "";
    this.#listed--;
    if (!fromSets) return;
    this.#all.delete(e);
    for (const [map, value] of this.#buckets(e)) {
      const set = map.get(value);
      set?.delete(e);
      if (set && set.size === 0) map.delete(value);
    }
  }

  /** Sorts the listed entries once and builds every set from them in order (after a bulk load or a large sweep). */
  #rebuild(): void {
    const listed: IndexEntry[] = [];
    for (const e of this.#entries.values()) if (e.listed) listed.push(e);
    listed.sort(byKey);
    this.#all = SortedEntries.fromSorted(listed);
    const maps = this.#maps();
    for (const map of maps) map.clear();
    for (const e of listed) {
      for (const [map, value] of this.#buckets(e)) {
        let set = map.get(value);
        if (!set) map.set(value, (set = new SortedEntries()));
        set.append(e);
      }
    }
  }

  #buckets(e: IndexEntry): [Map<string, SortedEntries>, string][] {
    const buckets: [Map<string, SortedEntries>, string][] = [
      [this.#byProvider, e.key.slice(0, 42)],
      [this.#byService, e.serviceType],
      [this.#byCountry, e.country],
      [this.#byIpType, e.ipType],
      [this.#byCountryIpType, `${e.country}/${e.ipType}`],
      [this.#byServiceCountry, `${e.serviceType}/${e.country}`],
      [this.#byHourBand, String(e.hourBand)],
      [this.#byGiBBand, String(e.gibBand)],
    ];
    // Pushed, not spread: this runs for every entry of a bulk load, and a spread costs an iterator each.
    if (e.perHour > 0n) buckets.push([this.#byMetering, "hour"]);
    if (e.perGiB > 0n) buckets.push([this.#byMetering, "gib"]);
    return buckets;
  }

  #maps(): Map<string, SortedEntries>[] {
    return [
      this.#byProvider,
      this.#byService,
      this.#byCountry,
      this.#byIpType,
      this.#byCountryIpType,
      this.#byServiceCountry,
      this.#byMetering,
      this.#byHourBand,
      this.#byGiBBand,
    ];
  }
}

/** One copy of each short label (country, IP type, service type) for every entry that carries it. */
const labels = new Map<string, string>();
/** Distinct labels kept: the schema bounds countries and IP types; service types are anyone's words. */
const MAX_LABELS = 4096;

/** The copy of `s` the index already holds (a decoded record brings its own copy of each label: ~24 B per entry and label). */
function shared(s: string): string {
  const known = labels.get(s);
  if (known !== undefined) return known;
  if (labels.size < MAX_LABELS) labels.set(s, s);
  return s;
}

function createdAtOf(r: StoredRecord): number {
  return r.kind === "withdrawal" ? r.at : r.createdAt;
}

/** Whether a listed entry matches `filter` (`providers`: its provider ids, lower case). */
export function matches(e: IndexEntry, f: ProposalFilter, providers?: Set<string>): boolean {
  if (f.serviceType !== undefined && e.serviceType !== f.serviceType) return false;
  if (f.country !== undefined && e.country !== f.country) return false;
  if (f.ipType !== undefined && e.ipType !== f.ipType) return false;
  if (f.metering === "hour" && e.perHour === 0n) return false;
  if (f.metering === "gib" && e.perGiB === 0n) return false;
  if (f.maxPricePerHour !== undefined && e.perHour > f.maxPricePerHour) return false;
  if (f.maxPricePerGiB !== undefined && e.perGiB > f.maxPricePerGiB) return false;
  if (f.minBandwidthMbps !== undefined && e.bandwidthMbps < f.minBandwidthMbps) return false;
  if (f.ipv6 === true && !e.ipv6) return false;
  if (f.accessPolicy !== undefined && e.accessPolicy !== f.accessPolicy) return false;
  if (providers && !providers.has(e.key.slice(0, 42))) return false;
  return true;
}
