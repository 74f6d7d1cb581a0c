import type { ProposalFilter } from "../proposal/filter";
import type { EntryTable } from "./index-entry";
import { type Candidates, merged, SortedEntries, walk } from "./sorted-entries";

/** The price band of an amount: 0 for free, else its bit length (a band holds prices within a factor of two). */
export function band(wei: bigint): number {
  return wei === 0n ? 0 : wei.toString(2).length;
}

/**
 * The index's buckets of listed slots (index.ts): by service type, country, IP type, country
 * + IP type, service type + country, metering and price band, each a sorted set; and the smallest walk
 * a filter allows (a provider's slots are a run of the key-ordered set of all).
 */
export class Buckets {
  readonly byService = new Map<string, SortedEntries>();
  readonly byCountry = new Map<string, SortedEntries>();
  readonly byCountryIpType = new Map<string, SortedEntries>();
  readonly byServiceCountry = new Map<string, SortedEntries>();
  readonly byIpType = new Map<string, SortedEntries>();
  readonly byMetering = new Map<string, SortedEntries>();
  readonly byHourBand = new Map<string, SortedEntries>();
  readonly byGiBBand = new Map<string, SortedEntries>();

  constructor(private readonly t: EntryTable) {}

  /**
   * The listed slots of one provider: a run of `all` (keys are `<provider>/<service type>`), so no set
   * per provider is kept (one cost ~400 bytes of heap per provider, most of them selling one type).
   */
  ofProvider(all: SortedEntries, provider: string): number[] {
    const out: number[] = [];
    const prefix = `${provider}/`;
    for (const e of all.after(provider)) {
      if (!(this.t.keys[e] as string).startsWith(prefix)) break;
      out.push(e);
    }
    return out;
  }

  /** Slots in key order. */
  readonly byKey = (a: number, b: number): number => {
    const x = this.t.keys[a] as string;
    const y = this.t.keys[b] as string;
    return x < y ? -1 : x > y ? 1 : 0;
  };

  /** The smallest walk that holds every match. */
  candidates(f: ProposalFilter, all: SortedEntries): Candidates {
    const keys = this.t.keys;
    const none = new SortedEntries(keys);
    const bucket = (map: Map<string, SortedEntries>, key: string) => walk(map.get(key) ?? none);
    const options: Candidates[] = [walk(all)];
    if (f.providerIds?.length) {
      const merge: number[] = [];
      for (const id of new Set(f.providerIds.map((a) => a.toLowerCase()))) merge.push(...this.ofProvider(all, id));
      options.push(walk(SortedEntries.fromSorted(keys, merge.sort(this.byKey))));
    }
    if (f.serviceType !== undefined) options.push(bucket(this.byService, f.serviceType));
    if (f.country !== undefined) options.push(bucket(this.byCountry, f.country));
    if (f.ipType !== undefined) options.push(bucket(this.byIpType, f.ipType));
    if (f.country !== undefined && f.ipType !== undefined) options.push(bucket(this.byCountryIpType, `${f.country}/${f.ipType}`));
    if (f.country !== undefined && f.serviceType !== undefined) options.push(bucket(this.byServiceCountry, `${f.serviceType}/${f.country}`));
    if (f.metering !== undefined) options.push(bucket(this.byMetering, f.metering));
    const bands = (map: Map<string, SortedEntries>, max: bigint) =>
      merged(
        keys,
        [...map].filter(([b]) => Number(b) <= band(max)).map(([, entries]) => entries),
      );
    if (f.maxPricePerHour !== undefined) options.push(bands(this.byHourBand, f.maxPricePerHour));
    if (f.maxPricePerGiB !== undefined) options.push(bands(this.byGiBBand, f.maxPricePerGiB));
    return options.reduce((a, b) => (b.size < a.size ? b : a));
  }

