/**
 * When each stage of one connect finished, in milliseconds since it began: what the node logs as
 * `connect stages` (the breakdown behind `npm run bench -- relay`'s connect → first byte; timings
 * belong in logs and the benchmark, never in a test's assertions).
 */
export class ConnectStages {
  readonly #start: number;
  readonly #marks: [stage: string, atMs: number][] = [];

  constructor(start = Date.now()) {
    this.#start = start;
  }

  /** The stage just finished (or finished at `at`, a time taken elsewhere, e.g. a session's own timings). */
  mark(stage: string, at = Date.now()): void {
    this.#marks.push([stage, at - this.#start]);
  }

  /** `{ stage: ms since the start }`, in the order marked (a stage marked twice keeps its last time). */
  toJSON(): Record<string, number> {
    return Object.fromEntries(this.#marks);
  }
}
