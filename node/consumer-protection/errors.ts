import { MystError } from "../errors/MystError";

/** The kill switch, the resolver settings or their recovery could not do what was asked. */
export type ProtectionErrorCode =
  | "BAD_DNS"
  | "BAD_NETNS"
  | "CONTROL_ENDPOINT"
  | "BAD_RECORD"
  | "FIREWALL_FAILED"
  | "NOT_ENGAGED"
  | "NO_KILL_SWITCH"
  | "RESOLVER_OUTSIDE_TUNNEL";

export class ProtectionError extends MystError<ProtectionErrorCode> {}
