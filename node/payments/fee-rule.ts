/** A pair the fee rule may send: what it would settle, and whether it goes whatever the fee. */
export interface SettleCandidate {
  pairId: string;
  /** Promised and stored, not settled yet (wei). */
  unsettled: bigint;
  /** Goes whatever the fee: it reached the threshold, or its consumer's vault is leaving. */
  mustGo: boolean;
}

export interface FeeRule {
  /** What one settlement transaction costs (wei): the relayer's fee cap, or the gas in MYST. */
  feeWei: bigint;
  /** A transaction goes when its fee is at most this percentage of what it settles. */
  feePercent: number;
  /** The most pairs one transaction carries (the settler's batch). */
  maxBatch: number;
}

/**
 * The pairs worth settling now, in the order to queue them so that the settler's batches are the
 * transactions counted here. The fee is paid per transaction and a transaction carries at most
 * `maxBatch` pairs, so the rule counts transactions, not rounds: the pairs that must go take
 * ⌈m / maxBatch⌉ transactions whatever the fee, and the room left in them carries the largest other
 * pairs for nothing; after that, the largest remaining pairs go one transaction's worth at a time,
 * each only while its own fee is at most `feePercent` of what it carries. So every fee this rule
 * chooses to pay keeps to the percentage (before, 50 pairs worth the fee of one "round" were sent in
 * three transactions, three fees).
 */
export function pairsWorthSettling(candidates: SettleCandidate[], rule: FeeRule): string[] {
  const batch = Math.max(1, Math.floor(rule.maxBatch));
  const must = candidates.filter((c) => c.mustGo);
  // Largest first: each transaction then carries the most it can for its one fee.
  const rest = candidates.filter((c) => !c.mustGo).sort((a, b) => (a.unsettled === b.unsettled ? 0 : a.unsettled > b.unsettled ? -1 : 1));
  const chosen = [...must];
  const room = (batch - (must.length % batch)) % batch;
  chosen.push(...rest.splice(0, room));
  const percentBasis = BigInt(Math.round(rule.feePercent * 100));
  while (rest.length > 0) {
    const carried = rest.slice(0, batch).reduce((sum, c) => sum + c.unsettled, 0n);
    if (rule.feeWei * 10_000n > carried * percentBasis) break;
    chosen.push(...rest.splice(0, batch));
  }
  return chosen.map((c) => c.pairId);
}
