import type { FoundProposal } from "../discovery/client";
import { directContactOf } from "../proposal/proposal";
import type { ConsumerSession, RelayLeg } from "../session/consumer-session";
import { SessionError } from "../session/errors";
import { RelayGrantService, type RelayGrantTunnel } from "../services/relay/tcp-grant";

/**
 * A relay session whose allocation the provider will hold (a proxy provider nobody can dial;
 * docs/proxy.md "Through a relay"): the one peer is this host's own address, which it proves to the
 * relay (services/relay/self-proof.ts), the session's credential becomes the leg's `grant` (sent to the provider), and the relay is
 * metered by the proxy connection's bytes on the wire once it is up (`capBy`). Paid like any relay.
 */
export async function openTcpRelayLeg(
  found: FoundProposal,
  connect: (service: RelayGrantService) => Promise<ConsumerSession>,
  promised: (session: ConsumerSession) => bigint,
): Promise<RelayLeg> {
  const contact = (directContactOf(found.proposal)?.candidates ?? []).find((c) => c.kind !== "punch-only");
  if (!contact) throw new SessionError("NO_RELAY", "the relay's proposal names no public address");
  // The proposal names the relay's address; its answer names the TURN port, where the proof goes.
  const service = new RelayGrantService({ relay: found.proposal.provider, server: { address: contact.address } });
  const session = await connect(service);
  const tunnel = session.tunnel as RelayGrantTunnel;
  const { server } = tunnel.grant;
  const where = { address: server.address, port: server.port };
  return {
    provider: session.provider,
    proposal: found.signed,
    peers: tunnel.grant.peers,
    relayed: where,
    local: where,
    outside: { ...where, protocol: "tcp" },
    transport: "tcp",
    // The provider permits (its allocation); nothing to do on this side.
    permit: async () => undefined,
    onDown: (listener) => void session.ended.then(listener),
    close: (reason) => session.destroy(reason),
    stats: () => tunnel.stats(),
    capBy: (proxy) => tunnel.meterBy(() => proxy.wireBytes?.() ?? { bytesIn: 0, bytesOut: 0 }),
    promised: () => promised(session),
    grant: tunnel.grant,
  };
}
