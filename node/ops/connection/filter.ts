import type { Static } from "@sinclair/typebox";
import { FilterError, parseFilter, type ProposalFilter } from "../../proposal/filter";
import { toAddress } from "../../values/address";
import { mystToWei } from "../../values/myst";
import type { ProposalQuery } from "./schemas";

/** The filter fields of a query or body, after their schema: one spelling (camelCase, MYST). */
export interface FilterInput {
  serviceType?: string;
  country?: string;
  ipType?: ProposalFilter["ipType"];
  ipv6?: boolean;
  metering?: "hour" | "gib";
  accessPolicy?: "open" | "allowlist";
  maxPricePerHour?: string;
  maxPricePerGiB?: string;
  minBandwidthMbps?: number;
  providerId?: string[];
  minQuality?: number;
  sort?: "quality";
}

/** The `ProposalFilter` of the API's filter fields: made here, once, at the edge (prices MYST → bigint wei). */
export function filterOf(f: FilterInput): ProposalFilter {
  const filter: ProposalFilter = {};
  if (f.serviceType !== undefined) filter.serviceType = f.serviceType;
  if (f.country !== undefined) filter.country = f.country.toUpperCase();
  if (f.ipType !== undefined) filter.ipType = f.ipType;
  if (f.ipv6) filter.ipv6 = true;
  if (f.metering !== undefined) filter.metering = f.metering;
  if (f.accessPolicy !== undefined) filter.accessPolicy = f.accessPolicy;
  if (f.maxPricePerHour !== undefined) filter.maxPricePerHour = mystToWei(f.maxPricePerHour, "maxPricePerHour");
  if (f.maxPricePerGiB !== undefined) filter.maxPricePerGiB = mystToWei(f.maxPricePerGiB, "maxPricePerGiB");
  if (f.minBandwidthMbps !== undefined) filter.minBandwidthMbps = f.minBandwidthMbps;
  if (f.minQuality !== undefined) filter.minQuality = f.minQuality;
  if (f.sort !== undefined) filter.sort = f.sort;
  if (f.providerId?.length) filter.providerIds = f.providerId.map((p) => toAddress(p, "providerId"));
  return filter;
}

const OLD_KEYS = ["service_type", "ip_type", "access_policy", "max_price_per_hour", "max_price_per_gib", "min_bandwidth", "provider_id"] as const;

/**
 * The filter of `GET /v1/proposals`: the one spelling, or the old one (snake_case, prices in wei;
 * deprecated, removed in the next version), not both for one field. Returns the keys of the old
 * spelling it met, for the route to warn about.
 */
export function proposalQueryFilter(query: Omit<Static<typeof ProposalQuery>, "limit" | "cursor">): { filter: ProposalFilter; deprecated: string[] } {
  const old: Record<string, string | string[]> = {};
  const current: FilterInput = {};
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    if ((OLD_KEYS as readonly string[]).includes(key)) old[key] = value as string | string[];
    else (current as Record<string, unknown>)[key] = value;
  }
  const filter = filterOf(current);
  const fromOld = parseFilter(old);
  for (const [field, value] of Object.entries(fromOld) as [keyof ProposalFilter, never][]) {
    if (value === undefined) continue;
    if (filter[field] !== undefined) throw new FilterError(`${field} is given twice (in the old spelling too): give it once`);
    filter[field] = value;
  }
  return { filter, deprecated: Object.keys(old) };
}
