import type { SignerDirectory } from "../../identity/protocol-signature";
import { ProposalError, verifySignedProposal } from "../../proposal/proposal";
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
  const { proposal } = await verifySignedProposal(signed, directory).catch((err: unknown) => {
    const why = err instanceof ProposalError ? err.message : "it cannot be verified now";
    throw new TunnelError("BAD_CONSUMER_DATA", `the provider's proposal a relay session carries is refused: ${why}`, { cause: err });
  });
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
