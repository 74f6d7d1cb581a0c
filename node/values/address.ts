import { getAddress, isAddress } from "ethers";
import { MystError } from "../errors/MystError";

declare const checksummed: unique symbol;

/**
 * An Ethereum address in its EIP-55 checksummed form, made once where it enters (a flag, a body,
 * a message, the keystore) with `toAddress`: two `Address` values are equal exactly when they name
 * the same account, so they are compared with `===`, never lower-cased.
 */
export type Address = string & { readonly [checksummed]: true };

/** `value` as an `Address`, or INVALID_ADDRESS naming `what` (e.g. "provider", "--beneficiary"). */
export function toAddress(value: string, what = "address"): Address {
  if (typeof value !== "string" || !isAddress(value)) throw new MystError("INVALID_ADDRESS", `${what} "${value}" is not an address (0x + 40 hex)`);
  return getAddress(value) as Address;
}

/** True when `a` and `b` name the same account, whatever their case (for values not yet made `Address`). */
export function sameAddress(a: string, b: string): boolean {
  return isAddress(a) && isAddress(b) && getAddress(a) === getAddress(b);
}
