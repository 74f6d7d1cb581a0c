import { MystError } from "../errors/MystError";
import type { RefusalCode } from "./messages";

export type SessionErrorCode =
  | "ALREADY_CONNECTED"
  | "ALREADY_CONNECTING"
  | "BAD_REQUEST"
  | "BAD_RESPONSE"
  /** A connect by filters tried several providers and none worked; the message names each and its failing stage. */
  | "CANDIDATES_FAILED"
  | "NOT_CONNECTED"
  | "NO_CONTACT"
  /** The provider can be reached only directly (punched), and no direct path exists; the message says why. */
  | "NO_DIRECT_PATH"
  /** No direct path, and no relay could join the pair (none meets the price limit, or none allocated). */
  | "NO_RELAY"
  | "NO_PROPOSAL"
  /** The proposal's tunnel needs a provider with a public address or a mapped port, and this one can be reached only by punching. */
  | "PROVIDER_UNREACHABLE"
  /** A peer sent a message more often than the protocol needs (session.relay: a few relay moves per session, then one per 20 s). */
  | "RATE_LIMITED"
  | "SERVICE_EXISTS"
  | "SERVICE_MISMATCH"
  | "SERVICE_UNKNOWN"
  | "SESSION_ENDED"
  | "SESSION_REFUSED"
  | "SESSION_STATE"
  | "SESSION_UNKNOWN"
  /** The tunnel came up but a stage check after it failed (DNS, first byte, throughput). */
  | "STAGE_FAILED"
  | "TUNNEL_FAILED";

export class SessionError extends MystError<SessionErrorCode> {}

/**
 * The provider said no. Its reason is the provider's word, kept as data in `refusal` (one of the
 * documented refusal codes): our code is SESSION_REFUSED, so a provider refusing with BAD_REQUEST
 * cannot make our API answer 400.
 */
export class SessionRefusedError extends SessionError {
  constructor(
    readonly refusal: RefusalCode,
    message: string,
  ) {
    super("SESSION_REFUSED", `the provider refused the session: ${refusal}: ${message}`);
  }
}
