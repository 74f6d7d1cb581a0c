import { MystError } from "../errors/MystError";

/** The kill switch, the resolver settings or their recovery could not do what was asked. */
export class ProtectionError extends MystError {}
