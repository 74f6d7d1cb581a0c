import type { SignerDirectory } from "../identity/protocol-signature";
import { silentLogger, type Logger } from "../log/logger";
import { MystError } from "../errors/MystError";
import { DEFAULT_PROBE_PARAMS, type ProbeParams, type ProbeScore, probeScoreOfRows, probeWords } from "../quality/probe-score";
import {
  type EvidenceKind,
  kindOf,
  MAX_SIGNED_RECEIPT_BYTES,
  parseReceipt,
  type Receipt,
  ReceiptRejected,
  receiptId,
  type SignedReceipt,
  verifySignedReceipt,
} from "../quality/receipt";
import {
  DEFAULT_SCORE_PARAMS,
  failureWords,
  NEUTRAL_SCORE,
  type PromiseCheck,
  type QualityScore,
  rowOf,
  type ScoreParams,
  scoreOfRows,
} from "../quality/score";
import { DEFAULT_RECEIPT_LIMITS, type ReceiptLimits, type ReceiptStore, type StoredReceipt } from "./receipt-store";
import { rowIdOf, ScoreRows } from "./score-rows";

/** Too many receipts from one signer in the last hour. */
export class ReceiptFloodError extends MystError {
  constructor(signer: string, limit: number) {
    super("RECEIPT_FLOOD", `${signer} sent more than ${limit} receipts in the last hour; retry later`);
  }
}

export interface QualityBookOptions {
  directory: SignerDirectory;
  /** Checks a promise's EIP-712 signature in the vault's domain (score.ts promiseCheckOf). */
  promiseCheck: PromiseCheck;
  store: ReceiptStore;
  params?: ScoreParams;
  /** The probers' periods and the median rule (probe-score.ts). */
  probeParams?: ProbeParams;
  limits?: ReceiptLimits;
  /** Receipts one signer may send per hour to this replica. Default 240. */
  perSignerPerHour?: number;
  log?: Logger;
}

/**
 * One (provider, service type): the heads of its rows' chains, their counts, and its score as queries
 * read it (in place: no object per score; the rank follows from the score); the provider's other
 * service types follow through `next` (most providers sell one or two).
 */
class Keyed {
  receiptHead = -1;
  probeHead = -1;
  nReceipts = 0;
  nProbes = 0;
  score: number | null = null;
  /** The receipts the score weighed. */
  receipts = 0;
  constructor(
    readonly provider: string,
    readonly serviceType: string,
    public next: Keyed | undefined,
  ) {}

  get rank(): number {
    return this.score ?? NEUTRAL_SCORE;
  }
}

/** What a query reads of a proposal's quality: kept up to date as receipts arrive, never computed per query (read it at once: it changes in place). */
export interface Rated {
  readonly score: number | null;
  readonly rank: number;
  readonly receipts: number;
}

/** A provider's quality as discovery publishes it: the score, the failing stages in words, and what it is computed from. */
export interface QualityReport extends Omit<QualityScore, "weightWei"> {
  provider: string;
  serviceType: string;
  weightWei: string;
  /** One line per failing stage: how many consumers, what failed, what to check. */
  words: string[];
  /** The probers' median (probe-score.ts): what the receipts' score is pulled toward. */
  probe: ProbeScore;
  /** One line per stage the probers of the scored period saw fail. */
  probeWords: string[];
}

/**
 * Discovery's receipts: verified as they arrive (receipt.ts: shape, size, canonical text, signature,
 * registered consumer, times), deduplicated by their id (one per consumer and session: a replay is
 * dropped), limited per signer (per hour here; per provider in the store), appended to the shared
 * store, and followed from it by every replica. A replica keeps in memory only what scoring needs:
 * one row per receipt (score-rows.ts, its promise checked once as it arrives) and each proposal's
 * score, recomputed from its rows when they change (batched, off the query path); the raw signed
 * receipts stay in the store (JetStream's disk) and are read back from it for the recompute API.
 * The store is the source; this view is rebuilt from it at start.
 */
