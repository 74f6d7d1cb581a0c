import type { Static } from "@sinclair/typebox";
import type { SignerDirectory } from "../../identity/protocol-signature";
import { DEFAULT_PROBE_PARAMS, type ProbeParams, probeScoreOf, probeWords } from "../../quality/probe-score";
import { type EvidenceKind, type Receipt, verifySignedReceipt } from "../../quality/receipt";
import { failedStage, failureWords, type PromiseCheck, scoreOf } from "../../quality/score";
import type { Address } from "../../values/address";
import type * as S from "./schemas";

const DAY = 86_400_000;

/**
 * A provider's quality, made again here from what discovery served (`GET /v1/quality/{provider}`):
 * every raw receipt and probe result is checked (signature, registered signer, about this provider)
 * and the score computed from the survivors with this node's own promise check (the probers' median
 * first, then the receipts pulled toward it). Discovery's number is shown beside it; the two agree
 * unless discovery lies or holds records this node cannot check. The probe period comes from
 * discovery's answer (1 h to 7 days); fewer than 3 probers never make a median, whatever it says.
 */
export async function recomputeQuality(answer: unknown, identity: Address, directory: SignerDirectory, check: PromiseCheck): Promise<Static<typeof S.Quality>> {
  const a = (answer ?? {}) as {
    periodHours?: unknown;
    probePeriodHours?: unknown;
    minProbers?: unknown;
    reports?: { serviceType?: unknown; score?: unknown }[];
    receipts?: { signed?: unknown }[];
    probes?: { signed?: unknown }[];
  };
  const periodHours = typeof a.periodHours === "number" && Number.isSafeInteger(a.periodHours) && a.periodHours > 0 ? a.periodHours : 168;
  const probeParams: ProbeParams = {
    periodMs:
      typeof a.probePeriodHours === "number" && Number.isSafeInteger(a.probePeriodHours) && a.probePeriodHours >= 1 && a.probePeriodHours <= 168
        ? a.probePeriodHours * 3_600_000
        : DEFAULT_PROBE_PARAMS.periodMs,
    minProbers: typeof a.minProbers === "number" && Number.isSafeInteger(a.minProbers) && a.minProbers > 3 ? Math.min(a.minProbers, 100) : 3,
  };
  const byType = new Map<string, { receipts: Receipt[]; probes: Receipt[] }>();
  let rejected = 0;
  const take = async (items: unknown, kind: EvidenceKind) => {
    for (const item of Array.isArray(items) ? items.slice(0, 100_000) : []) {
      try {
        const { receipt } = await verifySignedReceipt((item as { signed?: unknown })?.signed, { directory, maxAgeMs: (periodHours + 1) * 3_600_000, kind });
        if (receipt.provider !== identity.toLowerCase()) throw new Error("about another provider");
        let held = byType.get(receipt.serviceType);
        if (!held) byType.set(receipt.serviceType, (held = { receipts: [], probes: [] }));
        (kind === "probe" ? held.probes : held.receipts).push(receipt);
      } catch {
        rejected++;
      }
    }
  };
  await take(a.receipts, "receipt");
  await take(a.probes, "probe");
  const theirs = new Map((Array.isArray(a.reports) ? a.reports : []).map((r) => [r?.serviceType, typeof r?.score === "number" ? r.score : null]));
  return {
    identity,
    periodHours,
    rejected,
    services: [...byType].map(([serviceType, { receipts, probes }]) => {
      const probe = probeScoreOf(probes, identity, check, probeParams);
      const s = scoreOf(receipts, identity, check, undefined, probe.score);
      return {
        serviceType,
        score: s.score,
        discoveryScore: theirs.get(serviceType) ?? null,
        receipts: s.receipts,
        weighed: s.weighed,
        successRate: s.successRate,
        connectMs: s.connectMs,
        bandwidthRatio: s.bandwidthRatio,
        failures: s.failures,
        words: failureWords(s, periodHours),
        probe: {
          score: probe.score,
          periodHours: probe.periodHours,
          periodStart: probe.period ? new Date(probe.period.start).toISOString() : null,
          probers: probe.period?.probers ?? [],
          results: probe.results,
          counted: probe.counted,
          failures: probe.failures.map((f) => ({ stage: f.stage, probes: f.receipts, probers: f.consumers })),
          words: probeWords(probe),
          periods: probe.periods.map((p) => ({ start: new Date(p.start).toISOString(), score: p.score, probers: p.probers.length })),
        },
        history: history(receipts, probes),
      };
    }),
  };
}

/** Per day (UTC), oldest first: receipts and probe results, and how many of each failed a stage. */
function history(receipts: Receipt[], probes: Receipt[]): Static<typeof S.QualityDay>[] {
  const days = new Map<number, Static<typeof S.QualityDay>>();
  const add = (r: Receipt, kind: "receipts" | "probes") => {
    const start = Math.floor(r.at / DAY) * DAY;
    let d = days.get(start);
    if (!d) days.set(start, (d = { day: new Date(start).toISOString().slice(0, 10), receipts: 0, receiptsFailed: 0, probes: 0, probesFailed: 0 }));
    d[kind]++;
    if (failedStage(r) !== null) d[kind === "receipts" ? "receiptsFailed" : "probesFailed"]++;
  };
  for (const r of receipts) add(r, "receipts");
  for (const r of probes) add(r, "probes");
  return [...days.keys()].sort((x, y) => x - y).map((k) => days.get(k)!);
}
