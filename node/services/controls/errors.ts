import { MystError } from "../../errors/MystError";

export type ControlsErrorCode = "BAD_SCHEDULE" | "BAD_ACCESS_LIST" | "ACCESS_LIST_UNREADABLE" | "BAD_EGRESS_POLICY" | "BAD_TRAFFIC_CAP" | "SHAPING_FAILED";

/** A provider control (schedule, access list, cap, egress policy, shaping) that cannot be used as given. */
export class ControlsError extends MystError<ControlsErrorCode> {}
