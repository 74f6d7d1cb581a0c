import { PromiseDigests, vaultDomain } from "../chain/eip712";
import { isKeyOf, recoverPublicKey } from "../identity/key";
import { type EvidenceKind, type Receipt, receiptId, STAGE_WORDS, STAGES, type Stage } from "./receipt";

/**
 * The quality score of one provider's service, from receipts alone (docs/quality.md). Anyone with
 * the raw signed receipts and the vault's EIP-712 domain (chain id, vault address) gets the same
 * number: nothing here reads a clock, a chain or a replica's state.
 *
 * Weights (what makes a receipt count): one receipt is one vote, and a vote weighs the money that
 * stands behind it, up to `stakeWei` (so a long session does not outvote many failed ones).
 * - A receipt by the provider about itself, or without a valid promise, weighs 0.
 * - Each consumer has a budget per provider: the largest valid promise its receipts about that
 *   provider carry (to that provider after a paid session, to any provider after a failure). Its
 *   receipts draw from it oldest first, so together they never weigh more than that promise.
 * - A paid session draws min(wei promised in it, stakeWei); a failed attempt draws stakeWei. A
 *   consumer that has promised nothing cannot fail anyone; one that promised 1 MYST can weigh in
 *   with at most 1 MYST / stakeWei receipts about one provider.
 *
 * Score (0–100): success rate × bandwidth factor × connect factor over the weighted receipts, pulled
 * toward the neutral prior (50) by `priorWeightWei`: raw evidence must outweigh the prior to move the
 * score far. A provider with no weighed receipt is unrated: `score` null, sorted as the prior (below
 * providers proven good, above providers proven bad) and never hidden by a minimum-quality filter.
 */

export interface ScoreParams {
  /** The most one receipt weighs (what a failure draws from its consumer's budget). Default 0.001 MYST. */
  stakeWei: bigint;
  /** The weight of the neutral prior. Default 0.003 MYST (three full receipts). */
  priorWeightWei: bigint;
  /** Delivered below this share of the advertised bandwidth counts as a failed throughput stage. Default 0.5. */
  minBandwidthRatio: number;
}

export const DEFAULT_SCORE_PARAMS: ScoreParams = { stakeWei: 10n ** 15n, priorWeightWei: 3n * 10n ** 15n, minBandwidthRatio: 0.5 };

export const NEUTRAL_SCORE = 50;

export interface StageFailures {
  stage: Stage;
  /** Receipts that failed at this stage (weighed or not). */
  receipts: number;
  /** Distinct consumers among them. */
  consumers: number;
  /** Of those, receipts that weigh something (backed by a promise). */
  weighed: number;
  /** Distinct consumers among the weighed ones. */
  weighedConsumers: number;
}

export interface QualityScore {
  /** 0–100; null: unrated (no receipt weighs anything and no probe score). */
  score: number | null;
  /** What the score sorts by: the score, or the neutral prior when unrated. */
  rank: number;
  receipts: number;
  weighed: number;
  /** Total weight, wei. */
  weightWei: bigint;
  successRate: number | null;
  /** Weighted median of successful connects, ms. */
  connectMs: number | null;
  /** Weighted median of delivered / advertised bandwidth (capped at 1). */
  bandwidthRatio: number | null;
  failures: StageFailures[];
}

/** Checks promises of one vault: whether `signature` is `consumer`'s promise of `amount` to `provider`. */
export type PromiseCheck = (consumer: string, provider: string, amount: bigint, signature: string) => boolean;

/** The promise check of the vault at `vault` on chain `chainId` (EIP-712, as the vault recovers it). */
export function promiseCheckOf(chainId: bigint, vault: string): PromiseCheck {
  const digests = new PromiseDigests(vaultDomain(chainId, vault));
  const cache = new Map<string, boolean>();
  return (consumer, provider, amount, signature) => {
    const key = `${consumer}${provider}${amount}${signature}`;
    const known = cache.get(key);
    if (known !== undefined) return known;
    let ok = false;
    try {
      ok = isKeyOf(recoverPublicKey(digests.digest(consumer, provider, amount), Buffer.from(signature.slice(2), "hex")), consumer);
    } catch {
      ok = false;
    }
    if (cache.size > 100_000) cache.clear();
    cache.set(key, ok);
    return ok;
  };
}

/** Whether a receipt reports a success: every stage checked passed and the bandwidth held. */
export function succeeded(r: Receipt, p: ScoreParams = DEFAULT_SCORE_PARAMS): boolean {
  return r.failed === null && (bandwidthRatioOf(r) ?? 1) >= p.minBandwidthRatio;
}

