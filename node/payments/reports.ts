import type { ChannelState } from "../chain/channels";
import type { PromiseStore } from "../store/promise-store";
import type { PendingSettlement } from "./settlement";

/** A provider's earnings from its promise store (JSON-ready: amounts in wei as strings). */
export interface EarningsReport {
  sessions: { sessionId: string; consumer: string; promisedWei: string }[];
  totalPromisedWei: string;
  settledWei: string;
  unsettledWei: string;
  settlements: { channelId: string; amountWei: string; paidWei?: string; txHash: string | null; at: string }[];
  /** Settlements not done yet: queued, sent, retrying (with the last error), waiting for a top-up, or rejected. */
  pendingSettlements: {
    channelId: string;
    consumer: string;
    amountWei: string;
    state: string;
    attempts: number;
    lastError?: string;
    nextAttemptAt?: string;
    txHash?: string;
  }[];
}

/** `pending`: the running settler's queue; without one (no node running) every unsettled channel shows as queued. */
export function earningsReport(store: PromiseStore, pending?: PendingSettlement[]): EarningsReport {
  const latest = store.latestPerChannel();
  const promised = latest.reduce((a, p) => a + p.amount, 0n);
  const settled = latest.reduce((a, p) => a + store.settledAmount(p.channelId), 0n);
  return {
    sessions: store.earningsBySession().map((s) => ({ sessionId: s.sessionId, consumer: s.consumer, promisedWei: s.promised.toString() })),
    totalPromisedWei: promised.toString(),
    settledWei: settled.toString(),
    unsettledWei: (promised - settled).toString(),
    settlements: store
      .settlements()
      .filter((s) => s.status === "mined")
      .map((s) => ({
        channelId: s.channelId,
        amountWei: s.amount.toString(),
        ...(s.paid !== null ? { paidWei: s.paid.toString() } : {}),
        txHash: s.txHash,
        at: new Date(s.at).toISOString(),
      })),
    pendingSettlements: (
      pending ??
      latest
        .filter((p) => p.amount > store.settledAmount(p.channelId))
        .map((p) => ({ channelId: p.channelId, consumer: p.consumer, amount: p.amount, state: "queued" as const, attempts: 0 }))
    ).map((p) => ({
      channelId: p.channelId,
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

/** A consumer's channel with a provider, as the chain holds it (JSON-ready). */
export interface ChannelReport {
  channelId: string;
  consumer: string;
  provider: string;
  balanceWei: string;
  spentWei: string;
  withdrawalReadyAt: string | null;
}

export function channelReport(state: ChannelState, consumer: string, provider: string): ChannelReport {
  return {
    channelId: state.id,
    consumer,
    provider,
    balanceWei: state.balance.toString(),
    spentWei: state.settled.toString(),
    withdrawalReadyAt: state.withdrawalReadyAt === 0n ? null : new Date(Number(state.withdrawalReadyAt) * 1000).toISOString(),
  };
}
