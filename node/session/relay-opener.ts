import type { Proposal } from "../proposal/proposal";
import type { RelayLeg } from "./consumer-session";
import type { TunnelEndpoint } from "./service";
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
  providerCountry?: string;
  avoid: string[];
  /** The kill switch already holds (a tunnel that failed on the punched path): let the relay's TURN server through first. */
  allow?: (endpoints: TunnelEndpoint[]) => Promise<void>;
  /** The connect's stages, marked as the relay is found, negotiated and allocated. */
  stages?: ConnectStages;
  /** The session's tunnel's own port on this host (wireguard-go's socket): the one local peer the relay's forwarder answers. */
  tunnelPort?: number;
}) => Promise<RelayLeg>;

/** What a session opens a relay with. */
export interface RelayToOpen {
  peers: string[];
  proposal: Proposal;
  udpBlocked: boolean;
  allow?: (endpoints: TunnelEndpoint[]) => Promise<void>;
  avoid?: string[];
  stages?: ConnectStages;
  tunnelPort?: number;
}
