import { EventEmitter } from "node:events";
import { channelIdOf } from "../chain/eip712";
import { silentLogger, type Logger } from "../log/logger";
import type { PromiseStore } from "../store/promise-store";
import type { Admission, ProviderSession, ProviderSessions } from "../session/provider";
import { priceFromProposal, priceOf } from "./price";
import { PromiseRejected, verifyPromise } from "./promise";
import type { Settler } from "./settlement";
import type { ChannelStateCache } from "./channel-cache";
import { checkPayment, PAYMENT_INVOICE, PAYMENT_PROMISE } from "./messages";

/** What a service measured of a session: bytes each way, and how long the service was down under it. */
export interface SessionUsage {
  bytesIn: number;
  bytesOut: number;
  /** Time the session could not be served (its server restarting): not billed. */
  downMs?: number;
}

export interface ProviderPaymentsOptions {
  sessions: ProviderSessions;
  channels: ChannelStateCache;
  store: PromiseStore;
  settler: Settler;
  /** Bytes a session has moved so far, from the service's meter. */
  usage: (sessionId: string) => SessionUsage | undefined;
  /** Whether the broker connection is up: while it is down, no invoice can arrive and no cut-off is fair. */
  brokerUp?: () => boolean;
  /** How often to invoice. Default 10 s. */
  invoiceEveryMs?: number;
  /** Also invoice as soon as this much (wei) is due beyond the last invoice. Default: never early. */
  invoiceAboveWei?: bigint;
  /** End a session whose unpaid amount passes this (wei). */
  maxUnpaid: bigint;
  /** Refuse sessions whose channel holds less than this (wei). */
  minChannelBalance: bigint;
  /** Settle a channel when its unsettled promises pass this (wei). */
  settleThreshold: bigint;
  settleOnSessionEnd?: boolean;
  log?: Logger;
}

/** One session's account: what its promises added to the channel, and its last invoice. */
interface Ledger {
  /** The channel amount last invoiced. */
  invoiced: bigint;
  invoicedAt: number;
  /** What this session's promises added to the channel's cumulative amount. */
  paid: bigint;
}

/**
 * The provider's side of payments. The ledger is per (consumer, provider) channel and cumulative
 * across sessions: each session owes its own time and bytes at the proposal's price, and its
 * invoice states the channel's cumulative amount that pays that in full (the latest stored promise
 * plus what this session has not paid yet), so a second or a concurrent session continues from the
 * channel's figure instead of from zero. Each promise is checked against cached channel state (no
 * chain round trip), stored durably before it is acknowledged, and credited to its session by how
 * much it adds to the channel. A session whose own unpaid amount passes the limit is ended;
 * settlement goes to the Settler by policy. Emits "promise-accepted" ({sessionId, amount,
 * increase}) and "promise-rejected" ({sessionId, code}).
 */
/** What ProviderPayments tells its listeners. */
export interface ProviderPaymentsEvents {
  "promise-accepted": [{ sessionId: string; amount: bigint; increase: bigint }];
  "promise-rejected": [{ sessionId: string; code: string }];
}

export class ProviderPayments extends EventEmitter<ProviderPaymentsEvents> {
  readonly #o: Required<Omit<ProviderPaymentsOptions, "log" | "brokerUp">> & Pick<ProviderPaymentsOptions, "brokerUp"> & { log: Logger };
  readonly #ledgers = new Map<string, Ledger>();
  #timer?: NodeJS.Timeout;
  /** When the broker was last seen down: the unpaid limit waits a grace period after it comes back. */
  #brokerDownAt = 0;

