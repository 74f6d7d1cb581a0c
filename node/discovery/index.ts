import { matchesFilter, type ProposalFilter } from "../proposal/filter";
import type { Proposal, SignedProposal } from "../proposal/proposal";

/** One live proposal in the index. */
export interface IndexEntry {
  key: string;
  signed: SignedProposal;
  proposal: Proposal;
  /** When the index drops it: the proposal's own expiry, or the ping deadline if sooner. */
  liveUntil: number;
}

export type UpsertResult = "added" | "replaced" | "refreshed";

export class IndexRejection extends Error {
  constructor(
    readonly code: "PROPOSAL_STALE" | "INDEX_FULL",
    message: string,
  ) {
    super(message);
  }
}

export function indexKey(provider: string, serviceType: string): string {
  return `${provider.toLowerCase()}/${serviceType}`;
}

/**
 * The discovery index: one live proposal per (provider, service type), kept in key order so
 * that a cursor (the last key returned) pages stably while proposals come and go. A proposal
 * leaves when it expires or is not pinged within the TTL. Only a newer proposal replaces one.
 */
export class ProposalIndex {
  readonly #entries = new Map<string, IndexEntry>();
  /** Keys in ascending order, for cursors. */
  #keys: string[] = [];

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 1_000_000,
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  upsert(signed: SignedProposal, proposal: Proposal, now = Date.now()): UpsertResult {
    const key = indexKey(proposal.provider, proposal.serviceType);
    const liveUntil = Math.min(proposal.expiresAt, now + this.ttlMs);
    const existing = this.#entries.get(key);
    if (existing && existing.liveUntil > now) {
      if (proposal.createdAt < existing.proposal.createdAt || (proposal.createdAt === existing.proposal.createdAt && signed.proposal !== existing.signed.proposal)) {
        throw new IndexRejection("PROPOSAL_STALE", `a newer proposal of ${proposal.provider} for ${proposal.serviceType} is live`);
      }
      const refreshed = signed.proposal === existing.signed.proposal;
      existing.signed = signed;
      existing.proposal = proposal;
      existing.liveUntil = liveUntil;
      return refreshed ? "refreshed" : "replaced";
    }
    if (!existing) {
      if (this.#entries.size >= this.maxEntries) throw new IndexRejection("INDEX_FULL", "the index is full");
      this.#keys.splice(this.#lowerBound(key), 0, key);
    }
    this.#entries.set(key, { key, signed, proposal, liveUntil });
    return "added";
  }

  /** Removes the proposal if it is not newer than `notAfter` (an unregister signed at that time). */
  remove(provider: string, serviceType: string, notAfter = Number.MAX_SAFE_INTEGER): boolean {
    const key = indexKey(provider, serviceType);
    const entry = this.#entries.get(key);
    if (!entry || entry.proposal.createdAt > notAfter) return false;
    this.#delete(key);
    return true;
  }

  get(provider: string, serviceType: string, now = Date.now()): IndexEntry | undefined {
    const entry = this.#entries.get(indexKey(provider, serviceType));
    return entry && entry.liveUntil > now ? entry : undefined;
  }

  /** Up to `limit` live proposals matching `filter`, after `cursor`; `next` is set when more may follow. */
  query(filter: ProposalFilter, limit: number, cursor?: string, now = Date.now()): { entries: IndexEntry[]; next: string | null } {
    const providers = filter.providerIds?.length ? new Set(filter.providerIds.map((a) => a.toLowerCase())) : undefined;
    const entries: IndexEntry[] = [];
    let i = cursor === undefined ? 0 : this.#upperBound(cursor);
    for (; i < this.#keys.length; i++) {
      const entry = this.#entries.get(this.#keys[i])!;
      if (entry.liveUntil <= now || !matchesFilter(entry.proposal, filter, providers)) continue;
      entries.push(entry);
      if (entries.length === limit) {
        i++;
        break;
      }
    }
    return { entries, next: entries.length === limit && i < this.#keys.length ? entries[entries.length - 1].key : null };
  }

  /** Drops everything that expired; returns how many. */
  sweep(now = Date.now()): number {
    let dropped = 0;
    for (const [key, entry] of this.#entries) {
      if (entry.liveUntil <= now) {
        this.#entries.delete(key);
        dropped++;
      }
    }
    if (dropped) this.#keys = this.#keys.filter((k) => this.#entries.has(k));
    return dropped;
  }

  #delete(key: string): void {
    this.#entries.delete(key);
    const i = this.#lowerBound(key);
    if (this.#keys[i] === key) this.#keys.splice(i, 1);
  }

  #lowerBound(key: string): number {
    let lo = 0;
    let hi = this.#keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#keys[mid] < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #upperBound(key: string): number {
    let lo = 0;
    let hi = this.#keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#keys[mid] <= key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