export class QualityBook {
  readonly #o: QualityBookOptions;
  readonly #log: Logger;
  readonly #params: ScoreParams;
  readonly #limits: ReceiptLimits;
  readonly #rows = new ScoreRows();
  /** Provider → its first service type's chains and score. */
  readonly #keys = new Map<string, Keyed>();
  /** Keys whose rows changed since their score was computed. */
  readonly #dirty = new Set<Keyed>();
  /** `<provider>/<serviceType>` of the scores changed since `takeChanges` (null: too many to list). */
  #changes: Set<string> | null = new Set();
  #flushing?: NodeJS.Immediate;
  readonly #perSigner = new Map<string, { hour: number; count: number }>();
  /** Records this replica verified in `ingest`, by signature, until the store hands them back (no second signature check). */
  readonly #verifiedHere = new Map<string, { text: string; receipt: Receipt }>();
  #verifying = 0;
  /** No row is older than this (a lower bound): a sweep before it has nothing to drop. */
  #oldestAt = Number.POSITIVE_INFINITY;
  /** When the next walk over every row may run (sweeps come every second; a walk at most once a minute). */
  #nextWalk = 0;
  /** Counts changes to the scores: a ranked order made at an older version is stale. */
  version = 0;
  readonly #onScores: (() => void)[] = [];
  readonly #settled: (() => void)[] = [];

  constructor(o: QualityBookOptions) {
    this.#o = o;
    this.#log = o.log ?? silentLogger;
    this.#params = o.params ?? DEFAULT_SCORE_PARAMS;
    this.#limits = o.limits ?? DEFAULT_RECEIPT_LIMITS;
  }

  /** Whether every replica sees every receipt through the store (then one replica takes each). */
  get shared(): boolean {
    return this.#o.store.shared;
  }

  /** Receipts and probe results held. */
  get size(): number {
    return this.#rows.size;
  }

  /** The probers' period and the fewest probers a median needs (probe-score.ts). */
  get probeParams(): ProbeParams {
    return this.#o.probeParams ?? DEFAULT_PROBE_PARAMS;
  }

