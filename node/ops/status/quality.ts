import type { Static } from "@sinclair/typebox";
import type { SignerDirectory } from "../../identity/protocol-signature";
import { type Receipt, verifySignedReceipt } from "../../quality/receipt";
import { failureWords, type PromiseCheck, scoreOf } from "../../quality/score";
import type { Address } from "../../values/address";
import type * as S from "./schemas";

/**
 * A provider's quality, made again here from what discovery served (`GET /v1/quality/{provider}`):
 * every raw receipt is checked (signature, registered consumer, about this provider) and the score
 * computed from the survivors with this node's own promise check. Discovery's number is shown beside
 * it; the two agree unless discovery lies or holds receipts this node cannot check.
 */
export async function recomputeQuality(answer: unknown, identity: Address, directory: SignerDirectory, check: PromiseCheck): Promise<Static<typeof S.Quality>> {
  const a = (answer ?? {}) as { periodHours?: unknown; reports?: { serviceType?: unknown; score?: unknown }[]; receipts?: { signed?: unknown }[] };
  const periodHours = typeof a.periodHours === "number" && Number.isSafeInteger(a.periodHours) && a.periodHours > 0 ? a.periodHours : 168;
  const byType = new Map<string, Receipt[]>();
  let rejected = 0;
  for (const item of Array.isArray(a.receipts) ? a.receipts.slice(0, 100_000) : []) {
    try {
      const { receipt } = await verifySignedReceipt(item?.signed, { directory, maxAgeMs: (periodHours + 1) * 3_600_000 });
      if (receipt.provider !== identity.toLowerCase()) throw new Error("about another provider");
      let list = byType.get(receipt.serviceType);
      if (!list) byType.set(receipt.serviceType, (list = []));
      list.push(receipt);
    } catch {
      rejected++;
    }
  }
  const theirs = new Map((Array.isArray(a.reports) ? a.reports : []).map((r) => [r?.serviceType, typeof r?.score === "number" ? r.score : null]));
  return {
    identity,
    periodHours,
    rejected,
    services: [...byType].map(([serviceType, receipts]) => {
      const s = scoreOf(receipts, identity, check);
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
      };
    }),
  };
}
