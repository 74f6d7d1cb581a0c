import type { SignerDirectory } from "../identity/protocol-signature";
import { silentLogger, type Logger } from "../log/logger";
import { MystError } from "../errors/MystError";
import { DEFAULT_PROBE_PARAMS, type ProbeParams, type ProbeScore, probeScoreOf, probeWords } from "../quality/probe-score";
import {
  type EvidenceKind,
  kindOf,
  MAX_SIGNED_RECEIPT_BYTES,
  type Receipt,
  ReceiptRejected,
  receiptId,
  type SignedReceipt,
  verifySignedReceipt,
} from "../quality/receipt";
import { DEFAULT_SCORE_PARAMS, failureWords, type PromiseCheck, type QualityScore, type ScoreParams, scoreOf } from "../quality/score";
import { DEFAULT_RECEIPT_LIMITS, type ReceiptLimits, type ReceiptStore, type StoredReceipt } from "./receipt-store";

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

interface Held {
  id: string;
  signed: SignedReceipt;
  receipt: Receipt;
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
 * store, and followed from it by every replica, which keeps them per (provider, service type) and
 * scores them (score.ts) when asked. The store is the source; this view is rebuilt from it at start.
 */
export class QualityBook {
  readonly #o: QualityBookOptions;
  readonly #log: Logger;
  readonly #params: ScoreParams;
  readonly #limits: ReceiptLimits;
  /** `<provider>/<serviceType>` → its receipts. */
  readonly #byKey = new Map<string, Held[]>();
  /** `<provider>/<serviceType>` → its probe results. */
  readonly #probesByKey = new Map<string, Held[]>();
  readonly #ids = new Set<string>();
  readonly #scores = new Map<string, { score: QualityScore; probe: ProbeScore }>();
  readonly #perSigner = new Map<string, { hour: number; count: number }>();
  #verifying = 0;
  /** Counts changes to the receipts held: a ranked order made at an older version is stale. */
  version = 0;
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

  get size(): number {
    return this.#ids.size;
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
  }

  async stop(): Promise<void> {
    await this.#o.store.stop();
  }

