import type { SignedProposal } from "../proposal/proposal";
import type { RelayOpener } from "./relay-opener";
import type { ConsumerService, SessionProtection } from "./service";
import type { ConnectStages } from "./stages";

/** What a consumer's session is connected with (`ConsumerSessions.connect`). */
export interface ConnectOptions {
  proposal: SignedProposal;
  service: ConsumerService;
  maxPrice?: { perHour: string; perGiB: string };
  /** How long each negotiation step may take. Default 10 s. */
  timeoutMs?: number;
  /** Kill switch, DNS and IPv6 handling: engaged before the tunnel comes up (when the service has a plan). */
  protection?: SessionProtection;
  /** Without a direct path, a relay the consumer pays (none: such a session fails with NO_DIRECT_PATH). */
  relay?: RelayOpener;
  /** false: no direct channel for this session (a relay's own session needs none). */
  direct?: boolean;
  /** Through a relay even when a direct path may exist. */
  viaRelay?: boolean;
  /** Marked as each stage of the connect finishes (logged as `connect stages`). */
  stages?: ConnectStages;
  /** A provider nobody can dial: the relay's TCP allocation is held by this host, the provider dialling back (relay-opener.ts `heldHereAfter`). */
  tcpHeldHere?: boolean;
}