function bandwidthRatioOf(r: Receipt): number | null {
  if (r.throughputKbps === 0 || r.advertisedMbps === 0) return null;
  return Math.min(1, r.throughputKbps / (r.advertisedMbps * 1000));
}

/** The stage a receipt failed at, a delivered bandwidth below the minimum counting as "throughput". */
export function failedStage(r: Receipt, p: ScoreParams = DEFAULT_SCORE_PARAMS): Stage | null {
  if (r.failed) return r.failed;
  return succeeded(r, p) ? null : "throughput";
}

/**
 * What the score needs of one receipt (or probe result), and nothing else: a replica keeps these
 * rows in memory instead of the receipts (discovery/score-rows.ts), and `rowOf` makes the same rows
 * from raw receipts, so a replica's score and anyone's recompute run the very same arithmetic.
 */
export interface ScoreRow {
  consumer: string;
  at: number;
  /** Orders one consumer's receipts of the same millisecond: the first 52 bits of the receipt's id. */
  tie: number;
  /** The receipt's own promise when it is valid and not to its signer itself (0 otherwise): what its signer's budget can be. */
  budgetWei: bigint;
  /** What it draws from the budget: the stake for a failure, else min(promised in the session, stake); 0 by the provider or about another. */
  drawWei: bigint;
  /** As a probe result: about the provider, not by it, with a valid promise of more than 0 wei (probe-score.ts). */
  paid: boolean;
  /** The stage it failed at (a delivered bandwidth under the minimum counts as "throughput"); null: succeeded. */
  stage: Stage | null;
  connectMs: number;
  /** Delivered / advertised bandwidth, capped at 1; null when either is 0. */
  bandwidthRatio: number | null;
}

/** The largest budget a row carries (a BigInt64Array holds it): far above what 64 receipts can draw. */
export const MAX_BUDGET_WEI = 2n ** 63n - 1n;

/** The row of receipt `r` about `provider` (score.ts ScoreRow): its promise checked once, here. */
export function rowOf(r: Receipt, provider: string, check: PromiseCheck, p: ScoreParams = DEFAULT_SCORE_PARAMS, kind: EvidenceKind = "receipt"): ScoreRow {
  const who = provider.toLowerCase();
  const pr = r.promise;
  const about = r.provider === who && r.consumer !== who;
  const valid = about && pr !== null && pr.provider !== r.consumer && check(r.consumer, pr.provider, pr.amount, pr.signature);
  return {
    consumer: r.consumer,
    at: r.at,
    tie: Number.parseInt(receiptId(r, kind).slice(0, 13), 16),
    budgetWei: valid && pr ? minWei(pr.amount, MAX_BUDGET_WEI) : 0n,
    drawWei: !about ? 0n : r.failed !== null ? p.stakeWei : minWei(r.promisedWei, p.stakeWei),
    paid: valid && pr !== null && pr.amount > 0n,
    stage: failedStage(r, p),
    connectMs: r.connectMs,
    bandwidthRatio: bandwidthRatioOf(r),
  };
}

/** Each receipt's weight (same order as `receipts`, which must all be about `provider`). */
export function weights(receipts: Receipt[], provider: string, check: PromiseCheck, p: ScoreParams = DEFAULT_SCORE_PARAMS): bigint[] {
  return rowWeights(receipts.map((r) => rowOf(r, provider, check, p)));
}

/** Each row's weight: per consumer, its largest budget, drawn oldest first. */
export function rowWeights(rows: readonly ScoreRow[]): bigint[] {
  const out = rows.map(() => 0n);
  const byConsumer = new Map<string, number[]>();
  rows.forEach((r, i) => {
    let list = byConsumer.get(r.consumer);
    if (!list) byConsumer.set(r.consumer, (list = []));
    list.push(i);
  });
  for (const idx of byConsumer.values()) {
    // The consumer's budget: its largest valid promise among these receipts (to any provider).
    let budget = 0n;
    for (const i of idx) if (rows[i].budgetWei > budget) budget = rows[i].budgetWei;
    if (budget === 0n) continue;
    // Oldest first; a paid session draws what it promised, a failure the stake.
    idx.sort((a, b) => rows[a].at - rows[b].at || rows[a].tie - rows[b].tie);
    for (const i of idx) {
      const w = minWei(rows[i].drawWei, budget);
      out[i] = w;
      budget -= w;
    }
  }
  return out;
}

