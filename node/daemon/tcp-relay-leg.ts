import type { FoundProposal } from "../discovery/client";
import { directContactOf, type SignedProposal } from "../proposal/proposal";
import type { ConsumerSession, RelayLeg } from "../session/consumer-session";
import { SessionError } from "../session/errors";
import { sameAddress } from "../values/address";
import type { ConsumerService } from "../session/service";
import { RelayGrantService, type RelayGrantTunnel } from "../services/relay/tcp-grant";
import { TcpHeldService, type TcpHeldTunnel } from "../services/relay/tcp-held";

export interface HeldHere {
  peers: string[];
  provider: SignedProposal;
  current?: () => Promise<FoundProposal | null>;
}

/**
 * How long a relay's proposal must still be valid when a dial-back is to carry it: the relay session
 * opens first (seconds; several relays may be tried), then the provider checks it, on a clock that
 * may be a little apart from ours.
 */
export const DIAL_BACK_VALID_MS = 60_000;

/**
 * The relay's proposal a dial-back is to carry (the provider refuses an expired one, review C4):
 * `found`'s while it is valid for DIAL_BACK_VALID_MS more, else discovery's current one of the same
 * relay (`current`) if that is; NO_RELAY saying so when neither is.
 */
export async function dialBackProposal(found: FoundProposal, current: () => Promise<FoundProposal | null>, now = Date.now()): Promise<FoundProposal> {
  const lasts = (p: FoundProposal) => p.proposal.expiresAt - now > DIAL_BACK_VALID_MS;
  if (lasts(found)) return found;
  const fresh = await current().catch(() => null);
  if (fresh && sameAddress(fresh.proposal.provider, found.proposal.provider) && fresh.proposal.serviceType === "relay" && lasts(fresh)) return fresh;
  const left = Math.max(0, Math.round((found.proposal.expiresAt - now) / 1000));
  throw new SessionError(
    "NO_RELAY",
    `relay ${found.proposal.provider}'s proposal expires in ${left} s (${new Date(found.proposal.expiresAt).toISOString()}), too soon for a provider to check it before dialling back, and discovery has no newer one`,
  );
}

/**
 * A relay session whose allocation the provider will hold (a proxy provider nobody can dial;
 * docs/proxy.md "Through a relay"): the one peer is this host's own address, which it proves to the
 * relay (services/relay/self-proof.ts), the session's credential becomes the leg's `grant` (sent to the provider), and the relay is
 * metered by the proxy connection's bytes on the wire once it is up (`capBy`). Paid like any relay.
 */
export async function openTcpRelayLeg(
  found: FoundProposal,
  connect: (service: ConsumerService) => Promise<ConsumerSession>,
  promised: (session: ConsumerSession) => bigint,
  /**
   * This host holds the allocation and the provider dials in (tcp-held.ts): the provider's announced
   * addresses and its signed proposal, and discovery's current proposal of the relay (`current`), for
   * when `found`'s is about to expire (dialBackProposal).
   */
  heldHere?: HeldHere,
): Promise<RelayLeg> {
  const contact = (directContactOf(found.proposal)?.candidates ?? []).find((c) => c.kind !== "punch-only");
  if (!contact) throw new SessionError("NO_RELAY", "the relay's proposal names no public address");
  if (heldHere) return openHeldTcpRelayLeg(found, connect, promised, heldHere);
  // The proposal names the relay's address; its answer names the TURN port, where the proof goes.
  const service = new RelayGrantService({ relay: found.proposal.provider, server: { address: contact.address } });
  const session = await connect(service);
  const tunnel = session.tunnel as RelayGrantTunnel;
  const { server } = tunnel.grant;
  const where = { address: server.address, port: server.port };
  // The provider permits (its allocation); nothing to do on this side.
  return { ...tcpLeg(found, session, tunnel, where, promised), peers: tunnel.grant.peers, relayed: where, grant: tunnel.grant };
}

/**
 * What both TCP legs are alike in: reached at the relay's TURN port `where` over TCP, nothing to
 * permit on this side, ended and paid as their relay session, metered by the proxy's bytes on the wire.
 */
function tcpLeg(
  found: FoundProposal,
  session: ConsumerSession,
  tunnel: RelayGrantTunnel | TcpHeldTunnel,
  where: { address: string; port: number },
  promised: (session: ConsumerSession) => bigint,
): Omit<RelayLeg, "peers" | "relayed"> {
  return {
    provider: session.provider,
    proposal: found.signed,
    local: where,
    outside: { ...where, protocol: "tcp" },
    transport: "tcp",
    permit: async () => undefined,
    onDown: (listener) => void session.ended.then(listener),
    close: (reason) => session.destroy(reason),
    stats: () => tunnel.stats(),
    capBy: (proxy) => tunnel.meterBy(() => proxy.wireBytes?.() ?? { bytesIn: 0, bytesOut: 0 }),
    promised: () => promised(session),
  };
}

/**
 * A relay session whose TCP allocation this host holds, over TLS on the relay's port (a consumer
 * allowed only TCP/443; docs/proxy.md): its peers are the provider's announced addresses, checked by
 * the relay against the provider's signed proposal as for any relay session; the leg's `dialBack`
 * (the relayed TCP address) goes to the provider, which connects to it, and `stream` is that
 * connection as the relay splices it. Metered and paid as the provider-held leg above.
 */
async function openHeldTcpRelayLeg(
  found: FoundProposal,
  connect: (service: ConsumerService) => Promise<ConsumerSession>,
  promised: (session: ConsumerSession) => bigint,
  { current, ...held }: HeldHere,
): Promise<RelayLeg> {
  // The proposal goes to the provider with the dial-back, which refuses an expired one.
  const relay = await dialBackProposal(found, current ?? (async () => null));
  const address = (directContactOf(relay.proposal)?.candidates ?? []).find((c) => c.kind !== "punch-only")?.address;
  if (!address) throw new SessionError("NO_RELAY", "the relay's proposal names no public address");
  const service = new TcpHeldService({ relay: relay.proposal.provider, relayProposal: relay.signed, server: { address }, ...held });
  const session = await connect(service);
  const tunnel = session.tunnel as TcpHeldTunnel;
  const where = { address: tunnel.server.address, port: tunnel.server.port };
  // This host's allocation permitted the provider's addresses as it opened.
  return {
    ...tcpLeg(found, session, tunnel, where, promised),
    peers: held.peers,
    relayed: { address: tunnel.dialBack.address, port: tunnel.dialBack.port },
    dialBack: tunnel.dialBack,
    stream: () => tunnel.next(),
  };
}
