import { getAddress, isAddress } from "ethers";
import { MystError } from "../errors/MystError";

declare const checksummed: unique symbol;

/**
 * An Ethereum address in its EIP-55 checksummed form, made once where it enters (a flag, a body,
 * a message, the keystore) with `toAddress`: two `Address` values are equal exactly when they name
 * the same account, so they are compared with `===`, never lower-cased.
 */
export type Address = string & { readonly [checksummed]: true };

/**
 * Addresses already made, by the exact text they were made from: every dialog message names two,
 * and EIP-55 costs a keccak (as much as verifying the message's signature). Bounded; the oldest
 * entry goes first.
 */
const made = new Map<string, Address>();
const MADE_MAX = 10_000;

/** `value` as an `Address`, or INVALID_ADDRESS naming `what` (e.g. "provider", "--beneficiary"). */
export function toAddress(value: string, what = "address"): Address {
  const known = typeof value === "string" ? made.get(value) : undefined;
  if (known) return known;
  let address: Address;
  try {
    address = getAddress(value) as Address;
  } catch {
    throw new MystError("INVALID_ADDRESS", `${what} "${value}" is not an address (0x + 40 hex)`);
  }
  if (made.size >= MADE_MAX) made.delete(made.keys().next().value!);
  made.set(value, address);
  return address;
}

/** True when `a` and `b` name the same account, whatever their case (for values not yet made `Address`). */
export function sameAddress(a: string, b: string): boolean {
  return isAddress(a) && isAddress(b) && getAddress(a) === getAddress(b);
}
