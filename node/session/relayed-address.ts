import { isIP } from "node:net";
import { isPrivate } from "../nat/direct/candidates";
import { directContactOf, ProposalError, type VerifyOptions, verifySignedProposal } from "../proposal/proposal";
import { sameAddress } from "../values/address";
import { SessionError } from "./errors";
import type { SessionRelay } from "./messages";

/**
 * Whether a provider may point a session's tunnel at the relayed address a consumer names in
 * `session.relay`. Always: a public IPv4 address (a consumer cannot point the tunnel at the
 * provider's LAN or at this host). With `signers` (the registry; a node always has it), also: the
 * message carries the relay's proposal, signed by the relay it names and still valid, selling
 * `relay`, and the relayed address is one its direct contact announces (coturn relays from the
 * address it listens on: docs/relay.md). So a consumer cannot make a provider send its tunnel's
 * packets to an address no relay announced.
 */
export async function checkRelayedAddress(body: SessionRelay, signers?: VerifyOptions): Promise<void> {
  const [a] = body.address.split(".").map(Number);
  if (isIP(body.address) !== 4 || isPrivate(body.address) || a === 0 || a === 127 || a >= 224)
    throw new SessionError("BAD_REQUEST", `${body.address} is not a public IPv4 address`);
  if (!signers) return;
  if (!body.relay || !body.relayProposal) throw new SessionError("BAD_REQUEST", "session.relay names no relay and its signed proposal");
  const { proposal } = await verifySignedProposal(body.relayProposal, signers).catch((err: unknown) => {
    const why = err instanceof ProposalError ? err.message : "it cannot be verified now";
    throw new SessionError("BAD_REQUEST", `session.relay: the relay's proposal is refused: ${why}`, { cause: err });
  });
  if (!sameAddress(proposal.provider, body.relay) || proposal.serviceType !== "relay")
    throw new SessionError("BAD_REQUEST", `session.relay: the proposal is not relay ${body.relay}'s relay service`);
  const announced = (directContactOf(proposal)?.candidates ?? []).map((c) => c.address);
  if (!announced.includes(body.address))
    throw new SessionError(
      "BAD_REQUEST",
      `session.relay: ${body.address} is not an address relay ${body.relay} announces (${announced.join(", ") || "it announces none"})`,
    );
}
