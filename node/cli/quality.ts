import type { NodeClient } from "../api/client";
import type { Output } from "./output";

type Quality = Awaited<ReturnType<NodeClient["quality"]>>;

/**
 * A provider's quality in words (docs/quality.md "How a provider reads its failures"): per service
 * type the score, what consumers' receipts and the probers saw fail (stage, count, what to check),
 * and the last days' evidence.
 */
export function qualityLines(q: Quality): string[] {
  if (q.services.length === 0)
    return [`quality:  no receipts nor probe results about ${q.identity} in the last ${q.periodHours} h (unrated: listed at the neutral score)`];
  return q.services.flatMap((s) => [
    `quality:  ${s.serviceType} score ${s.score ?? "unrated"} from ${s.receipts} receipts (${s.weighed} backed by a promise)` +
      (s.successRate === null ? "" : `, success ${Math.round(s.successRate * 100)}%`) +
      (s.connectMs === null ? "" : `, connect ${s.connectMs} ms`) +
      (s.bandwidthRatio === null ? "" : `, ${Math.round(s.bandwidthRatio * 100)}% of the advertised bandwidth`),
    s.probe.score === null
      ? `  probes: no median yet (${s.probe.counted} counted probe results; a period needs 3 probers)`
      : `  probes: ${s.probe.score} (median of ${s.probe.probers.length} probers in the ${s.probe.periodHours} h from ${s.probe.periodStart})`,
    ...s.words.map((w) => `  ${w}`),
    ...s.probe.words.map((w) => `  ${w}`),
    ...s.history.slice(-7).map((d) => `  ${d.day}: ${d.receipts} receipts (${d.receiptsFailed} failed), ${d.probes} probes (${d.probesFailed} failed)`),
  ]);
}

/** `out` with the provider's quality added: lines after the human output, a `quality` field in JSON. */
export function withQuality(out: Output, q: Quality | { error: string } | undefined): Output {
  if (!q) return out;
  return {
    ...out,
    result: (data, human) =>
      out.result({ ...(data as object), quality: q }, () => [...human(), ...("error" in q ? [`quality:  not available (${q.error})`] : qualityLines(q))]),
  };
}

/** The quality of a running node that sells something (none otherwise); an error from discovery in words. */
export async function qualityOf(node: NodeClient | null): Promise<Quality | { error: string } | undefined> {
  if (!node) return undefined;
  const { services } = await node.services().catch(() => ({ services: [] as unknown[] }));
  if (services.length === 0) return undefined;
  return node.quality().catch((err: Error) => ({ error: err.message }));
}
