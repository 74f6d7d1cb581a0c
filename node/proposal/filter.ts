import { MystError } from "../errors/MystError";
import { IP_TYPES, type IpType, type Proposal } from "./proposal";

/** What a consumer looks for. Every field is optional; all given ones must match. */
export interface ProposalFilter {
  serviceType?: string;
  country?: string;
  ipType?: IpType;
  /** "hour": priced per hour; "gib": priced per GiB. */
  metering?: "hour" | "gib";
  maxPricePerHour?: bigint;
  maxPricePerGiB?: bigint;
  minBandwidthMbps?: number;
  providerIds?: string[];
  /** true: only providers whose tunnel carries IPv6. */
  ipv6?: boolean;
  /** "open": only proposals anyone may use; "allowlist": only those restricted to an allow list. */
  accessPolicy?: "open" | "allowlist";
  /**
   * Discovery's opinion, not the proposal's: only providers whose quality score (0–100) is at least
   * this, unrated ones included (docs/quality.md). A consumer cannot check it from the proposal, so
   * `matchesFilter` ignores it.
   */
  minQuality?: number;
  /** "quality": best score first, unrated providers at the neutral score (50); default: key order. */
  sort?: "quality";
}

export class FilterError extends MystError {
  constructor(message: string) {
    super("BAD_FILTER", message);
  }
}

/**
 * Whether a proposal matches. `prices` lets a caller that filters many proposals (the discovery
 * index) pass prices it parsed once; `providerSet` is the lower-cased `providerIds`.
 */
export function matchesFilter(
  p: Proposal,
  f: ProposalFilter,
  prices: { perHour: bigint; perGiB: bigint } = { perHour: BigInt(p.price.perHour), perGiB: BigInt(p.price.perGiB) },
  providerSet?: Set<string>,
): boolean {
  if (f.serviceType !== undefined && p.serviceType !== f.serviceType) return false;
  if (f.country !== undefined && p.location.country !== f.country) return false;
  if (f.ipType !== undefined && p.location.ipType !== f.ipType) return false;
  if (f.metering === "hour" && prices.perHour === 0n) return false;
  if (f.metering === "gib" && prices.perGiB === 0n) return false;
  if (f.maxPricePerHour !== undefined && prices.perHour > f.maxPricePerHour) return false;
  if (f.maxPricePerGiB !== undefined && prices.perGiB > f.maxPricePerGiB) return false;
  if (f.minBandwidthMbps !== undefined && p.bandwidthMbps < f.minBandwidthMbps) return false;
  if (f.ipv6 === true && p.ipv6 !== true) return false;
  if (f.accessPolicy !== undefined && (p.accessPolicy ?? "open") !== f.accessPolicy) return false;
  if (f.providerIds?.length) {
    const set = providerSet ?? new Set(f.providerIds.map((a) => a.toLowerCase()));
    if (!set.has(p.provider.toLowerCase())) return false;
  }
  return true;
}

const FILTER_KEYS = new Set([
  "service_type",
  "country",
  "ip_type",
  "metering",
  "max_price_per_hour",
  "max_price_per_gib",
  "min_bandwidth",
  "provider_id",
  "ipv6",
  "access_policy",
  "min_quality",
  "sort",
]);

/**
 * The filter of a query string (`GET /v1/proposals?…`, `myst proposals …`): unknown keys and
 * malformed values are errors that name them.
 */
export function parseFilter(query: Record<string, string | string[] | undefined>, ignore: string[] = []): ProposalFilter {
  const f: ProposalFilter = {};
  const one = (key: string): string | undefined => {
    const v = query[key];
    if (Array.isArray(v)) {
      if (v.length > 1) throw new FilterError(`${key} may be given once`);
      return v[0];
    }
    return v;
  };
  for (const key of Object.keys(query)) {
    if (!FILTER_KEYS.has(key) && !ignore.includes(key)) throw new FilterError(`unknown filter "${key}"`);
  }
  const serviceType = one("service_type");
  if (serviceType !== undefined) {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(serviceType)) throw new FilterError(`service_type "${serviceType}" is malformed`);
    f.serviceType = serviceType;
  }
  const country = one("country");
  if (country !== undefined) {
    if (!/^[A-Za-z]{2}$/.test(country)) throw new FilterError(`country "${country}" is not a two-letter code`);
    f.country = country.toUpperCase();
  }
  const ipType = one("ip_type");
  if (ipType !== undefined) {
    if (!IP_TYPES.includes(ipType as IpType)) throw new FilterError(`ip_type must be one of ${IP_TYPES.join(", ")}`);
    f.ipType = ipType as IpType;
  }
  const metering = one("metering");
  if (metering !== undefined) {
    if (metering !== "hour" && metering !== "gib") throw new FilterError(`metering must be "hour" or "gib"`);
    f.metering = metering;
  }
  const wei = (key: string) => {
    const v = one(key);
    if (v === undefined) return undefined;
    if (!/^(0|[1-9][0-9]{0,77})$/.test(v)) throw new FilterError(`${key} "${v}" is not an amount in wei (a whole decimal number)`);
    return BigInt(v);
  };
  f.maxPricePerHour = wei("max_price_per_hour");
  f.maxPricePerGiB = wei("max_price_per_gib");
  const bw = one("min_bandwidth");
  if (bw !== undefined) {
    const n = Number(bw);
    if (!/^\d+(\.\d+)?$/.test(bw) || !Number.isFinite(n)) throw new FilterError(`min_bandwidth "${bw}" is not a number of Mbit/s`);
    f.minBandwidthMbps = n;
  }
  const ipv6 = one("ipv6");
  if (ipv6 !== undefined) {
    if (ipv6 !== "true" && ipv6 !== "false") throw new FilterError(`ipv6 must be "true" or "false"`);
    if (ipv6 === "true") f.ipv6 = true;
  }
  const access = one("access_policy");
  if (access !== undefined) {
    if (access !== "open" && access !== "allowlist") throw new FilterError(`access_policy must be "open" or "allowlist"`);
    f.accessPolicy = access;
  }
  const minQuality = one("min_quality");
  if (minQuality !== undefined) {
    const n = Number(minQuality);
    if (!/^\d+(\.\d+)?$/.test(minQuality) || n > 100) throw new FilterError(`min_quality "${minQuality}" is not a score from 0 to 100`);
    f.minQuality = n;
  }
  const sort = one("sort");
  if (sort !== undefined) {
    if (sort !== "quality") throw new FilterError(`sort must be "quality"`);
    f.sort = sort;
  }
  const ids = query.provider_id;
  if (ids !== undefined) {
    const list = (Array.isArray(ids) ? ids : [ids]).flatMap((s) => s.split(","));
    if (list.length > 100) throw new FilterError("at most 100 provider_id values");
    for (const id of list) if (!/^0x[0-9a-fA-F]{40}$/.test(id)) throw new FilterError(`provider_id "${id}" is not an address`);
    f.providerIds = list;
  }
  for (const k of Object.keys(f) as (keyof ProposalFilter)[]) if (f[k] === undefined) delete f[k];
  return f;
}
