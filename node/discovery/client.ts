import { ERRORS, type ErrorCode, type ErrorEntry } from "../errors/catalogue";
import { MystError } from "../errors/MystError";
import { matchesFilter, type ProposalFilter } from "../proposal/filter";
import { verifySignedProposal, type Proposal, type SignedProposal } from "../proposal/proposal";

export class DiscoveryError extends MystError {
  /** Whether another replica may answer (unreachable, not ready, failing), rather than this being the answer. */
  readonly failover: boolean;
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; failover?: boolean } = {}) {
    super(code, message, { cause: options.cause });
    this.failover = options.failover ?? false;
  }
}

/**
 * The codes a discovery replica answers with (the catalogue's discovery codes and the HTTP
 * plumbing's): a replica is someone else's server, so any other code it sends is not taken as one
 * of ours (a replica answering UNAUTHORIZED must not make our API say 401).
 */
export const DISCOVERY_ANSWERS: ReadonlySet<ErrorCode> = new Set(
  (Object.keys(ERRORS) as ErrorCode[]).filter((code) => {
    const entry: ErrorEntry = ERRORS[code];
    return entry.discovery !== undefined || entry.module === "http";
  }),
);

export interface FoundProposal {
  signed: SignedProposal;
  proposal: Proposal;
  /** Discovery's score of the provider (0–100; null: unrated), when it said one: its opinion, not signed by anyone. */
  quality?: { score: number | null; receipts: number };
}

/** The quality a replica attached to an item, if well formed (anything else is left out). */
function qualityOf(item: unknown): FoundProposal["quality"] {
  const q = (item as { quality?: { score?: unknown; receipts?: unknown } } | null)?.quality;
  if (!q) return undefined;
  const score = q.score === null || (typeof q.score === "number" && q.score >= 0 && q.score <= 100) ? q.score : undefined;
  if (score === undefined || typeof q.receipts !== "number" || !Number.isSafeInteger(q.receipts) || q.receipts < 0) return undefined;
  return { score, receipts: q.receipts };
}

/**
 * The consumer side of discovery: queries the HTTP API and re-verifies every proposal it gets
 * (shape, registered provider, signature, expiry), and that it matches what was asked for (the
 * filter; the provider and service type of a lookup) — discovery is a convenience, not an authority.
 * Given several replica URLs, it asks the last one that answered and fails over to the next when a
 * replica cannot be reached, times out, is not ready or fails (5xx); a 4xx is an answer.
 */
export class DiscoveryClient {
  readonly baseUrls: string[];
  #preferred = 0;

  constructor(
    baseUrls: string | string[],
    private readonly publicKeyOf: (identity: string) => Promise<Uint8Array | null>,
    /** Per replica asked: a query fails over after this long, and fails after every replica had it. */
    private readonly timeoutMs = 5000,
  ) {
    this.baseUrls = typeof baseUrls === "string" ? [baseUrls] : [...baseUrls];
    if (this.baseUrls.length === 0) throw new DiscoveryError("DISCOVERY_CONFIG", "no discovery URL given");
  }

