import { MystError } from "../errors/MystError";
import type { ProposalFilter } from "../proposal/filter";
import { verifySignedProposal, type Proposal, type SignedProposal } from "../proposal/proposal";

export class DiscoveryError extends MystError {}

export interface FoundProposal {
  signed: SignedProposal;
  proposal: Proposal;
}

/**
 * The consumer side of discovery: queries the HTTP API and re-verifies every proposal it gets
 * (shape, registered provider, signature, expiry) — discovery is a convenience, not an authority.
 */
export class DiscoveryClient {
  constructor(
    readonly baseUrl: string,
    private readonly publicKeyOf: (identity: string) => Promise<Uint8Array | null>,
    private readonly timeoutMs = 5000,
  ) {}

  async search(filter: ProposalFilter, page: { limit?: number; cursor?: string } = {}): Promise<{ proposals: FoundProposal[]; nextCursor: string | null; rejected: number }> {
    const q = new URLSearchParams();
    if (filter.serviceType) q.set("service_type", filter.serviceType);
    if (filter.country) q.set("country", filter.country);
    if (filter.ipType) q.set("ip_type", filter.ipType);
    if (filter.ipv6) q.set("ipv6", "true");
    if (filter.metering) q.set("metering", filter.metering);
    if (filter.maxPricePerHour !== undefined) q.set("max_price_per_hour", filter.maxPricePerHour.toString());
    if (filter.maxPricePerGiB !== undefined) q.set("max_price_per_gib", filter.maxPricePerGiB.toString());
    if (filter.minBandwidthMbps !== undefined) q.set("min_bandwidth", String(filter.minBandwidthMbps));
    for (const id of filter.providerIds ?? []) q.append("provider_id", id);
    if (page.limit) q.set("limit", String(page.limit));
    if (page.cursor) q.set("cursor", page.cursor);
    const body = (await this.#get(`/v1/proposals?${q}`)) as { proposals: { signed: unknown }[]; next_cursor: string | null };
    const proposals: FoundProposal[] = [];
    let rejected = 0;
    for (const item of body.proposals ?? []) {
      try {
        proposals.push(await verifySignedProposal(item.signed, { publicKeyOf: this.publicKeyOf }));
      } catch {
        rejected++;
      }
    }
    return { proposals, nextCursor: body.next_cursor ?? null, rejected };
  }

  async get(provider: string, serviceType: string): Promise<FoundProposal | null> {
    try {
      const body = (await this.#get(`/v1/proposals/${provider}/${serviceType}`)) as { signed: unknown };
      return await verifySignedProposal(body.signed, { publicKeyOf: this.publicKeyOf });
    } catch (err) {
      if (err instanceof DiscoveryError && err.code === "NOT_FOUND") return null;
      throw err;
    }
  }

  async #get(path: string): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(new URL(path, this.baseUrl), { signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new DiscoveryError("DISCOVERY_UNREACHABLE", `cannot reach discovery at ${this.baseUrl}`, { cause: err });
    }
    const text = await response.text();
    let body: { code?: string; message?: string } & Record<string, unknown>;
    try {
      body = JSON.parse(text);
    } catch {
      throw new DiscoveryError("DISCOVERY_BAD_RESPONSE", `discovery answered ${response.status} with something that is not JSON`);
    }
    if (!response.ok) throw new DiscoveryError(body.code ?? `HTTP_${response.status}`, `discovery: ${body.message ?? response.statusText}`);
    return body;
  }
}
