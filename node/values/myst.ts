import { MystError } from "../errors/MystError";

/**
 * MYST (decimal, e.g. "0.05") → wei, with an error naming where the amount came from. The pattern
 * admits only digits with at most 18 decimals, so the wei are the digits with the decimals padded to
 * 18 (ethers' `parseUnits(value, 18)` gives the same; importing ethers cost every CLI command ~0.2 s).
 */
export function mystToWei(value: string, name: string): bigint {
  const m = /^(\d{1,20})(?:\.(\d{1,18}))?$/.exec(value);
  if (!m) throw new MystError("BAD_AMOUNT", `${name} "${value}" is not an amount of MYST (e.g. 0.05)`);
  return BigInt(m[1] + (m[2] ?? "").padEnd(18, "0"));
}

const WEI_PER_MYST = 10n ** 18n;

/** Wei (a bigint, or its decimal or 0x text) → MYST as ethers' `formatUnits(wei, 18)` writes it: "0.05", "12.0". */
export function weiToMyst(wei: bigint | string | number): string {
  const value = BigInt(wei);
  const size = value < 0n ? -value : value;
  const decimals = (size % WEI_PER_MYST).toString().padStart(18, "0").replace(/0+$/, "");
  return `${value < 0n ? "-" : ""}${size / WEI_PER_MYST}.${decimals || "0"}`;
}
