import type { TypedDataDomain, TypedDataField } from "ethers";

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
