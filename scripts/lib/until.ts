import type { ChildProcess } from "node:child_process";
import type { Readable } from "node:stream";

/** Polls `probe` until it returns something truthy; fails naming `what` after `timeoutMs`. */
export async function until<T>(
  probe: () => T | Promise<T>,
  what: string,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<Exclude<T, false | null | undefined | 0 | "">> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as Exclude<T, false | null | undefined | 0 | "">;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * `promise`, or a failure naming `what` once `timeoutMs` have passed without it settling: a wait
 * with no bound of its own, inside a hook mocha would otherwise time out without saying which step.
 * What it resolves with after that goes to `onLate` (to stop what it started).
 */
export async function within<T>(promise: Promise<T>, what: string, timeoutMs: number, onLate?: (value: T) => unknown): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let late = false;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      late = true;
      reject(new Error(`${what} did not finish within ${timeoutMs / 1000} s`));
    }, timeoutMs);
  });
  promise.then(
    (value) => {
      if (late) Promise.resolve(onLate?.(value)).catch(() => undefined);
    },
    () => undefined,
  );
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What `child` wrote (its stdout and stderr, those piped) once `ready` holds for it. Rejects, naming
 * `what` with the end of its output, when it exits first (its output read to the end: its last line
 * often says why) or after `timeoutMs`. Its pipes are drained after, so it never blocks on a full one.
 */
export function waitForOutput(child: ChildProcess, what: string, ready: (output: string) => boolean, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = "";
    const streams = [child.stdout, child.stderr].filter((s): s is Readable => s !== null);
    const end = () => output.trimEnd().split("\n").slice(-40).join("\n");
    const timer = setTimeout(() => done(new Error(`${what} was not ready within ${timeoutMs} ms; its output:\n${end()}`)), timeoutMs);
    const onData = (d: Buffer) => {
      if (output.length < 65_536) output += d.toString();
      if (ready(output)) done();
    };
    const onClose = (code: number | null, signal: NodeJS.Signals | null) =>
      done(new Error(`${what} exited (${code ?? signal}) before it was ready; its output:\n${end()}`));
    for (const s of streams) s.on("data", onData);
    child.once("close", onClose);
    function done(err?: Error) {
      clearTimeout(timer);
      child.off("close", onClose);
      for (const s of streams) {
        s.off("data", onData);
        s.resume();
      }
      if (err) reject(err);
      else resolve(output);
    }
  });
}
