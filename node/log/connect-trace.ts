import diagnostics_channel from "node:diagnostics_channel";
import { performance } from "node:perf_hooks";

/**
 * One step of a connect (an `nft` transaction, an `ip` batch, a file written, a request answered),
 * with its start and end on `performance.now()`'s clock: what `npm run bench -- tunnel` lays out as
 * the connect's timeline (docs/connect-path.md). Published on the `myst.connect.step` diagnostics
 * channel only while something subscribes to it; otherwise a step costs one property read.
 */
export interface ConnectStep {
  step: string;
  start: number;
  end: number;
  failed?: boolean;
}

export const CONNECT_STEPS = "myst.connect.step";
const channel = diagnostics_channel.channel(CONNECT_STEPS);

/** `work` as it is, its step published once it settles (when something listens). */
export function traced<T>(step: string, work: Promise<T>): Promise<T> {
  if (!channel.hasSubscribers) return work;
  const start = performance.now();
  work.then(
    () => channel.publish({ step, start, end: performance.now() } satisfies ConnectStep),
    () => channel.publish({ step, start, end: performance.now(), failed: true } satisfies ConnectStep),
  );
  return work;
}

/** `work()` run now, its step published when it returns or throws (when something listens). */
export function tracedSync<T>(step: string, work: () => T): T {
  if (!channel.hasSubscribers) return work();
  const start = performance.now();
  let failed = true;
  try {
    const out = work();
    failed = false;
    return out;
  } finally {
    channel.publish({ step, start, end: performance.now(), ...(failed ? { failed } : {}) } satisfies ConnectStep);
  }
}

/** Calls `on` with each step published until the returned function is called. */
export function watchConnectSteps(on: (step: ConnectStep) => void): () => void {
  const listener = (message: unknown) => on(message as ConnectStep);
  diagnostics_channel.subscribe(CONNECT_STEPS, listener);
  return () => diagnostics_channel.unsubscribe(CONNECT_STEPS, listener);
}
