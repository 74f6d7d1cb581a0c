import type { VaultState } from "../chain/vault";
import type { PromiseStore } from "../store/promise-store";
import type { SessionPathRecord, SessionStore } from "../store/session-store";
import type { PendingSettlement } from "./settlement";

/** A provider's earnings from its promise store (JSON-ready: amounts in wei as strings). */
export interface EarningsReport {
  /** Per session: what it was promised and, from the session history, what it sold, moved and which path it took. */
  sessions: { sessionId: string; consumer: string; promisedWei: string; serviceType?: string; bytes?: number; path?: SessionPathRecord | null }[];
  totalPromisedWei: string;
  settledWei: string;
  unsettledWei: string;
  /** Relayers' fees taken out of the settled amounts (MYST wei). */
  feesWei: string;
  /** Settled, less fees: what reached (or waits in the vault for) the beneficiary. */
  netWei: string;
  settlements: { pairId: string; amountWei: string; paidWei?: string; feeWei?: string; txHash: string | null; at: string }[];
  /** Settlements not done yet: queued, sent, retrying (with the last error), waiting for a top-up, or rejected. */
  pendingSettlements: {
    pairId: string;
    consumer: string;
    amountWei: string;
    state: string;
    attempts: number;
    lastError?: string;
    nextAttemptAt?: string;
    txHash?: string;
  }[];
}

/**
 * `pending`: the running settler's queue; without one (no node running) every unsettled channel shows
 * as queued. `history`: the session history, for each session's service type, bytes and path.
 */
export function earningsReport(store: PromiseStore, pending?: PendingSettlement[], history?: SessionStore): EarningsReport {
  const bySession = store.earningsBySession();
  const known = history?.byId(bySession.map((s) => s.sessionId));
  const latest = store.latestPerPair();
  const promised = latest.reduce((a, p) => a + p.amount, 0n);
  const settled = latest.reduce((a, p) => a + store.settledAmount(p.pairId), 0n);
  const mined = store.settlements().filter((s) => s.status === "mined");
  const fees = mined.reduce((a, s) => a + (s.fee ?? 0n), 0n);
  return {
    sessions: bySession.map((s) => {
      const h = known?.get(s.sessionId);
      return {
        sessionId: s.sessionId,
        consumer: s.consumer,
        promisedWei: s.promised.toString(),
        ...(h ? { serviceType: h.serviceType, bytes: h.bytes, path: h.path } : {}),
      };
    }),
    totalPromisedWei: promised.toString(),
    settledWei: settled.toString(),
    unsettledWei: (promised - settled).toString(),
    feesWei: fees.toString(),
    netWei: (settled - fees).toString(),
    settlements: mined.map((s) => ({
      pairId: s.pairId,
      amountWei: s.amount.toString(),
      ...(s.paid !== null ? { paidWei: s.paid.toString() } : {}),
      ...(s.fee !== null ? { feeWei: s.fee.toString() } : {}),
      txHash: s.txHash,
      at: new Date(s.at).toISOString(),
    })),
    pendingSettlements: (
      pending ??
      latest
        .filter((p) => p.amount > store.settledAmount(p.pairId))
        .map((p) => ({ pairId: p.pairId, consumer: p.consumer, amount: p.amount, state: "queued" as const, attempts: 0 }))
    ).map((p) => ({
      pairId: p.pairId,
      consumer: p.consumer,
      amountWei: p.amount.toString(),
      state: p.state,
      attempts: p.attempts,
      ...("lastError" in p && p.lastError ? { lastError: p.lastError } : {}),
      ...("nextAttemptAt" in p && p.nextAttemptAt ? { nextAttemptAt: new Date(p.nextAttemptAt).toISOString() } : {}),
      ...("txHash" in p && p.txHash ? { txHash: p.txHash } : {}),
    })),
  };
}

/** A consumer's vault, as the chain holds it (JSON-ready). */
export interface VaultReport {
  consumer: string;
  balanceWei: string;
  escrowWei: string;
  /** When the pending exit can be withdrawn; null when none is pending. */
  exitReadyAt: string | null;
  /** MYST in the consumer's own account, ready to deposit. */
  walletWei: string;
}

export function vaultReport(state: VaultState, consumer: string, wallet: bigint): VaultReport {
  return {
    consumer,
    balanceWei: state.balance.toString(),
    escrowWei: state.escrow.toString(),
    exitReadyAt: state.exitReadyAt === 0n ? null : new Date(Number(state.exitReadyAt) * 1000).toISOString(),
    walletWei: wallet.toString(),
  };
}