function minWei(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function weightedMedian(values: { v: number; w: bigint }[]): number | null {
  const list = values.filter((x) => x.w > 0n).sort((a, b) => a.v - b.v);
  if (list.length === 0) return null;
  const total = list.reduce((s, x) => s + x.w, 0n);
  let acc = 0n;
  for (const x of list) {
    acc += x.w;
    if (acc * 2n >= total) return x.v;
  }
  return list[list.length - 1].v;
}

const ratio = (a: bigint, b: bigint) => (b === 0n ? 0 : Number((a * 1_000_000n) / b) / 1_000_000);

/**
 * The score of one provider's service type from its receipts (docs/quality.md). `prior` is what the
 * raw evidence is pulled toward: the probe score (probe-score.ts) when the probers have one, else the
 * neutral 50; with no weighed receipt the score is the probe score (or unrated).
 */
export function scoreOf(
  receipts: Receipt[],
  provider: string,
  check: PromiseCheck,
  p: ScoreParams = DEFAULT_SCORE_PARAMS,
  prior: number | null = null,
): QualityScore {
  return scoreOfRows(
    receipts.map((r) => rowOf(r, provider, check, p)),
    p,
    prior,
  );
}

/** `scoreOf` from rows (what a replica keeps instead of the receipts). */
export function scoreOfRows(rows: readonly ScoreRow[], p: ScoreParams = DEFAULT_SCORE_PARAMS, prior: number | null = null): QualityScore {
  const w = rowWeights(rows);
  let total = 0n;
  let ok = 0n;
  const connect: { v: number; w: bigint }[] = [];
  const bandwidth: { v: number; w: bigint }[] = [];
  const failures = new Map<Stage, { receipts: number; consumers: Set<string>; weighed: number; paid: Set<string> }>();
  rows.forEach((r, i) => {
    total += w[i];
    const stage = r.stage;
    if (stage === null) {
      ok += w[i];
      if (r.connectMs > 0) connect.push({ v: r.connectMs, w: w[i] });
    } else {
      let f = failures.get(stage);
      if (!f) failures.set(stage, (f = { receipts: 0, consumers: new Set(), weighed: 0, paid: new Set() }));
      f.receipts++;
      f.consumers.add(r.consumer);
      if (w[i] > 0n) {
        f.weighed++;
        f.paid.add(r.consumer);
      }
    }
    if (r.bandwidthRatio !== null) bandwidth.push({ v: r.bandwidthRatio, w: w[i] });
  });
  const weighed = w.filter((x) => x > 0n).length;
  const successRate = total > 0n ? ratio(ok, total) : null;
  const connectMs = weightedMedian(connect);
  const bandwidthRatio = weightedMedian(bandwidth);
  let score: number | null = prior;
  if (total > 0n && successRate !== null) {
    const bwFactor = 0.5 + 0.5 * (bandwidthRatio ?? 1);
    const connectFactor = 0.8 + 0.2 * (connectMs === null ? 1 : 1 / (1 + connectMs / 3000));
    const raw = 100 * successRate * bwFactor * connectFactor;
    const share = ratio(total, total + p.priorWeightWei);
    score = Math.round((share * raw + (1 - share) * (prior ?? NEUTRAL_SCORE)) * 10) / 10;
  }
  return {
    score,
    rank: score ?? NEUTRAL_SCORE,
    receipts: rows.length,
    weighed,
    weightWei: total,
    successRate,
    connectMs,
    bandwidthRatio,
    failures: STAGES.filter((s) => failures.has(s)).map((s) => {
      const f = failures.get(s)!;
      return { stage: s, receipts: f.receipts, consumers: f.consumers.size, weighed: f.weighed, weighedConsumers: f.paid.size };
    }),
  };
}

/**
 * "12 consumers in 168 h had a tunnel but never received a first byte: check your NAT / firewall …",
 * one line per failing stage, counting the receipts backed by a promise (unpaid reports are counted
 * apart: anyone can write them for free).
 */
export function failureWords(s: Pick<QualityScore, "failures">, periodHours: number): string[] {
  return s.failures.map((f) => {
    const w = STAGE_WORDS[f.stage];
    const unpaid = f.receipts - f.weighed;
    const extra = unpaid > 0 ? ` (and ${unpaid} unpaid reports, which weigh nothing)` : "";
    if (f.weighed === 0) return `only unpaid reports (${unpaid}) say consumers ${w.failed}: they weigh nothing`;
    const who = f.weighedConsumers === 1 ? "1 consumer" : `${f.weighedConsumers} consumers`;
    const times = f.weighed === f.weighedConsumers ? "" : ` (${f.weighed} sessions)`;
    return `${who} in ${periodHours} h ${w.failed}${times}${extra}: ${w.hint}`;
  });
}
