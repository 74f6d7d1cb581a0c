import { AbiCoder, keccak256, type TypedDataDomain, type TypedDataField } from "ethers";

/**
 * The EIP-712 messages identities sign for the contracts. The contracts recompute these exact
 * structures; a change here is a protocol change.
 */

export const REGISTRY_NAME = "MystIdentityRegistry";
export const CHANNELS_NAME = "MystPaymentChannels";
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

export const promiseTypes: Record<string, TypedDataField[]> = {
  Promise: [
    { name: "channelId", type: "bytes32" },
    { name: "amount", type: "uint256" },
  ],
};

export function registryDomain(chainId: bigint, registry: string): TypedDataDomain {
  return { name: REGISTRY_NAME, version: VERSION, chainId, verifyingContract: registry };
}

export function channelsDomain(chainId: bigint, channels: string): TypedDataDomain {
  return { name: CHANNELS_NAME, version: VERSION, chainId, verifyingContract: channels };
}

/** The id of the channel from `consumer` to `provider`, as `PaymentChannels.channelId` computes it. */
export function channelIdOf(consumer: string, provider: string): string {
  return keccak256(AbiCoder.defaultAbiCoder().encode(["address", "address"], [consumer, provider]));
}
