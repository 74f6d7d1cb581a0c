import { MystError } from "../errors/MystError";
import type { QualityBook, RawEvidence } from "./quality";

/** A client asked for quality reports more often than a replica answers one address, or too many are being read. */
export class QualityReadLimitedError extends MystError {
  constructor(
    message: string,
    /** Seconds after which a retry may be answered. */
    readonly retryAfterS: number,
  ) {
    super("QUALITY_READ_LIMITED", message);
  }
}

/** What `GET /v1/quality/{provider}` may cost a replica (each answer not cached reads the provider's records from the store's disk). */
export interface QualityReadLimits {
  /** Reads one client address may start per minute (a token bucket refilled at this rate). Default 60. */
  perMinute?: number;
  /** Reads one address may start at once before the per-minute rate applies. Default 20. */
  burst?: number;
  /** Reads from the store in progress at once, from every client; more are refused. Default 8. */
  inFlight?: number;
  /** How long an answer is served again while the provider's evidence held is unchanged (ms). Default 2000. */
  cacheMs?: number;
  /** Answers kept. Default 64. */
  cacheEntries?: number;
}

type Evidence = { receipts: RawEvidence[]; probes: RawEvidence[] };

/**
 * The quality route's guard: a token bucket per client address (the table of addresses bounded: it
 * is emptied when it passes 10,000, which only forgives), a cap on store reads in progress, and a small
 * cache of answers keyed by provider and service type, each valid while the evidence this replica holds
 * about that provider is unchanged (`QualityBook.evidenceStamp`) and for at most `cacheMs`. A cached
 * answer still counts against the client's rate: the limit bounds the work of serialising answers too.
 */
export class QualityReads {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #maxInFlight: number;
  readonly #cacheMs: number;
  readonly #cacheEntries: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #cache = new Map<string, { stamp: string; until: number; evidence: Promise<Evidence> }>();
  #inFlight = 0;

  constructor(
    private readonly book: QualityBook,
    o: QualityReadLimits = {},
  ) {
    this.#perMs = (o.perMinute ?? 60) / 60_000;
    this.#burst = o.burst ?? 20;
    this.#maxInFlight = o.inFlight ?? 8;
    this.#cacheMs = o.cacheMs ?? 2000;
    this.#cacheEntries = o.cacheEntries ?? 64;
  }

  /** Takes one read from `client`'s allowance; throws QualityReadLimitedError when it has none left. */
  admit(client: string, now = Date.now()): void {
    let b = this.#buckets.get(client);
    if (!b) {
      if (this.#buckets.size >= 10_000) this.#buckets.clear();
      this.#buckets.set(client, (b = { tokens: this.#burst, at: now }));
    }
    b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#perMs);
    b.at = now;
    if (b.tokens < 1) {
      const wait = Math.ceil((1 - b.tokens) / this.#perMs / 1000);
      throw new QualityReadLimitedError(`${client} asked for more than ${Math.round(this.#perMs * 60_000)} quality reports a minute; retry in ${wait} s`, wait);
    }
    b.tokens--;
  }

  /** The provider's raw evidence (QualityBook.evidence), from the cache while it holds, else read from the store within the cap. */
  evidence(provider: string, serviceType: string | undefined, now = Date.now()): Promise<Evidence> {
    const key = `${provider}/${serviceType ?? ""}`;
    const stamp = this.book.evidenceStamp(provider);
    const held = this.#cache.get(key);
    if (held && held.stamp === stamp && held.until > now) return held.evidence;
    if (this.#inFlight >= this.#maxInFlight) {
      throw new QualityReadLimitedError(`${this.#inFlight} quality reports are being read from the store; retry in a second`, 1);
    }
    this.#inFlight++;
    const evidence = this.book.evidence(provider, serviceType).finally(() => this.#inFlight--);
    this.#cache.delete(key);
    if (this.#cache.size >= this.#cacheEntries) this.#cache.delete(this.#cache.keys().next().value as string);
    this.#cache.set(key, { stamp, until: now + this.#cacheMs, evidence });
    // A failed read is not served again.
    evidence.catch(() => {
      if (this.#cache.get(key)?.evidence === evidence) this.#cache.delete(key);
    });
    return evidence;
  }
}