  /** The replica asked first (the last one that answered). */
  get baseUrl(): string {
    return this.baseUrls[this.#preferred];
  }

  /** `rejected`: proposals of the answer dropped, for failing verification or for not matching `filter`. */
  async search(
    filter: ProposalFilter,
    page: { limit?: number; cursor?: string } = {},
  ): Promise<{ proposals: FoundProposal[]; nextCursor: string | null; rejected: number }> {
    const q = new URLSearchParams();
    if (filter.serviceType) q.set("service_type", filter.serviceType);
    if (filter.country) q.set("country", filter.country);
    if (filter.ipType) q.set("ip_type", filter.ipType);
    if (filter.ipv6) q.set("ipv6", "true");
    if (filter.accessPolicy) q.set("access_policy", filter.accessPolicy);
    if (filter.metering) q.set("metering", filter.metering);
    if (filter.maxPricePerHour !== undefined) q.set("max_price_per_hour", filter.maxPricePerHour.toString());
    if (filter.maxPricePerGiB !== undefined) q.set("max_price_per_gib", filter.maxPricePerGiB.toString());
    if (filter.minBandwidthMbps !== undefined) q.set("min_bandwidth", String(filter.minBandwidthMbps));
    for (const id of filter.providerIds ?? []) q.append("provider_id", id);
    if (filter.minQuality !== undefined) q.set("min_quality", String(filter.minQuality));
    if (filter.sort) q.set("sort", filter.sort);
    if (page.limit) q.set("limit", String(page.limit));
    if (page.cursor) q.set("cursor", page.cursor);
    const body = (await this.#get(`/v1/proposals?${q}`)) as { proposals: { signed: unknown }[]; next_cursor: string | null };
    const proposals: FoundProposal[] = [];
    let rejected = 0;
    const items = Array.isArray(body.proposals) ? body.proposals : [];
    for (const item of items) {
      try {
        const found = await verifySignedProposal(item?.signed, { publicKeyOf: this.publicKeyOf });
        // Signed by its provider, yet not what was asked for (a replica relabelled it, or answered another query).
        const quality = qualityOf(item);
        if (matchesFilter(found.proposal, filter)) proposals.push(quality ? { ...found, quality } : found);
        else rejected++;
      } catch {
        rejected++;
      }
    }
    return { proposals, nextCursor: body.next_cursor ?? null, rejected };
  }

  async get(provider: string, serviceType: string): Promise<FoundProposal | null> {
    try {
      const body = (await this.#get(`/v1/proposals/${provider}/${serviceType}`)) as { signed: unknown };
      const found = await verifySignedProposal(body.signed, { publicKeyOf: this.publicKeyOf });
      if (!matchesFilter(found.proposal, { providerIds: [provider], serviceType })) {
        throw new DiscoveryError("DISCOVERY_BAD_RESPONSE", `discovery answered a lookup of ${provider}/${serviceType} with another proposal`);
      }
      return found;
    } catch (err) {
      if (err instanceof DiscoveryError && err.code === "NOT_FOUND") return null;
      throw err;
    }
  }

  /** Sends a signed session receipt to discovery (the first replica that takes it): "stored" or "duplicate". */
  async postReceipt(signed: { receipt: string; signature: string }): Promise<string> {
    const body = (await this.#get("/v1/receipts", { method: "POST", body: JSON.stringify(signed) })) as { result?: unknown };
    return String(body.result);
  }

  /** Posts a prober's signed probe result (POST /v1/probes); "stored" or "duplicate". */
  async postProbe(signed: { receipt: string; signature: string }): Promise<string> {
    const body = (await this.#get("/v1/probes", { method: "POST", body: JSON.stringify(signed) })) as { result?: unknown };
    return String(body.result);
  }

  /** A provider's quality as discovery computes it, with the raw signed receipts (GET /v1/quality/{provider}). */
  async quality(provider: string): Promise<unknown> {
    return this.#get(`/v1/quality/${provider}`);
  }

  async #get(path: string, post?: { method: "POST"; body: string }): Promise<unknown> {
    const failed: DiscoveryError[] = [];
    // Captured once: concurrent queries move #preferred, and each query must try every replica.
    const first = this.#preferred;
    for (let i = 0; i < this.baseUrls.length; i++) {
      const at = (first + i) % this.baseUrls.length;
      try {
        const body = await this.#getFrom(this.baseUrls[at], path, post);
        this.#preferred = at;
        return body;
      } catch (err) {
        if (!(err instanceof DiscoveryError) || !err.failover) throw err;
        failed.push(err);
      }
    }
    if (failed.length === 1) throw failed[0];
    const last = failed[failed.length - 1];
    throw new DiscoveryError(
      last.code,
      `no discovery replica answered: ${failed.map((e) => e.message + (e.cause instanceof Error ? ` (${(e.cause.cause as Error | undefined)?.message ?? e.cause.message})` : "")).join("; ")}`,
      { cause: last, failover: true },
    );
  }

  async #getFrom(baseUrl: string, path: string, post?: { method: "POST"; body: string }): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(new URL(path, baseUrl), {
        signal: AbortSignal.timeout(this.timeoutMs),
        ...(post ? { ...post, headers: { "content-type": "application/json" } } : {}),
      });
    } catch (err) {
      throw new DiscoveryError("DISCOVERY_UNREACHABLE", `cannot reach discovery at ${baseUrl}`, { cause: err, failover: true });
    }
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw new DiscoveryError("DISCOVERY_UNREACHABLE", `discovery at ${baseUrl} stopped answering`, { cause: err, failover: true });
    }
    let body: { code?: string; message?: string } & Record<string, unknown>;
    try {
      body = JSON.parse(text);
    } catch {
      throw new DiscoveryError("DISCOVERY_BAD_RESPONSE", `discovery at ${baseUrl} answered ${response.status} with something that is not JSON`, {
        failover: true,
      });
    }
    if (!response.ok) {
      const code = DISCOVERY_ANSWERS.has(body.code as ErrorCode) ? (body.code as ErrorCode) : "DISCOVERY_BAD_RESPONSE";
      const theirs = code === body.code || typeof body.code !== "string" ? "" : `${body.code.slice(0, 64)}: `;
      throw new DiscoveryError(code, `discovery: ${theirs}${body.message ?? response.statusText}`, {
        failover: response.status >= 500,
      });
    }
    return body;
  }
}