  of(e: number): [Map<string, SortedEntries>, string][] {
    const t = this.t;
    const key = t.keys[e] as string;
    const serviceType = key.slice(43);
    const country = t.labelOf(t.country[e]);
    const ipType = t.labelOf(t.ipType[e]);
    const buckets: [Map<string, SortedEntries>, string][] = [
      [this.byService, serviceType],
      [this.byCountry, country],
      [this.byIpType, ipType],
      [this.byCountryIpType, `${country}/${ipType}`],
      [this.byServiceCountry, `${serviceType}/${country}`],
      [this.byHourBand, String(t.hourBand[e])],
      [this.byGiBBand, String(t.gibBand[e])],
    ];
    // Pushed, not spread: this runs for every entry of a bulk load, and a spread costs an iterator each.
    if (t.perHour(e) > 0n) buckets.push([this.byMetering, "hour"]);
    if (t.perGiB(e) > 0n) buckets.push([this.byMetering, "gib"]);
    return buckets;
  }

  /**
   * Every bucket made again from `listed` (in key order): what `of` gives each slot, with each set
   * looked up once per distinct label (by label id, band and service type) instead of a list of
   * buckets and four strings per slot (this runs over every slot at the end of a load).
   */
  build(listed: readonly number[]): void {
    const t = this.t;
    for (const map of this.maps()) map.clear();
    const setOf = (map: Map<string, SortedEntries>, value: string): SortedEntries => {
      let set = map.get(value);
      if (!set) map.set(value, (set = new SortedEntries(t.keys)));
      return set;
    };
    const cached = <K>(cache: Map<K, SortedEntries>, k: K, make: () => SortedEntries) => {
      let set = cache.get(k);
      if (!set) cache.set(k, (set = make()));
      return set;
    };
    const country = new Map<number, SortedEntries>();
    const ipType = new Map<number, SortedEntries>();
    const countryIpType = new Map<number, Map<number, SortedEntries>>();
    const hourBand = new Map<number, SortedEntries>();
    const gibBand = new Map<number, SortedEntries>();
    const service = new Map<string, { set: SortedEntries; byCountry: Map<number, SortedEntries> }>();
    const hour = setOf(this.byMetering, "hour");
    const gib = setOf(this.byMetering, "gib");
    for (const e of listed) {
      const serviceType = (t.keys[e] as string).slice(43);
      const c = t.country[e];
      const ip = t.ipType[e];
      let s = service.get(serviceType);
      if (!s) service.set(serviceType, (s = { set: setOf(this.byService, serviceType), byCountry: new Map() }));
      s.set.append(e);
      cached(s.byCountry, c, () => setOf(this.byServiceCountry, `${serviceType}/${t.labelOf(c)}`)).append(e);
      cached(country, c, () => setOf(this.byCountry, t.labelOf(c))).append(e);
      cached(ipType, ip, () => setOf(this.byIpType, t.labelOf(ip))).append(e);
      let byIp = countryIpType.get(c);
      if (!byIp) countryIpType.set(c, (byIp = new Map()));
      cached(byIp, ip, () => setOf(this.byCountryIpType, `${t.labelOf(c)}/${t.labelOf(ip)}`)).append(e);
      cached(hourBand, t.hourBand[e], () => setOf(this.byHourBand, String(t.hourBand[e]))).append(e);
      cached(gibBand, t.gibBand[e], () => setOf(this.byGiBBand, String(t.gibBand[e]))).append(e);
      if (t.perHour(e) > 0n) hour.append(e);
      if (t.perGiB(e) > 0n) gib.append(e);
    }
    // `of` makes a metering bucket only when a slot is in it.
    if (hour.size === 0) this.byMetering.delete("hour");
    if (gib.size === 0) this.byMetering.delete("gib");
  }

  maps(): Map<string, SortedEntries>[] {
    return [this.byService, this.byCountry, this.byIpType, this.byCountryIpType, this.byServiceCountry, this.byMetering, this.byHourBand, this.byGiBBand];
  }
}
