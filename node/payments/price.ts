import { MystError } from "../errors/MystError";

export const GIB = 1n << 30n;
export const HOUR_MS = 3_600_000n;

export interface Price {
  /** wei per hour */
  perHour: bigint;
  /** wei per GiB (2^30 bytes) */
  perGiB: bigint;
}

/**
 * What `ms` milliseconds of session and `bytes` bytes moved cost, in wei:
 * perHour·ms/3,600,000 + perGiB·bytes/2^30, computed exactly over one common denominator and
 * rounded down once (a fraction of a wei never goes to the provider).
 */
export function priceOf(price: Price, usage: { ms: bigint; bytes: bigint }): bigint {
  if (usage.ms < 0n || usage.bytes < 0n) throw new MystError("BAD_USAGE", "usage cannot be negative");
  if (price.perHour < 0n || price.perGiB < 0n) throw new MystError("BAD_PRICE", "prices cannot be negative");
  return (price.perHour * usage.ms * GIB + price.perGiB * usage.bytes * HOUR_MS) / (HOUR_MS * GIB);
}

export function priceFromProposal(p: { price: { perHour: string; perGiB: string } }): Price {
  return { perHour: BigInt(p.price.perHour), perGiB: BigInt(p.price.perGiB) };
}