  constructor(options: ProviderPaymentsOptions) {
    super();
    this.#o = {
      ...options,
      invoiceEveryMs: options.invoiceEveryMs ?? 10_000,
      invoiceAboveWei: options.invoiceAboveWei ?? 2n ** 255n,
      settleOnSessionEnd: options.settleOnSessionEnd ?? true,
      log: options.log ?? silentLogger,
    };
  }

  /** The admission check to give ProviderSessions: a live read (the consumer may just have deposited). */
  readonly admission: Admission = async ({ consumer, proposal }) => {
    const state = await this.#o.channels.read(consumer, proposal.provider);
    if (state.balance < this.#o.minChannelBalance) {
      return { code: "PAYMENT_NOT_COVERED", message: `the channel holds ${state.balance} wei; this provider needs at least ${this.#o.minChannelBalance}` };
    }
    return null;
  };

  start(): void {
    const { sessions } = this.#o;
    sessions.on("session-accepted", (s: ProviderSession) => {
      this.#ledgers.set(s.id, { invoiced: 0n, invoicedAt: Date.now(), paid: 0n });
      s.dialog.handle(PAYMENT_PROMISE, (body) =>
        this.#onPromise(s, body).catch((err) => {
          this.emit("promise-rejected", { sessionId: s.id, code: (err as { code?: string }).code ?? "INTERNAL" });
          throw err;
        }),
      );
    });
    sessions.on("session-ended", (s: ProviderSession) => {
      this.#ledgers.delete(s.id);
      if (this.#o.settleOnSessionEnd) this.#o.settler.settleChannel(channelIdOf(s.consumer, s.proposal.provider));
    });
    // Checked at least every second: the amount trigger and the unpaid limit must not wait a period.
    this.#timer = setInterval(() => void this.#tick(), Math.min(this.#o.invoiceEveryMs, 1000));
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** What the session owes for itself so far: its billable time and its bytes at the proposal's price. */
  due(s: ProviderSession): bigint {
    const usage = this.#o.usage(s.id) ?? { bytesIn: 0, bytesOut: 0 };
    const elapsed = Math.max(0, (s.endedAt ?? Date.now()) - (s.confirmedAt ?? Date.now()) - (usage.downMs ?? 0));
    return priceOf(priceFromProposal(s.proposal), { ms: BigInt(elapsed), bytes: BigInt(usage.bytesIn + usage.bytesOut) });
  }

  /** What the session's promises have paid of its own amount so far (undefined once it ended). */
  paid(sessionId: string): bigint | undefined {
    return this.#ledgers.get(sessionId)?.paid;
  }

  async #tick(): Promise<void> {
    if (this.#o.brokerUp && !this.#o.brokerUp()) {
      this.#brokerDownAt = Date.now();
      return;
    }
    const grace = Math.max(2 * this.#o.invoiceEveryMs, 10_000);
    const enforce = Date.now() - this.#brokerDownAt > grace;
    for (const s of this.#o.sessions.list()) {
      if (s.state !== "active") continue;
      const ledger = this.#ledgers.get(s.id);
      if (!ledger) continue;
      const due = this.due(s);
      const unpaid = due - ledger.paid;
      if (enforce && unpaid > this.#o.maxUnpaid) {
        await this.#o.sessions.end(s.id, `payment lagging: ${unpaid} wei unpaid, limit ${this.#o.maxUnpaid}`);
        continue;
      }
      if (unpaid <= 0n) continue;
      const amount = (this.#o.store.latest(channelIdOf(s.consumer, s.proposal.provider))?.amount ?? 0n) + unpaid;
      const periodOver = Date.now() - ledger.invoicedAt >= this.#o.invoiceEveryMs;
      if (amount > ledger.invoiced && (periodOver || amount - ledger.invoiced >= this.#o.invoiceAboveWei)) {
        ledger.invoiced = amount;
        ledger.invoicedAt = Date.now();
        const usage = this.#o.usage(s.id) ?? { bytesIn: 0, bytesOut: 0 };
        try {
          s.dialog.notify(PAYMENT_INVOICE, {
            sessionId: s.id,
            amount: amount.toString(),
            sessionAmount: due.toString(),
            bytes: usage.bytesIn + usage.bytesOut,
            ms: Date.now() - (s.confirmedAt ?? Date.now()),
          });
        } catch (err) {
          this.#o.log.warn({ err: (err as Error).message, sessionId: s.id }, "could not send an invoice");
        }
      } else if (periodOver && amount <= ledger.invoiced) {
        // The same figure again after a period: an invoice (or its promise) may have been lost.
        ledger.invoiced = 0n;
      }
    }
  }

  async #onPromise(s: ProviderSession, body: unknown): Promise<{ accepted: true; amount: string }> {
    if (!checkPayment.promise.Check(body) || body.sessionId !== s.id) {
      throw new PromiseRejected("PROMISE_MALFORMED", "payment.promise needs {sessionId, amount (wei), signature (65 bytes hex)}");
    }
    const b = body;
    if (!this.#ledgers.has(s.id)) throw new PromiseRejected("SESSION_ENDED", "the session is over");
    const amount = BigInt(b.amount);
    const channelId = channelIdOf(s.consumer, s.proposal.provider);
    const channel = await this.#o.channels.get(s.consumer, s.proposal.provider);
    // From here to the store nothing awaits: two promises on one channel cannot both count one increase.
    const ledger = this.#ledgers.get(s.id);
    if (!ledger) throw new PromiseRejected("SESSION_ENDED", "the session is over");
    const last = this.#o.store.latest(channelId)?.amount ?? 0n;
    const signature = Buffer.from(b.signature.slice(2), "hex");
    verifyPromise({ consumer: s.consumer, provider: s.proposal.provider, channelId, amount, signature }, this.#o.channels.channels, {
      lastAmount: last,
      channel,
    });
    const increase = amount - last;
    // Durable before acknowledged: the response below is the consumer's receipt.
    if (increase > 0n)
      this.#o.store.save({
        channelId,
        consumer: s.consumer,
        provider: s.proposal.provider,
        sessionId: s.id,
        amount,
        increase,
        signature: b.signature,
        receivedAt: Date.now(),
      });
    ledger.paid += increase;
    this.emit("promise-accepted", { sessionId: s.id, amount, increase });
    if (amount - this.#o.store.settledAmount(channelId) >= this.#o.settleThreshold) this.#o.settler.settleChannel(channelId);
    return { accepted: true, amount: amount.toString() };
  }
}
