import { subjectOf } from "../../node/dialog/dialogs";
import type { IdentityKey } from "../../node/identity/key";
import { PROPOSAL_FORMAT, signProposal, type Proposal, type SignedProposal } from "../../node/proposal/proposal";

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

/** A proposal of `provider`, valid for an hour, with any fields overridden. */
export function makeProposal(provider: IdentityKey, overrides: DeepPartial<Proposal> = {}, brokerUrl = "nats://127.0.0.1:4222"): Proposal {
  const now = Date.now();
  const base: Proposal = {
    format: PROPOSAL_FORMAT,
    provider: provider.address,
    serviceType: "noop",
    location: { country: "DE", city: "Berlin", asn: 3320, isp: "Example ISP", ipType: "residential" },
    price: { currency: "MYST", perHour: "100000000000000000", perGiB: "200000000000000000" },
    bandwidthMbps: 100,
    contacts: [{ type: "nats/v1", brokerUrls: [brokerUrl], subject: subjectOf(provider.address) }],
    createdAt: now,
    expiresAt: now + 3_600_000,
  };
  return {
    ...base,
    ...overrides,
    location: { ...base.location, ...overrides.location },
    price: { ...base.price, ...overrides.price },
  } as Proposal;
}

export function signedProposal(provider: IdentityKey, overrides: DeepPartial<Proposal> = {}): SignedProposal {
  return signProposal(provider, makeProposal(provider, overrides));
}
