import { MystError } from "../errors/MystError";
import { canonicalIp, ipv6Groups } from "../values/ip";
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
  /** Reads from the store one client may have in progress at once (so a few cannot hold every one). Default 2. */
  inFlightPerClient?: number;
  /** How long an answer is served again while the provider's evidence held is unchanged (ms). Default 2000. */
  cacheMs?: number;
  /** Answers kept. Default 64. */
  cacheEntries?: number;
}

type Evidence = { receipts: RawEvidence[]; probes: RawEvidence[] };

/**
 * Whom a limit counts: an IPv4 address, or an IPv6 address's /64 (one host is usually given a whole
 * /64 and may take any address in it, so a limit per IPv6 address would limit nothing).
 */
export function clientOf(address: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1];
  const canonical = canonicalIp(address);
  if (!canonical?.includes(":")) return canonical ?? address;
  return `${ipv6Groups(canonical)
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(":")}::/64`;
}

/**
 * The quality route's guard: a token bucket per client (`clientOf`; the table bounded at 10,000 clients,
 * the least recently seen forgotten first, which only forgives), a cap on store reads in progress from
 * every client and from each one (a refused read gives its token back), and a small
 * cache of answers keyed by provider and service type, each valid while the evidence this replica holds
 * about that provider is unchanged (`QualityBook.evidenceStamp`) and for at most `cacheMs`. A cached
 * answer still counts against the client's rate: the limit bounds the work of serialising answers too.
 */
export class QualityReads {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #maxInFlight: number;
  readonly #maxPerClient: number;
  readonly #inFlightOf = new Map<string, number>();
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
    this.#maxPerClient = o.inFlightPerClient ?? 2;
    this.#cacheMs = o.cacheMs ?? 2000;
    this.#cacheEntries = o.cacheEntries ?? 64;
  }

  /**
   * Takes one read from the allowance of `address`'s client (`clientOf`); throws QualityReadLimitedError
   * when it has none left. Returns the client, for `evidence` and `refund`.
   */
  admit(address: string, now = Date.now()): string {
    const client = clientOf(address);
    let b = this.#buckets.get(client);
    if (b) this.#buckets.delete(client);
    else if (this.#buckets.size >= 10_000) this.#buckets.delete(this.#buckets.keys().next().value as string);
    b ??= { tokens: this.#burst, at: now };
    this.#buckets.set(client, b);
    b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#perMs);
    b.at = now;
    if (b.tokens < 1) {
      const wait = Math.ceil((1 - b.tokens) / this.#perMs / 1000);
      throw new QualityReadLimitedError(`${client} asked for more than ${Math.round(this.#perMs * 60_000)} quality reports a minute; retry in ${wait} s`, wait);
    }
    b.tokens--;
    return client;
  }

  /** Gives back the read `admit` took (the read was refused for another reason). */
  refund(client: string): void {
    const b = this.#buckets.get(client);
    if (b) b.tokens = Math.min(this.#burst, b.tokens + 1);
  }

  /** The provider's raw evidence (QualityBook.evidence), from the cache while it holds, else read from the store within the cap. */
  evidence(provider: string, serviceType: string | undefined, client = "", now = Date.now()): Promise<Evidence> {
    const key = `${provider}/${serviceType ?? ""}`;
    const stamp = this.book.evidenceStamp(provider);
    const held = this.#cache.get(key);
    if (held && held.stamp === stamp && held.until > now) return held.evidence;
    const own = this.#inFlightOf.get(client) ?? 0;
    if (this.#inFlight >= this.#maxInFlight || own >= this.#maxPerClient) {
      const whose = own >= this.#maxPerClient ? `${own} of ${client}'s` : `${this.#inFlight}`;
      throw new QualityReadLimitedError(`${whose} quality reports are being read from the store; retry in a second`, 1);
    }
    this.#inFlight++;
    this.#inFlightOf.set(client, own + 1);
    const evidence = this.book.evidence(provider, serviceType).finally(() => {
      this.#inFlight--;
      const left = (this.#inFlightOf.get(client) ?? 1) - 1;
      if (left > 0) this.#inFlightOf.set(client, left);
      else this.#inFlightOf.delete(client);
    });
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
