import { keccak_256 } from "@noble/hashes/sha3.js";
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

/**
 * EIP-55 (ethers' `getAddress` for 0x + 40 hex, or the 40 hex alone): the checksummed form; throws
 * for anything else or a mixed-case address whose checksum is wrong. Unlike ethers it refuses ICAP
 * (`XE…`) addresses: nothing in myst writes them. Here rather than ethers' so that
 * a CLI command that only names an address does not load ethers (~0.1 s of CPU at each start).
 */
function getAddress(value: string): string {
  if (typeof value !== "string" || !/^(0x)?[0-9a-fA-F]{40}$/.test(value)) throw new Error("not 0x + 40 hex");
  const hex = value.slice(-40);
  const lower = hex.toLowerCase();
  const hash = keccak_256(new TextEncoder().encode(lower));
  let out = "0x";
  for (let i = 0; i < 40; i++) out += ((hash[i >> 1] >> (i % 2 === 0 ? 4 : 0)) & 0x0f) >= 8 ? lower[i].toUpperCase() : lower[i];
  if (/[A-F]/.test(hex) && /[a-f]/.test(hex) && out.slice(2) !== hex) throw new Error("bad address checksum");
  return out;
}

function isAddress(value: string): boolean {
  try {
    getAddress(value);
    return true;
  } catch {
    return false;
  }
}

/** True when `a` and `b` name the same account, whatever their case (for values not yet made `Address`). */
export function sameAddress(a: string, b: string): boolean {
  return isAddress(a) && isAddress(b) && getAddress(a) === getAddress(b);
}
