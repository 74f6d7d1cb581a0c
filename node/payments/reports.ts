import type { ChannelState } from "../chain/channels";
import type { PromiseStore } from "../store/promise-store";

/** A provider's earnings from its promise store (JSON-ready: amounts in wei as strings). */
export interface EarningsReport {
  sessions: { sessionId: string; consumer: string; promisedWei: string }[];
  totalPromisedWei: string;
  settledWei: string;
  unsettledWei: string;
  settlements: { channelId: string; amountWei: string; paidWei?: string; txHash: string | null; at: string }[];
}

export function earningsReport(store: PromiseStore): EarningsReport {
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
      .map((s) => ({ channelId: s.channelId, amountWei: s.amount.toString(), ...(s.paid !== null ? { paidWei: s.paid.toString() } : {}), txHash: s.txHash, at: new Date(s.at).toISOString() })),
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
