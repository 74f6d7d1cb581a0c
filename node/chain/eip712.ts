import { keccak_256 } from "@noble/hashes/sha3.js";
import { TypedDataEncoder, getBytes, type TypedDataDomain, type TypedDataField } from "ethers";

/**
 * The EIP-712 messages identities sign for the contracts. The contracts recompute these exact
 * structures; a change here is a protocol change.
 */

export const REGISTRY_NAME = "MystIdentityRegistry";
export const VAULT_NAME = "MystConsumerVault";
const VERSION = "1";

export const registrationTypes: Record<string, TypedDataField[]> = {
  Registration: [
    { name: "identity", type: "address" },
    { name: "beneficiary", type: "address" },
  ],
};

export const beneficiaryChangeTypes: Record<string, TypedDataField[]> = {
  BeneficiaryChange: [
    { name: "identity", type: "address" },
    { name: "beneficiary", type: "address" },
    { name: "nonce", type: "uint256" },
  ],
};

/** The MYST token's EIP-2612 permit: a deposit into the vault signed by the consumer, no approval transaction. */
export const permitTypes: Record<string, TypedDataField[]> = {
  Permit: [
    { name: "owner", type: "address" },
    { name: "spender", type: "address" },
    { name: "value", type: "uint256" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};

/** A consumer's promise: the cumulative amount it owes `provider`, across sessions. */
export const promiseTypes: Record<string, TypedDataField[]> = {
  Promise: [
    { name: "consumer", type: "address" },
    { name: "provider", type: "address" },
    { name: "amount", type: "uint256" },
  ],
};

/**
 * A provider's consent to a relayed settlement: these claims, submitted by `relayer` alone (who takes
 * the fee, so a front-runner's copy of the call fails), a fee of at most `maxFee`, under its nonce.
 */
export const relayedSettlementTypes: Record<string, TypedDataField[]> = {
  RelayedSettlement: [
    { name: "provider", type: "address" },
    { name: "relayer", type: "address" },
    { name: "claims", type: "Claim[]" },
    { name: "maxFee", type: "uint256" },
    { name: "nonce", type: "uint256" },
  ],
  Claim: [
    { name: "consumer", type: "address" },
    { name: "amount", type: "uint256" },
  ],
};

export function registryDomain(chainId: bigint, registry: string): TypedDataDomain {
  return { name: REGISTRY_NAME, version: VERSION, chainId, verifyingContract: registry };
}

export function vaultDomain(chainId: bigint, vault: string): TypedDataDomain {
  return { name: VAULT_NAME, version: VERSION, chainId, verifyingContract: vault };
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const UINT256_MAX = (1n << 256n) - 1n;

/**
 * The EIP-712 digest of promises in one domain, with the domain separator and the type hash
 * computed once: a provider checks every promise it is paid with, and ethers' generic encoder
 * spends about 0.7 ms on each where these 128 bytes and two keccaks take a few µs. It must equal
 * `TypedDataEncoder.hash(domain, promiseTypes, …)` (test/node/payments/promise-digest.test.ts).
 */
export class PromiseDigests {
  static readonly TYPE_HASH = keccak_256(new TextEncoder().encode(TypedDataEncoder.from(promiseTypes).encodeType("Promise")));
  readonly #prefix: Uint8Array;

  constructor(domain: TypedDataDomain) {
    this.#prefix = new Uint8Array(34);
    this.#prefix.set([0x19, 0x01]);
    this.#prefix.set(getBytes(TypedDataEncoder.hashDomain(domain)), 2);
  }

  /** keccak256(0x1901 ‖ domain separator ‖ hashStruct(Promise)); throws on a malformed address or an amount outside uint256. */
  digest(consumer: string, provider: string, amount: bigint): Uint8Array {
    if (!ADDRESS.test(consumer) || !ADDRESS.test(provider)) throw new TypeError("a promise names its consumer and provider by address (0x + 40 hex)");
    if (amount < 0n || amount > UINT256_MAX) throw new RangeError(`a promise's amount is a uint256, not ${amount}`);
    const struct = new Uint8Array(128);
    struct.set(PromiseDigests.TYPE_HASH, 0);
    struct.set(Buffer.from(consumer.slice(2), "hex"), 44);
    struct.set(Buffer.from(provider.slice(2), "hex"), 76);
    struct.set(Buffer.from(amount.toString(16).padStart(64, "0"), "hex"), 96);
    const message = new Uint8Array(66);
    message.set(this.#prefix, 0);
    message.set(keccak_256(struct), 34);
    return keccak_256(message);
  }
}
