import { MystError } from "../errors/MystError";
import type { RefusalCode } from "./messages";

export class SessionError extends MystError {}

/** The provider said no; `code` is one of the documented refusal codes. */
export class SessionRefusedError extends SessionError {
  constructor(
    readonly refusal: RefusalCode,
    message: string,
  ) {
    super(refusal, `the provider refused the session: ${refusal}: ${message}`);
  }
}
