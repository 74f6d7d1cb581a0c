import type { SignerDirectory } from "../../identity/protocol-signature";
import { type Proposal, ProposalError, verifySignedProposal } from "../../proposal/proposal";
import { announcedAddressesOf } from "../../session/offer-addresses";
import { TunnelError } from "../system";
import type { RelayConsumerData } from "./config";

/**
 * Whether the peers a relay's consumer names are its provider's (a relay is not a paid open relay to
 * any address its consumer likes): the consumer's data carries the provider's signed proposal
 * (`provider`), which must be signed by the identity it names, that identity registered, the
 * proposal unexpired and for a service other than a relay; and each named peer must be among the
 * public addresses its direct contact announces. TURN permissions are per IP, so the address is
 * what is checked, not the port. Returns the provider's identity; refuses with BAD_CONSUMER_DATA
 * and a sentence that says which check failed.
 */
export async function checkProviderPeers(consumerData: unknown, peers: string[], directory: SignerDirectory): Promise<string> {
  const signed = (consumerData as RelayConsumerData | null)?.provider;
  if (signed === undefined)
    throw new TunnelError(
      "BAD_CONSUMER_DATA",
      "a relay session must carry the provider's signed proposal: the relay relays only to the addresses it announces",
    );
  const proposal = await verifyCarriedProposal(signed, directory, "the provider's proposal a relay session carries");
  if (proposal.serviceType === "relay") throw new TunnelError("BAD_CONSUMER_DATA", "the proposal a relay session carries is a relay's, not a provider's");
  const announced = announcedAddressesOf(proposal);
  const foreign = peers.filter((p) => !announced.includes(p));
  if (foreign.length > 0)
    throw new TunnelError(
      "BAD_CONSUMER_DATA",
      `a relay session names ${foreign.join(", ")}, not an address provider ${proposal.provider} announces (${announced.join(", ") || "it announces none"})`,
    );
  return proposal.provider;
}

/**
 * A signed proposal a consumer's data carries (a provider's in a relay session, a relay's in a proxy's
 * dial-back), verified: one that fails a check is the consumer's to mend, BAD_CONSUMER_DATA naming
 * `whose` and the check; a registry that does not answer is nobody's fault, REGISTRY_UNAVAILABLE (the
 * provider could not check; the same request may pass later).
 */
export async function verifyCarriedProposal(signed: unknown, directory: SignerDirectory, whose: string): Promise<Proposal> {
  // Only what the registry itself throws is its outage; anything else the check throws is about the proposal.
  let unanswered: unknown;
  const asked: SignerDirectory = {
    knownPublicKeyOf: directory.knownPublicKeyOf?.bind(directory),
    publicKeyOf: (identity) =>
      directory.publicKeyOf(identity).catch((err: unknown) => {
        unanswered = err;
        throw err;
      }),
  };
  try {
    return (await verifySignedProposal(signed, asked)).proposal;
  } catch (err) {
    if (unanswered === undefined || err !== unanswered) {
      const why = err instanceof ProposalError ? err.message : `it cannot be verified (${String((err as Error)?.message ?? err).slice(0, 120)})`;
      throw new TunnelError("BAD_CONSUMER_DATA", `${whose} is refused: ${why}`, { cause: err });
    }
    const said = String((err as Error)?.message ?? err).slice(0, 120);
    throw new TunnelError("REGISTRY_UNAVAILABLE", `${whose} could not be checked: the identity registry did not answer (${said}); try again`, {
      cause: err,
    });
  }
}