  /** The period receipts are kept for, in hours: what the reports count over. */
  get periodHours(): number {
    return Math.round(this.#limits.maxAgeMs / 3_600_000);
  }

  async start(): Promise<void> {
    await this.#o.store.start();
    await this.#o.store.follow((r) => void this.#take(r));
    await this.#idle();
    this.#flush();
  }

  async stop(): Promise<void> {
    if (this.#flushing) clearImmediate(this.#flushing);
    await this.#o.store.stop();
  }

  /**
   * A receipt (or, `kind` "probe", a prober's probe result) from anyone (NATS or HTTP): verified,
   * checked against replays and the signer's rate (both kinds count), stored.
   */
  async ingest(input: unknown, kind: EvidenceKind = "receipt"): Promise<"stored" | "duplicate"> {
    const { signed, receipt } = await verifySignedReceipt(input, { directory: this.#o.directory, maxAgeMs: this.#limits.maxAgeMs, kind });
    const id = receiptId(receipt, kind);
    if (this.#rows.has(rowIdOf(id))) return "duplicate";
    const hour = Math.floor(Date.now() / 3_600_000);
    const limit = this.#o.perSignerPerHour ?? 240;
    let rate = this.#perSigner.get(receipt.consumer);
    if (!rate || rate.hour !== hour) {
      if (this.#perSigner.size > 100_000) this.#perSigner.clear();
      this.#perSigner.set(receipt.consumer, (rate = { hour, count: 0 }));
    }
    if (rate.count >= limit) throw new ReceiptFloodError(receipt.consumer, limit);
    rate.count++;
    if (this.#verifiedHere.size >= 10_000) this.#verifiedHere.clear();
    this.#verifiedHere.set(signed.signature, { text: signed.receipt, receipt });
    const result = await this.#o.store.append(receipt.provider, receipt.consumer, id, Buffer.from(JSON.stringify(signed)), kind);
    if (result === "duplicate") this.#verifiedHere.delete(signed.signature);
    // A store that is not shared hands it straight back to #take; a shared one delivers it through follow.
    return result;
  }

  /** Takes a receipt from the store: verified again (the store is a fence, not a proof), then held as a row. */
  async #take(r: StoredReceipt): Promise<void> {
    if (r.data.length > MAX_SIGNED_RECEIPT_BYTES) return;
    this.#verifying++;
    try {
      const input = JSON.parse(Buffer.from(r.data).toString("utf8"));
      const kind = kindOf(input?.receipt);
      // What this replica verified a moment ago, byte for byte, is not checked twice; anything else is.
      const mine = typeof input?.signature === "string" ? this.#verifiedHere.get(input.signature) : undefined;
      if (mine && mine.text === input.receipt) {
        this.#verifiedHere.delete(input.signature);
        this.#hold(mine.receipt, kind);
        return;
      }
      const { receipt } = await verifySignedReceipt(input, {
        directory: this.#o.directory,
        maxAgeMs: this.#limits.maxAgeMs,
        now: Math.max(Date.now(), r.storedAt),
        kind,
      });
      this.#hold(receipt, kind);
    } catch (err) {
      if (!(err instanceof ReceiptRejected) && !(err instanceof SyntaxError))
        this.#log.warn({ err: (err as Error).message }, "a stored receipt could not be checked");
    } finally {
      if (--this.#verifying === 0) for (const w of this.#settled.splice(0)) w();
    }
  }

  /** Adds a verified receipt's row to its proposal's chain (its promise checked here, once). */
  #hold(receipt: Receipt, kind: EvidenceKind): void {
    const id = rowIdOf(receiptId(receipt, kind));
    if (this.#rows.has(id)) return;
    const probe = kind === "probe";
    let k = this.#key(receipt.provider, receipt.serviceType);
    if (!k) {
      k = new Keyed(receipt.provider, receipt.serviceType, this.#keys.get(receipt.provider));
      this.#keys.set(receipt.provider, k);
    }
    const row = rowOf(receipt, receipt.provider, this.#o.promiseCheck, this.#params, kind);
    this.#oldestAt = Math.min(this.#oldestAt, row.at);
    this.#chain(k, probe, this.#rows.add(row, id, probe ? k.probeHead : k.receiptHead), 1);
    this.#limitSigner(receipt.provider, receipt.consumer, probe);
  }

  /**
   * The store keeps at most perSignerPerProvider of one signer about one provider (every service type
   * together, receipts and probe results apart), pushing out the one it took first (a stream's
   * per-subject limit): so does this view.
   */
  #limitSigner(provider: string, signer: string, probe: boolean): void {
    let mine = 0;
    let oldest: { k: Keyed; slot: number } | undefined;
    for (let k = this.#keys.get(provider); k; k = k.next)
      for (const s of this.#rows.chain(probe ? k.probeHead : k.receiptHead))
        if (this.#rows.consumerOf(s) === signer) {
          mine++;
          if (!oldest || this.#rows.seq(s) < this.#rows.seq(oldest.slot)) oldest = { k, slot: s };
        }
    if (mine <= this.#limits.perSignerPerProvider || !oldest) return;
    const { k, slot } = oldest;
    this.#chain(k, probe, this.#rows.remove(slot, probe ? k.probeHead : k.receiptHead), -1);
  }

  /** Sets a chain's new head after `delta` rows were added (or removed), and marks its score stale. */
  #chain(k: Keyed, probe: boolean, head: number, delta: number): void {
    if (probe) [k.probeHead, k.nProbes] = [head, k.nProbes + delta];
    else [k.receiptHead, k.nReceipts] = [head, k.nReceipts + delta];
    this.#changed(k);
  }

  /** Marks a proposal's score stale; it is computed again once the current batch of receipts is taken. */
  #changed(k: Keyed): void {
    this.#dirty.add(k);
    this.#flushing ??= setImmediate(() => this.#flush());
  }

  /** Computes the scores of the proposals whose rows changed. */
  #flush(): void {
    if (this.#flushing) clearImmediate(this.#flushing);
    this.#flushing = undefined;
    if (this.#dirty.size === 0) return;
    for (const k of this.#dirty) {
      const { score } = this.#compute(k);
      k.score = score.score;
      k.receipts = score.receipts;
      this.#noteChange(k);
    }
    this.#dirty.clear();
    this.#bump();
  }

  #bump(): void {
    this.version++;
    for (const listener of this.#onScores) listener();
  }

  /** Calls `listener` after each batch of score changes (the replica's ranked order is updated from it). */
  onScores(listener: () => void): void {
    this.#onScores.push(listener);
  }

  #compute(k: Keyed): { score: QualityScore; probe: ProbeScore } {
    const probe = probeScoreOfRows(this.#rows.rows(k.probeHead), this.probeParams);
    return { score: scoreOfRows(this.#rows.rows(k.receiptHead), this.#params, probe.score), probe };
  }

  #noteChange(k: Keyed): void {
    if (this.#changes && this.#changes.size >= 50_000) this.#changes = null;
    this.#changes?.add(`${k.provider}/${k.serviceType}`);
  }

  /**
   * The `<provider>/<serviceType>` keys whose score changed since the last call (what a ranked order
   * must move), or null when too many changed to list (then make the order again in full).
   */
  takeChanges(): Set<string> | null {
    if (this.#dirty.size > 0) this.#flush();
    const changes = this.#changes;
    this.#changes = new Set();
    return changes;
  }

  /** Resolves once no stored receipt is being verified (tests; the replica's load). */
  #idle(): Promise<void> {
    return this.#verifying === 0 ? Promise.resolve() : new Promise((resolve) => this.#settled.push(resolve));
  }

  /** Resolves once every receipt taken so far is held and scored. */
  async idle(): Promise<void> {
    await this.#idle();
    this.#flush();
  }

  /**
   * Drops what aged out: nothing to do (and no walk) until the oldest row is past the retention, then a
   * walk over every row at most once a minute (a receipt kept a minute longer changes nothing).
   */
  sweep(now = Date.now()): void {
    const before = now - this.#limits.maxAgeMs;
    if (this.#oldestAt > before || Date.now() < this.#nextWalk) return;
    this.#nextWalk = Date.now() + 60_000;
    let oldest = Number.POSITIVE_INFINITY;
    for (const [provider, first] of this.#keys) {
      for (let k: Keyed | undefined = first; k; k = k.next)
        for (const probe of [false, true])
          for (const s of [...this.#rows.chain(probe ? k.probeHead : k.receiptHead)]) {
            const at = this.#rows.at(s);
            if (at <= before) this.#chain(k, probe, this.#rows.remove(s, probe ? k.probeHead : k.receiptHead), -1);
            else oldest = Math.min(oldest, at);
          }
      let emptied = false;
      for (let k: Keyed | undefined = first; k; k = k.next) emptied ||= k.nReceipts + k.nProbes === 0;
      if (!emptied) continue;
      const kept: Keyed[] = [];
      for (let k: Keyed | undefined = first; k; k = k.next) {
        if (k.nReceipts + k.nProbes > 0) kept.push(k);
        else {
          this.#dirty.delete(k);
          this.#noteChange(k);
          this.#bump();
        }
      }
      kept.forEach((k, i) => (k.next = kept[i + 1]));
      if (kept.length > 0) this.#keys.set(provider, kept[0]);
      else this.#keys.delete(provider);
    }
    this.#oldestAt = oldest;
  }

  #key(provider: string, serviceType: string): Keyed | undefined {
    for (let k = this.#keys.get(provider.toLowerCase()); k; k = k.next) if (k.serviceType === serviceType) return k;
    return undefined;
  }

  /** The score of `provider`'s `serviceType`, in full (computed from its rows: for reports, not queries). */
  score(provider: string, serviceType: string): QualityScore {
    const k = this.#key(provider, serviceType);
    return k ? this.#compute(k).score : scoreOfRows([], this.#params, null);
  }

  /** The probers' median for `provider`'s `serviceType` (probe-score.ts). */
  probeScore(provider: string, serviceType: string): ProbeScore {
    const k = this.#key(provider, serviceType);
    return k ? this.#compute(k).probe : probeScoreOfRows([], this.probeParams);
  }

  /** The score a query reads (kept up to date as receipts arrive); undefined: no receipt or probe result. */
  rated(provider: string, serviceType: string): Rated | undefined {
    if (this.#dirty.size > 0 && !this.#flushing) this.#flush();
    return this.#key(provider, serviceType);
  }

  /** What sort=quality sorts by: the score, or the neutral prior when unrated. */
  rank(provider: string, serviceType: string): number {
    return this.rated(provider, serviceType)?.rank ?? NEUTRAL_SCORE;
  }

  /** Whether a provider has any receipt or probe result (rated or not). */
  has(provider: string, serviceType: string): boolean {
    return this.#key(provider, serviceType) !== undefined;
  }

  /**
   * The raw signed receipts and probe results about a provider (every service type, or one), newest
   * first: read back from the store, and only those this replica holds (verified, not pushed out).
   */
  async evidence(provider: string, serviceType?: string): Promise<{ receipts: RawEvidence[]; probes: RawEvidence[] }> {
    const who = provider.toLowerCase();
    const held = new Map<string, Set<string>>();
    for (const type of this.serviceTypes(who)) {
      if (serviceType !== undefined && type !== serviceType) continue;
      const k = this.#key(who, type)!;
      held.set(type, new Set([...this.#rows.idsOf(k.receiptHead)].map((x) => `r${x}`).concat([...this.#rows.idsOf(k.probeHead)].map((x) => `p${x}`))));
    }
    const out = { receipts: [] as (RawEvidence & { at: number })[], probes: [] as (RawEvidence & { at: number })[] };
    if (held.size === 0) return out;
    for (const r of await this.#o.store.read(who)) {
      const raw = rawOf(r);
      if (!raw) continue;
      const id = rowIdOf(receiptId(raw.receipt, raw.kind));
      if (!held.get(raw.receipt.serviceType)?.has(`${raw.kind === "probe" ? "p" : "r"}${id.hi}/${id.lo}`)) continue;
      (raw.kind === "probe" ? out.probes : out.receipts).push({ serviceType: raw.receipt.serviceType, signed: raw.signed, at: raw.receipt.at });
    }
    const newest = (list: (RawEvidence & { at: number })[]) => list.sort((a, b) => b.at - a.at).map(({ serviceType, signed }) => ({ serviceType, signed }));
    return { receipts: newest(out.receipts), probes: newest(out.probes) };
  }

  /**
   * Changes whenever the rows held about `provider` change (added, pushed out, aged out): what a cached
   * answer of `evidence` is checked against (quality-reads.ts). A row that replaces one just dropped at
   * the chain's head in its slot can leave it unchanged: a cache also bounds an answer's age.
   */
  evidenceStamp(provider: string): string {
    let stamp = "";
    for (let k = this.#keys.get(provider.toLowerCase()); k; k = k.next)
      stamp += `${k.serviceType}:${k.receiptHead}:${k.probeHead}:${k.nReceipts}:${k.nProbes};`;
    return stamp;
  }

  /** The raw signed receipts about a provider (every service type, or one), newest first. */
  async receipts(provider: string, serviceType?: string): Promise<RawEvidence[]> {
    return (await this.evidence(provider, serviceType)).receipts;
  }

  /** The raw signed probe results about a provider (every service type, or one), newest first. */
  async probes(provider: string, serviceType?: string): Promise<RawEvidence[]> {
    return (await this.evidence(provider, serviceType)).probes;
  }

  /** The service types a provider has receipts for. */
  serviceTypes(provider: string): string[] {
    const out: string[] = [];
    for (let k = this.#keys.get(provider.toLowerCase()); k; k = k.next) out.push(k.serviceType);
    return out.sort();
  }

  /** The provider's report for one service type: its score and its failures in words. */
  report(provider: string, serviceType: string, periodHours: number): QualityReport {
    const k = this.#key(provider, serviceType);
    const { score: s, probe } = k ? this.#compute(k) : { score: this.score(provider, serviceType), probe: this.probeScore(provider, serviceType) };
    return {
      ...s,
      provider: provider.toLowerCase(),
      serviceType,
      weightWei: s.weightWei.toString(),
      words: failureWords(s, periodHours),
      probe,
      probeWords: probeWords(probe),
    };
  }
}

/** A raw signed record as the recompute API serves it. */
export interface RawEvidence {
  serviceType: string;
  signed: SignedReceipt;
}

/** A stored record decoded again (strictly; its signature was checked when it was taken), or null. */
function rawOf(r: StoredReceipt): { signed: SignedReceipt; receipt: Receipt; kind: EvidenceKind } | null {
  try {
    const input = JSON.parse(Buffer.from(r.data).toString("utf8")) as SignedReceipt;
    const kind = kindOf(input?.receipt);
    const receipt = parseReceipt(input.receipt, kind);
    if (typeof input.signature !== "string") return null;
    return { signed: { receipt: input.receipt, signature: input.signature }, receipt, kind };
  } catch {
    return null;
  }
}