  /**
   * A receipt (or, `kind` "probe", a prober's probe result) from anyone (NATS or HTTP): verified,
   * checked against replays and the signer's rate (both kinds count), stored.
   */
  async ingest(input: unknown, kind: EvidenceKind = "receipt"): Promise<"stored" | "duplicate"> {
    const { signed, receipt } = await verifySignedReceipt(input, { directory: this.#o.directory, maxAgeMs: this.#limits.maxAgeMs, kind });
    const id = receiptId(receipt, kind);
    if (this.#ids.has(id)) return "duplicate";
    const hour = Math.floor(Date.now() / 3_600_000);
    const limit = this.#o.perSignerPerHour ?? 240;
    let rate = this.#perSigner.get(receipt.consumer);
    if (!rate || rate.hour !== hour) {
      if (this.#perSigner.size > 100_000) this.#perSigner.clear();
      this.#perSigner.set(receipt.consumer, (rate = { hour, count: 0 }));
    }
    if (rate.count >= limit) throw new ReceiptFloodError(receipt.consumer, limit);
    rate.count++;
    const result = await this.#o.store.append(receipt.provider, receipt.consumer, id, Buffer.from(JSON.stringify(signed)), kind);
    // A store that is not shared hands it straight back to #take; a shared one delivers it through follow.
    return result;
  }

  /** Takes a receipt from the store: verified again (the store is a fence, not a proof), then held. */
  async #take(r: StoredReceipt): Promise<void> {
    if (r.data.length > MAX_SIGNED_RECEIPT_BYTES) return;
    this.#verifying++;
    try {
      const input = JSON.parse(Buffer.from(r.data).toString("utf8"));
      const kind = kindOf(input?.receipt);
      const { signed, receipt } = await verifySignedReceipt(input, {
        directory: this.#o.directory,
        maxAgeMs: this.#limits.maxAgeMs,
        now: Math.max(Date.now(), r.storedAt),
        kind,
      });
      const id = receiptId(receipt, kind);
      if (this.#ids.has(id)) return;
      this.#ids.add(id);
      const key = `${receipt.provider}/${receipt.serviceType}`;
      const map = kind === "probe" ? this.#probesByKey : this.#byKey;
      let list = map.get(key);
      if (!list) map.set(key, (list = []));
      list.push({ id, signed, receipt });
      // The store keeps at most perSignerPerProvider of one signer about one provider: so does this view.
      const mine = list.filter((h) => h.receipt.consumer === receipt.consumer);
      if (mine.length > this.#limits.perSignerPerProvider) {
        const oldest = mine.reduce((a, b) => (b.receipt.at < a.receipt.at ? b : a));
        list.splice(list.indexOf(oldest), 1);
        this.#ids.delete(oldest.id);
      }
      this.#scores.delete(key);
      this.version++;
    } catch (err) {
      if (!(err instanceof ReceiptRejected) && !(err instanceof SyntaxError))
        this.#log.warn({ err: (err as Error).message }, "a stored receipt could not be checked");
    } finally {
      if (--this.#verifying === 0) for (const w of this.#settled.splice(0)) w();
    }
  }

  /** Resolves once no stored receipt is being verified (tests; the replica's load). */
  #idle(): Promise<void> {
    return this.#verifying === 0 ? Promise.resolve() : new Promise((resolve) => this.#settled.push(resolve));
  }

  /** Resolves once every receipt taken so far is held. */
  idle(): Promise<void> {
    return this.#idle();
  }

  /** Drops what aged out. */
  sweep(now = Date.now()): void {
    for (const map of [this.#byKey, this.#probesByKey])
      for (const [key, list] of map) {
        const keep = list.filter((h) => h.receipt.at > now - this.#limits.maxAgeMs);
        if (keep.length === list.length) continue;
        for (const h of list) if (!keep.includes(h)) this.#ids.delete(h.id);
        if (keep.length === 0) map.delete(key);
        else map.set(key, keep);
        this.#scores.delete(key);
        this.version++;
      }
  }

  /** The score of `provider`'s `serviceType` (computed once per change). */
  score(provider: string, serviceType: string): QualityScore {
    return this.#scored(provider, serviceType).score;
  }

  /** The probers' median for `provider`'s `serviceType` (probe-score.ts). */
  probeScore(provider: string, serviceType: string): ProbeScore {
    return this.#scored(provider, serviceType).probe;
  }

  #scored(provider: string, serviceType: string): { score: QualityScore; probe: ProbeScore } {
    const key = `${provider.toLowerCase()}/${serviceType}`;
    let s = this.#scores.get(key);
    if (!s) {
      const probes = (this.#probesByKey.get(key) ?? []).map((h) => h.receipt);
      const probe = probeScoreOf(probes, provider, this.#o.promiseCheck, this.#o.probeParams ?? DEFAULT_PROBE_PARAMS, this.#params);
      const receipts = (this.#byKey.get(key) ?? []).map((h) => h.receipt);
      s = { score: scoreOf(receipts, provider, this.#o.promiseCheck, this.#params, probe.score), probe };
      this.#scores.set(key, s);
    }
    return s;
  }

  /** What sort=quality sorts by: the score, or the neutral prior when unrated. */
  rank(provider: string, serviceType: string): number {
    const key = `${provider.toLowerCase()}/${serviceType}`;
    if (!this.#byKey.has(key) && !this.#probesByKey.has(key)) return this.#scores.get(key)?.score.rank ?? 50;
    return this.score(provider, serviceType).rank;
  }

  /** Whether a provider has any receipt or probe result (rated or not). */
  has(provider: string, serviceType: string): boolean {
    const key = `${provider.toLowerCase()}/${serviceType}`;
    return this.#byKey.has(key) || this.#probesByKey.has(key);
  }

  /** The raw signed receipts about a provider (every service type, or one), newest first. */
  receipts(provider: string, serviceType?: string): { serviceType: string; signed: SignedReceipt }[] {
    return this.#raw(this.#byKey, provider, serviceType);
  }

  /** The raw signed probe results about a provider (every service type, or one), newest first. */
  probes(provider: string, serviceType?: string): { serviceType: string; signed: SignedReceipt }[] {
    return this.#raw(this.#probesByKey, provider, serviceType);
  }

  #raw(map: Map<string, Held[]>, provider: string, serviceType?: string): { serviceType: string; signed: SignedReceipt }[] {
    const out: { serviceType: string; signed: SignedReceipt; at: number }[] = [];
    for (const [key, list] of map) {
      if (!key.startsWith(`${provider.toLowerCase()}/`)) continue;
      const type = key.slice(43);
      if (serviceType !== undefined && type !== serviceType) continue;
      for (const h of list) out.push({ serviceType: type, signed: h.signed, at: h.receipt.at });
    }
    return out.sort((a, b) => b.at - a.at).map(({ serviceType, signed }) => ({ serviceType, signed }));
  }

  /** The service types a provider has receipts for. */
  serviceTypes(provider: string): string[] {
    const out = new Set<string>();
    for (const map of [this.#byKey, this.#probesByKey]) for (const key of map.keys()) if (key.startsWith(`${provider.toLowerCase()}/`)) out.add(key.slice(43));
    return [...out];
  }

  /** The provider's report for one service type: its score and its failures in words. */
  report(provider: string, serviceType: string, periodHours: number): QualityReport {
    const { score: s, probe } = this.#scored(provider, serviceType);
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
