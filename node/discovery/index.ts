import { MystError } from "../errors/MystError";
import { matchesFilter, type ProposalFilter } from "../proposal/filter";
import type { Proposal, SignedProposal } from "../proposal/proposal";

/** One live proposal in the index, with its terms pre-parsed for filtering. */
export interface IndexEntry {
  key: string;
  signed: SignedProposal;
  proposal: Proposal;
  /** When the index drops it: the proposal's own expiry, or the ping deadline if sooner. */
  liveUntil: number;
  perHour: bigint;
  perGiB: bigint;
}

export type UpsertResult = "added" | "replaced" | "refreshed";

export class IndexRejection extends MystError {
  constructor(
    readonly code: "PROPOSAL_STALE" | "PROPOSAL_WITHDRAWN" | "PROVIDER_LIMIT" | "INDEX_FULL",
    message: string,
  ) {
    super(code, message);
  }
}

export function indexKey(provider: string, serviceType: string): string {
  return `${provider.toLowerCase()}/${serviceType}`;
}

/** A sorted array of keys with binary-search insert and delete. */
class SortedKeys {
  keys: string[] = [];
  insert(key: string): void {
    const i = this.lowerBound(key);
    if (this.keys[i] !== key) this.keys.splice(i, 0, key);
  }
  delete(key: string): void {
    const i = this.lowerBound(key);
    if (this.keys[i] === key) this.keys.splice(i, 1);
  }
  lowerBound(key: string): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.keys[mid] < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  upperBound(key: string): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.keys[mid] <= key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * The discovery index: one live proposal per (provider, service type), kept in key order so
 * that a cursor (the last key returned) pages stably while proposals come and go. Keys are also
 * bucketed by provider, service type, country, country + IP type and service type + country; a
 * query walks the smallest bucket its filter allows. A proposal leaves when it expires or is not pinged within the TTL; only a newer
 * proposal replaces one.
 */
export class ProposalIndex {
  readonly #entries = new Map<string, IndexEntry>();
  readonly #all = new SortedKeys();
  readonly #byProvider = new Map<string, SortedKeys>();
  readonly #byService = new Map<string, SortedKeys>();
  readonly #byCountry = new Map<string, SortedKeys>();
  readonly #byCountryIpType = new Map<string, SortedKeys>();
  readonly #byServiceCountry = new Map<string, SortedKeys>();

