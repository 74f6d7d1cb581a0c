/**
 * The base of every error the node raises on purpose. `code` is stable (tests, the CLI and the API
 * switch on it; nothing parses messages); `message` is one line a person can act on.
 */
export class MystError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export function isMystError(err: unknown): err is MystError {
  return err instanceof MystError;
}
