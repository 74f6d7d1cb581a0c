import { type Receipt, STAGE_WORDS, STAGES, type Stage } from "./receipt";
import { DEFAULT_SCORE_PARAMS, type PromiseCheck, rowOf, type ScoreParams, type ScoreRow, type StageFailures } from "./score";

/**
 * The probe score of one provider's service, from probers' signed probe results alone
 * (docs/quality.md "Probers"). Like score.ts, a pure function of the raw signed data and the vault's
 * EIP-712 domain: anyone holding the results gets the same number.
 *
 * The median rule (Nym's): time is cut into periods (`periodMs`, 6 h); in a period each prober gets
 * one figure, the share of its probes of the provider that passed every stage (0–100, whole points);
 * the period's probe score is the median of those figures, and only when at least `minProbers`
 * distinct probers probed (fewer: no probe score for that period). The provider's probe score is the
 * one of the latest period that has one. One prober that lies cannot move a median of three or more
 * outside the range the honest ones report, and moves nothing when they agree (a provider that
 * works, or one that fails at one stage, for everyone).
 *
 * Who counts as a prober: any registered identity whose probe result carries a valid promise of its
 * own (more than 0 wei, to anyone but itself): it has paid through its vault, as a consumer does. A
 * result by the provider about itself never counts.
 */

export interface ProbeParams {
  /** The length of a period. Default 6 h. */
  periodMs: number;
  /** Distinct probers a period needs for a probe score. Default 3. */
  minProbers: number;
}

export const DEFAULT_PROBE_PARAMS: ProbeParams = { periodMs: 6 * 3_600_000, minProbers: 3 };

export interface ProberFigure {
  prober: string;
  probes: number;
  /** Share of its probes in the period that passed every stage, 0–100 (whole points). */
  score: number;
}

export interface ProbePeriod {
  /** Start of the period, ms since the epoch. */
  start: number;
  /** The median of the probers' figures; null: fewer than minProbers probers. */
  score: number | null;
  probers: ProberFigure[];
}

export interface ProbeScore {
  /** The probe score of the latest period that has one; null when none has. */
  score: number | null;
  /** That period (its probers and figures); null when no period has a score. */
  period: ProbePeriod | null;
  /** Every period with counted probes, oldest first (the provider's probe history). */
  periods: ProbePeriod[];
  /** Probe results held about the provider (counted or not). */
  results: number;
  /** Of those, the ones that count (a valid promise of the prober's own). */
  counted: number;
  /** Failing stages in the scored period: `receipts` counts probes, `consumers` counts probers. */
  failures: StageFailures[];
  periodHours: number;
}

/** Median of whole numbers; the mean of the middle two for an even count (to 0.1). */
export function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid] : Math.round(((v[mid - 1] + v[mid]) / 2) * 10) / 10;
}

/** Whether a probe result counts: about `provider`, not by it, with a valid promise of the prober's own. */
export function counts(r: Receipt, provider: string, check: PromiseCheck): boolean {
  const p = r.promise;
  if (r.provider !== provider.toLowerCase() || r.consumer === provider.toLowerCase()) return false;
  return p !== null && p.amount > 0n && p.provider !== r.consumer && check(r.consumer, p.provider, p.amount, p.signature);
}

/** The probe score of `provider` from its probe results (all about one service type). */
export function probeScoreOf(
  results: Receipt[],
  provider: string,
  check: PromiseCheck,
  pp: ProbeParams = DEFAULT_PROBE_PARAMS,
  p: ScoreParams = DEFAULT_SCORE_PARAMS,
): ProbeScore {
  return probeScoreOfRows(
    results.map((r) => rowOf(r, provider, check, p, "probe")),
    pp,
  );
}

/** `probeScoreOf` from rows (score.ts ScoreRow: `paid` says whether a result counts). */
export function probeScoreOfRows(results: readonly ScoreRow[], pp: ProbeParams = DEFAULT_PROBE_PARAMS): ProbeScore {
  const counted = results.filter((r) => r.paid);
  // period start → prober → its probes
  const byPeriod = new Map<number, Map<string, ScoreRow[]>>();
  for (const r of counted) {
    const start = Math.floor(r.at / pp.periodMs) * pp.periodMs;
    let probers = byPeriod.get(start);
    if (!probers) byPeriod.set(start, (probers = new Map()));
    let list = probers.get(r.consumer);
    if (!list) probers.set(r.consumer, (list = []));
    list.push(r);
  }
  const periods: ProbePeriod[] = [...byPeriod.keys()]
    .sort((a, b) => a - b)
    .map((start) => {
      const probers = [...byPeriod.get(start)!].map(([prober, list]) => ({
        prober,
        probes: list.length,
        score: Math.round((100 * list.filter((r) => r.stage === null).length) / list.length),
      }));
      probers.sort((a, b) => (a.prober < b.prober ? -1 : 1));
      return { start, probers, score: probers.length >= pp.minProbers ? median(probers.map((x) => x.score)) : null };
    });
  const period = [...periods].reverse().find((x) => x.score !== null) ?? null;
  const failures = new Map<Stage, { probes: number; probers: Set<string> }>();
  if (period)
    for (const [prober, list] of byPeriod.get(period.start)!)
      for (const r of list) {
        const stage = r.stage;
        if (stage === null) continue;
        let f = failures.get(stage);
        if (!f) failures.set(stage, (f = { probes: 0, probers: new Set() }));
        f.probes++;
        f.probers.add(prober);
      }
  return {
    score: period?.score ?? null,
    period,
    periods,
    results: results.length,
    counted: counted.length,
    failures: STAGES.filter((s) => failures.has(s)).map((s) => {
      const f = failures.get(s)!;
      return { stage: s, receipts: f.probes, consumers: f.probers.size, weighed: f.probes, weighedConsumers: f.probers.size };
    }),
    periodHours: Math.round(pp.periodMs / 3_600_000),
  };
}

/**
 * "3 of 4 probers in the 6 h from 2026-12-06T12:00Z had a tunnel but never received a first byte:
 * check your NAT / firewall …", one line per stage the scored period's probes failed at.
 */
export function probeWords(s: ProbeScore): string[] {
  const period = s.period;
  if (!period) return [];
  const from = new Date(period.start).toISOString().slice(0, 16);
  return s.failures.map((f) => {
    const w = STAGE_WORDS[f.stage];
    const who = `${f.weighedConsumers} of ${period.probers.length} probers`;
    return `${who} in the ${s.periodHours} h from ${from}Z ${w.failed}: ${w.hint}`;
  });
}
