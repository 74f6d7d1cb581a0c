import type { ErrorCode } from "./catalogue";

/**
 * The base of every error the node raises on purpose. `code` is stable (tests, the CLI and the API
 * switch on it; nothing parses messages); `message` is one line a person can act on. Every code is
 * a key of the catalogue (errors/catalogue.ts: module, HTTP status, meaning), so a code that is not
 * there fails to compile; each module declares the union of its codes and a class typed by it
 * (`class SessionError extends MystError<SessionErrorCode>`). A peer's code never becomes one of
 * ours: it travels as data (`PeerError.peerCode`, `SessionRefusedError.refusal`).
 */
export class MystError<C extends ErrorCode = ErrorCode> extends Error {
  constructor(
    readonly code: C,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Whether `err` is one of ours; with `codes`, also that its code is one of them (and narrows it). */
export function isMystError(err: unknown): err is MystError;
export function isMystError<C extends ErrorCode>(err: unknown, ...codes: C[]): err is MystError<C>;
export function isMystError(err: unknown, ...codes: string[]): boolean {
  return err instanceof MystError && (codes.length === 0 || codes.includes(err.code));
}
