import { EventEmitter } from "node:events";
import type { PaymentChannelsClient } from "../chain/channels";
import { channelIdOf } from "../chain/eip712";
import { silentLogger, type Logger } from "../log/logger";
import type { PromiseStore } from "../store/promise-store";
import type { Admission, ProviderSession, ProviderSessions } from "../session/provider";
import { priceFromProposal, priceOf } from "./price";
import { PromiseRejected, verifyPromise } from "./promise";
import type { Settler } from "./settlement";
import { PAYMENT_INVOICE, PAYMENT_PROMISE } from "./messages";

export interface ProviderPaymentsOptions {
  sessions: ProviderSessions;
  channels: PaymentChannelsClient;
  store: PromiseStore;
  settler: Settler;
  /** Bytes a session has moved so far, from the service's meter. */
  usage: (sessionId: string) => { bytesIn: number; bytesOut: number } | undefined;
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

interface Ledger {
  invoiced: bigint;
  invoicedAt: number;
  paid: bigint;
}

/**
 * The provider's side of payments: admits sessions whose channel covers the minimum, invoices
 * each active session for the cumulative amount due (time and bytes at the proposal's price),
 * verifies and stores every promise before acknowledging it, ends sessions whose payment lags
 * past the limit, and hands settlement to the Settler by policy. Emits "promise-accepted"
 * ({sessionId, amount, increase}) and "promise-rejected" ({sessionId, code}).
 */
export class ProviderPayments extends EventEmitter {
  readonly #o: Required<Omit<ProviderPaymentsOptions, "log">> & { log: Logger };
  readonly #ledgers = new Map<string, Ledger>();
  #timer?: NodeJS.Timeout;

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

  /** The admission check to give ProviderSessions. */
  readonly admission: Admission = async ({ consumer, proposal }) => {
    const state = await this.#o.channels.state(consumer, proposal.provider);
    if (state.balance < this.#o.minChannelBalance) {
      return { code: "PAYMENT_NOT_COVERED", message: `the channel holds ${state.balance} wei; this provider needs at least ${this.#o.minChannelBalance}` };
    }
    return null;
  };

  start(): void {
    const { sessions } = this.#o;
    sessions.on("session-accepted", (s: ProviderSession) => {
      this.#ledgers.set(s.id, { invoiced: 0n, invoicedAt: Date.now(), paid: this.#o.store.latest(channelIdOf(s.consumer, s.proposal.provider))?.amount ?? 0n });
      s.dialog.handle(PAYMENT_PROMISE, (body) =>
        this.#onPromise(s, body).catch((err) => {
          this.emit("promise-rejected", { sessionId: s.id, code: (err as { code?: string }).code ?? "INTERNAL" });
          throw err;
        }),
      );
    });
    sessions.on("session-ended", (s: ProviderSession) => {
      this.#ledgers.delete(s.id);
      if (this.#o.settleOnSessionEnd) void this.#o.settler.settleChannel(channelIdOf(s.consumer, s.proposal.provider));
    });
    // Checked at least every second: the amount trigger and the unpaid limit must not wait a period.
    this.#timer = setInterval(() => void this.#tick(), Math.min(this.#o.invoiceEveryMs, 1000));
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** What the session owes so far, cumulatively. */
  due(s: ProviderSession): bigint {
    const usage = this.#o.usage(s.id) ?? { bytesIn: 0, bytesOut: 0 };
    const ms = BigInt(Math.max(0, (s.endedAt ?? Date.now()) - (s.confirmedAt ?? Date.now())));
    return priceOf(priceFromProposal(s.proposal), { ms, bytes: BigInt(usage.bytesIn + usage.bytesOut) });
  }

  async #tick(): Promise<void> {
    for (const s of this.#o.sessions.list()) {
      if (s.state !== "active") continue;
      const ledger = this.#ledgers.get(s.id);
      if (!ledger) continue;
      const due = this.due(s);
      if (due - ledger.paid > this.#o.maxUnpaid) {
        await this.#o.sessions.end(s.id, `payment lagging: ${due - ledger.paid} wei unpaid, limit ${this.#o.maxUnpaid}`);
        continue;
      }
      const periodOver = Date.now() - ledger.invoicedAt >= this.#o.invoiceEveryMs;
      if (due > ledger.invoiced && (periodOver || due - ledger.invoiced >= this.#o.invoiceAboveWei)) {
        ledger.invoiced = due;
        ledger.invoicedAt = Date.now();
        const usage = this.#o.usage(s.id) ?? { bytesIn: 0, bytesOut: 0 };
        try {
          s.dialog.notify(PAYMENT_INVOICE, { sessionId: s.id, amount: due.toString(), bytes: usage.bytesIn + usage.bytesOut, ms: Date.now() - (s.confirmedAt ?? Date.now()) });
        } catch (err) {
          this.#o.log.warn({ err: (err as Error).message, sessionId: s.id }, "could not send an invoice");
        }
      }
    }
  }

  async #onPromise(s: ProviderSession, body: unknown): Promise<{ accepted: true; amount: string }> {
    const b = body as { sessionId?: unknown; amount?: unknown; signature?: unknown };
    if (b?.sessionId !== s.id || typeof b.amount !== "string" || !/^\d{1,78}$/.test(b.amount) || typeof b.signature !== "string" || !/^0x[0-9a-fA-F]{130}$/.test(b.signature)) {
      throw new PromiseRejected("PROMISE_MALFORMED", "payment.promise needs {sessionId, amount (wei), signature (65 bytes hex)}");
    }
    const ledger = this.#ledgers.get(s.id);
    if (!ledger) throw new PromiseRejected("SESSION_ENDED", "the session is over");
    const amount = BigInt(b.amount);
    const channelId = channelIdOf(s.consumer, s.proposal.provider);
    const channel = await this.#o.channels.state(s.consumer, s.proposal.provider);
    const signature = Buffer.from(b.signature.slice(2), "hex");
    verifyPromise({ consumer: s.consumer, provider: s.proposal.provider, channelId, amount, signature }, this.#o.channels, { lastAmount: this.#o.store.latest(channelId)?.amount ?? 0n, channel });
    // Durable before acknowledged: the response below is the consumer's receipt.
    this.#o.store.save({ channelId, consumer: s.consumer, provider: s.proposal.provider, sessionId: s.id, amount, signature: b.signature, receivedAt: Date.now() });
    const increase = amount > ledger.paid ? amount - ledger.paid : 0n;
    if (amount > ledger.paid) ledger.paid = amount;
    this.emit("promise-accepted", { sessionId: s.id, amount, increase });
    if (amount - this.#o.store.settledAmount(channelId) >= this.#o.settleThreshold) void this.#o.settler.settleChannel(channelId);
    return { accepted: true, amount: amount.toString() };
  }
}