  /**
   * Per (provider, service type): the newest `createdAt` seen, and whether an unregister withdrew
   * it. A replayed or older announcement is refused even after the live one expired or was
   * withdrawn. Bounded by `maxEntries` (oldest first out); an evicted key only forgets history
   * that its proposals' own expiry ends soon anyway.
   */
  readonly #history = new Map<string, { createdAt: number; withdrawn: boolean }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 1_000_000,
    /** Service types one provider may have in the index at once. Default 16. */
    private readonly maxPerProvider = 16,
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  upsert(signed: SignedProposal, proposal: Proposal, now = Date.now()): UpsertResult {
    const key = indexKey(proposal.provider, proposal.serviceType);
    const liveUntil = Math.min(proposal.expiresAt, now + this.ttlMs);
    const existing = this.#entries.get(key);
    const terms = { perHour: BigInt(proposal.price.perHour), perGiB: BigInt(proposal.price.perGiB) };
    const seen = this.#history.get(key);
    if (seen?.withdrawn && proposal.createdAt <= seen.createdAt) {
      throw new IndexRejection("PROPOSAL_WITHDRAWN", `${proposal.provider} withdrew its ${proposal.serviceType} proposal; announce a newer one`);
    }
    if (seen && proposal.createdAt < seen.createdAt) {
      throw new IndexRejection("PROPOSAL_STALE", `a newer proposal of ${proposal.provider} for ${proposal.serviceType} was seen`);
    }
    if (existing && existing.liveUntil > now) {
      if (proposal.createdAt < existing.proposal.createdAt || (proposal.createdAt === existing.proposal.createdAt && signed.proposal !== existing.signed.proposal)) {
        throw new IndexRejection("PROPOSAL_STALE", `a newer proposal of ${proposal.provider} for ${proposal.serviceType} is live`);
      }
    }
    if (!existing && (this.#byProvider.get(proposal.provider.toLowerCase())?.keys.length ?? 0) >= this.maxPerProvider) {
      throw new IndexRejection("PROVIDER_LIMIT", `${proposal.provider} already has ${this.maxPerProvider} service types in the index`);
    }
    if (!existing && this.#entries.size >= this.maxEntries) throw new IndexRejection("INDEX_FULL", "the index is full");
    this.#remember(key, proposal.createdAt, false);
    const refreshed = existing?.signed.proposal === signed.proposal;
    if (existing) this.#unbucket(existing);
    const entry: IndexEntry = { key, signed, proposal, liveUntil, ...terms };
    this.#entries.set(key, entry);
    this.#all.insert(key);
    this.#bucket(entry);
    return !existing ? "added" : refreshed ? "refreshed" : existing.liveUntil > now ? "replaced" : "added";
  }

  /** Removes the proposal if it is not newer than `notAfter` (an unregister signed at that time). */
  remove(provider: string, serviceType: string, notAfter = Number.MAX_SAFE_INTEGER): boolean {
    const key = indexKey(provider, serviceType);
    const entry = this.#entries.get(key);
    const seen = this.#history.get(key);
    // The tombstone: nothing created up to the unregister's time comes back.
    if (notAfter !== Number.MAX_SAFE_INTEGER && (!seen || seen.createdAt <= notAfter)) this.#remember(key, notAfter, true);
    if (!entry || entry.proposal.createdAt > notAfter) return false;
    this.#delete(entry);
    return true;
  }

  #remember(key: string, createdAt: number, withdrawn: boolean): void {
    this.#history.delete(key);
    while (this.#history.size >= this.maxEntries) this.#history.delete(this.#history.keys().next().value!);
    this.#history.set(key, { createdAt, withdrawn });
  }

  get(provider: string, serviceType: string, now = Date.now()): IndexEntry | undefined {
    const entry = this.#entries.get(indexKey(provider, serviceType));
    return entry && entry.liveUntil > now ? entry : undefined;
  }

  /** Up to `limit` live proposals matching `filter`, after `cursor`; `next` is set when more may follow. */
  query(filter: ProposalFilter, limit: number, cursor?: string, now = Date.now()): { entries: IndexEntry[]; next: string | null } {
    const candidates = this.#candidates(filter);
    const providers = filter.providerIds?.length ? new Set(filter.providerIds.map((a) => a.toLowerCase())) : undefined;
    const entries: IndexEntry[] = [];
    let i = cursor === undefined ? 0 : candidates.upperBound(cursor);
    const keys = candidates.keys;
    for (; i < keys.length; i++) {
      const entry = this.#entries.get(keys[i])!;
      if (entry.liveUntil <= now || !matchesFilter(entry.proposal, filter, entry, providers)) continue;
      entries.push(entry);
      if (entries.length === limit) {
        i++;
        break;
      }
    }
    return { entries, next: entries.length === limit && i < keys.length ? entries[entries.length - 1].key : null };
  }

  /** Drops everything that expired; returns how many. */
  sweep(now = Date.now()): number {
    let dropped = 0;
    for (const entry of [...this.#entries.values()]) {
      if (entry.liveUntil <= now) {
        this.#delete(entry);
        dropped++;
      }
    }
    return dropped;
  }

  /** The smallest set of keys that holds every match. */
  #candidates(f: ProposalFilter): SortedKeys {
    const options: SortedKeys[] = [this.#all];
    if (f.providerIds?.length) {
      const merged = new SortedKeys();
      for (const id of f.providerIds) for (const k of this.#byProvider.get(id.toLowerCase())?.keys ?? []) merged.insert(k);
      options.push(merged);
    }
    if (f.serviceType !== undefined) options.push(this.#byService.get(f.serviceType) ?? new SortedKeys());
    if (f.country !== undefined) options.push(this.#byCountry.get(f.country) ?? new SortedKeys());
    if (f.country !== undefined && f.ipType !== undefined) options.push(this.#byCountryIpType.get(`${f.country}/${f.ipType}`) ?? new SortedKeys());
    if (f.country !== undefined && f.serviceType !== undefined) {
      options.push(this.#byServiceCountry.get(`${f.serviceType}/${f.country}`) ?? new SortedKeys());
    }
    return options.reduce((a, b) => (b.keys.length < a.keys.length ? b : a));
  }

  #bucket(e: IndexEntry): void {
    for (const [map, value] of this.#buckets(e)) {
      let set = map.get(value);
      if (!set) map.set(value, (set = new SortedKeys()));
      set.insert(e.key);
    }
  }

  #unbucket(e: IndexEntry): void {
    for (const [map, value] of this.#buckets(e)) {
      const set = map.get(value);
      set?.delete(e.key);
      if (set && set.keys.length === 0) map.delete(value);
    }
  }

  #buckets(e: IndexEntry): [Map<string, SortedKeys>, string][] {
    return [
      [this.#byProvider, e.proposal.provider.toLowerCase()],
      [this.#byService, e.proposal.serviceType],
      [this.#byCountry, e.proposal.location.country],
      [this.#byCountryIpType, `${e.proposal.location.country}/${e.proposal.location.ipType}`],
      [this.#byServiceCountry, `${e.proposal.serviceType}/${e.proposal.location.country}`],
    ];
  }

  #delete(e: IndexEntry): void {
    this.#entries.delete(e.key);
    this.#all.delete(e.key);
    this.#unbucket(e);
  }
}
