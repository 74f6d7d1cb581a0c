import { type Proposal, type SignedProposal, unreachableReason } from "../proposal/proposal";
import { MystError } from "../errors/MystError";
import type { ConnectOptions } from "./connect-options";
import type { ConsumerSession, RelayLeg } from "./consumer-session";
import { announcedAddressesOf } from "./offer-addresses";
import { SessionError } from "./errors";
import type { SessionProtection, TunnelEndpoint } from "./service";
import type { ConnectStages } from "./stages";

/**
 * Opens a paid relay for a session whose provider cannot be reached directly. `udpBlocked`: our
 * UDP probes got nothing back (TURN over TLS first); `providerCountry`: the provider's (the opener
 * orders relays by the consumer's own country, then this one).
 */
export type RelayOpener = (o: {
  udpBlocked: boolean;
  /** The provider's public addresses: the only peers the relay will let this session's allocation permit. */
  peers: string[];
  /** The provider's signed proposal, which announces those addresses: the relay checks the peers against it. */
  providerProposal: SignedProposal;
  providerCountry?: string;
  avoid: string[];
  /** A kill switch already holds (a reconnect, a tunnel that failed on the punched path, a move): how the relay's TURN server gets through it. */
  passage?: KillSwitchPassage;
  /** The connect's stages, marked as the relay is found, negotiated and allocated. */
  stages?: ConnectStages;
  /** The session's tunnel's own port on this host (wireguard-go's socket): the one local peer the relay's forwarder answers. */
  tunnelPort?: number;
  /**
   * The provider holds the allocation (a TCP one, RFC 6062) with the credential this session gets:
   * the leg's `grant` goes to it, and the one peer named is this host's own public address.
   */
  tcp?: boolean;
  /** With `tcp`: this host holds the TCP allocation, `peers` (the provider's announced addresses) permitted, and the provider dials in (tcp-held.ts). */
  heldHere?: boolean;
}) => Promise<RelayLeg>;

/**
 * How a relay's TURN server passes the kill switch: exactly the server a transport is about to try
 * is let out first (one change to the rules), as an `Admission` its allocation owns and gives back
 * when it ends (services/relay: the relay's tunnel stops) — whatever failed after it, unless the
 * session's own rules still name that server (the tunnel runs through it).
 */
export interface KillSwitchPassage {
  admit(endpoints: TunnelEndpoint[]): Promise<Admission>;
}

/** Endpoints let through the kill switch by one `admit`, until released (once; a second release does nothing). */
export interface Admission {
  release(): Promise<void>;
}

/** What a session opens a relay with. */
export interface RelayToOpen {
  peers: string[];
  proposal: Proposal;
  signedProposal: SignedProposal;
  udpBlocked: boolean;
  passage?: KillSwitchPassage;
  avoid?: string[];
  stages?: ConnectStages;
  tunnelPort?: number;
}

/**
 * The passage through `protection`'s kill switch, when it can let single endpoints through; `first`
 * runs before each address is let out (a move: its host route outside the tunnel the dead relay carried).
 */
export function passageThrough(protection: SessionProtection | undefined, first?: (address: string) => Promise<void>): KillSwitchPassage | undefined {
  if (!protection?.admit || !protection.withdraw) return undefined;
  return {
    admit: async (endpoints) => {
      for (const e of endpoints) await first?.(e.address);
      await protection.admit!(endpoints);
      let released: Promise<void> | undefined;
      return { release: () => (released ??= protection.withdraw!(endpoints)) };
    },
  };
}

/**
 * The consumer data with the relay grant the provider holds its TCP allocation with (a proxy through
 * a relay), or with the relayed address it dials back to (an allocation this host holds).
 */
export function withGrant(consumerData: unknown, leg: RelayLeg | undefined): unknown {
  if (leg?.grant) return { ...(consumerData as object), relay: leg.grant };
  return leg?.dialBack ? { ...(consumerData as object), dialBack: leg.dialBack } : consumerData;
}

/**
 * The relay for a provider nobody can dial, when the service can be carried over a TCP allocation
 * the provider holds (the proxy): opened before the provider is asked, its credential going along
 * in the consumer data. Undefined for a provider that can be dialled; PROVIDER_UNREACHABLE when
 * neither works.
 */
export async function tcpRelayFor(options: ConnectOptions, proposal: Proposal): Promise<RelayLeg | undefined> {
  const unreachable = unreachableReason(proposal);
  if (!unreachable) return undefined;
  if (!options.relay || !options.service.relayedTcp) throw new SessionError("PROVIDER_UNREACHABLE", unreachable);
  const here = options.tcpHeldHere ? announcedAddressesOf(proposal) : undefined;
  if (here?.length === 0) throw new SessionError("NO_RELAY", "the provider announces no address a relay could let dial back to this host");
  options.stages?.mark(here ? "provider unreachable: it dials back to a TCP allocation held here" : "provider unreachable: through a relay's TCP allocation");
  return options.relay({
    tcp: true,
    ...(here ? { heldHere: true } : {}),
    udpBlocked: false,
    peers: here ?? [],
    providerProposal: options.proposal,
    providerCountry: proposal.location.country,
    avoid: [proposal.provider],
    stages: options.stages,
  });
}

/**
 * A proxy provider nobody can dial, reached through the TCP allocation it held, when this host could
 * not open TCP to the relayed address (a network that lets out only TCP/443: ProxyTunnel's
 * RELAY_FAILED): the connect once more with the allocation held here, over TLS on the relay's own
 * port, and the provider dialling back to it (docs/proxy.md "A consumer allowed only TCP/443").
 * Any other failure, or one of that second connect, is thrown as it is.
 */
export async function heldHereAfter(err: unknown, options: ConnectOptions, again: (o: ConnectOptions) => Promise<ConsumerSession>): Promise<ConsumerSession> {
  const cause = (err as { cause?: unknown })?.cause;
  const unreachable = err instanceof SessionError && err.code === "TUNNEL_FAILED" && cause instanceof MystError && cause.code === "RELAY_FAILED";
  if (!unreachable || options.tcpHeldHere || !options.service.relayedTcp) throw err;
  options.stages?.mark("the relayed TCP address is out of reach here");
  return again({ ...options, tcpHeldHere: true });
}
