// The timeline of the tunnel bench's connects: each step the node publishes on its `myst.connect.step` channel
// (node/log/connect-trace.ts: each nft transaction, ip batch, wireguard-go call, file written, request answered),
// placed in ms from the connect's start, and summarized per kind of connect (kill switch off / on).
import { performance } from "node:perf_hooks";
import { type ConnectStep, watchConnectSteps } from "../../node/log/connect-trace";
import { percentile, round } from "./stats";

/** One step's p50 start and end in ms from its connect's start, over the connects of one kind that had it. */
export interface StepSummary {
  step: string;
  n: number;
  start: number;
  end: number;
  /** p50 of the step's own duration. */
  ms: number;
}

const p50 = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );

export class ConnectTimeline {
  readonly #connects: { kind: string; t0: number; steps: ConnectStep[] }[] = [];
  readonly #unwatch: () => void;

  constructor() {
    this.#unwatch = watchConnectSteps((s) => this.#connects.at(-1)?.steps.push(s));
  }

  /** A connect of `kind` starts now: the steps published from now on until the next `begin` are its own (its undo included). */
  begin(kind: string): void {
    this.#connects.push({ kind, t0: performance.now(), steps: [] });
  }

  /** A step the bench timed itself (a phase, the first byte), in ms from this connect's start. */
  mark(step: string, startMs: number, endMs: number): void {
    const c = this.#connects.at(-1);
    c?.steps.push({ step, start: c.t0 + startMs, end: c.t0 + endMs });
  }

  /** ms from the current connect's start. */
  now(): number {
    const c = this.#connects.at(-1);
    return c ? performance.now() - c.t0 : 0;
  }

  stop(): void {
    this.#unwatch();
  }

  /** Per kind, each step's p50 start, end and duration, in the order of their p50 start. */
  summary(): Record<string, StepSummary[]> {
    const out: Record<string, StepSummary[]> = {};
    const kinds = [...new Set(this.#connects.map((c) => c.kind))];
    for (const kind of kinds) {
      const by = new Map<string, { start: number[]; end: number[]; ms: number[] }>();
      for (const c of this.#connects.filter((x) => x.kind === kind))
        for (const s of c.steps) {
          const name = s.failed ? `${s.step} (failed)` : s.step;
          const e = by.get(name) ?? { start: [], end: [], ms: [] };
          e.start.push(s.start - c.t0);
          e.end.push(s.end - c.t0);
          e.ms.push(s.end - s.start);
          by.set(name, e);
        }
      out[kind] = [...by.entries()]
        .map(([step, e]) => ({ step, n: e.start.length, start: round(p50(e.start), 1), end: round(p50(e.end), 1), ms: round(p50(e.ms), 1) }))
        .sort((a, b) => a.start - b.start);
    }
    return out;
  }
}

/** The bench's table rows: each step, kill switch off beside on (p50 start → end ms from the connect's start, and its p50 duration). */
export function timelineRows(name: string, summary: Record<string, StepSummary[]>, off: string, on: string): string[][] {
  const a = new Map((summary[off] ?? []).map((s) => [s.step, s]));
  const b = new Map((summary[on] ?? []).map((s) => [s.step, s]));
  const order = [...(summary[on] ?? []), ...(summary[off] ?? []).filter((s) => !b.has(s.step))];
  const cell = (s?: StepSummary) => (s ? `${s.start} → ${s.end} (${s.ms} ms, n ${s.n})` : "–");
  return [
    [`${name} timeline: step (ms from connect, p50 start → end, p50 duration)`, "kill switch off", "kill switch on"],
    ...order.map((s) => [`  ${name}: ${s.step}`, cell(a.get(s.step)), cell(b.get(s.step))]),
  ];
}
