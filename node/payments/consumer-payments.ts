import { EventEmitter } from "node:events";
import type { PaymentChannelsClient } from "../chain/channels";
import type { IdentityKey } from "../identity/key";
import { silentLogger, type Logger } from "../log/logger";
import type { ConsumerSession } from "../session/consumer";
import { priceFromProposal, priceOf } from "./price";
import { PAYMENT_INVOICE, PAYMENT_PROMISE } from "./messages";

export interface InvoiceTolerance {
  /** Relative slack over the consumer's own meter. Default 25%: the provider counts the link bytes
   *  it sends, and UDP lost on the way (measured up to 17% at full speed between namespaces) never
   *  reaches the consumer's meter. */
  percent: number;
  /** Absolute slack: this many bytes and this many ms at the session's price. Defaults 1 MiB, 10 s. */
  bytes: bigint;
  ms: bigint;
}

export const DEFAULT_TOLERANCE: InvoiceTolerance = { percent: 25, bytes: 1n << 20n, ms: 10_000n };

/**
 * The consumer's side of payments for one session: checks each invoice against its own meter
 * (time since confirmation, bytes through its tunnel) within the tolerance, answers a fair one
 * with a promise for the new cumulative amount, and ends the session over an unfair one. Emits
 * "promise-issued" ({amount, increase}) for each promise the provider acknowledged.
 */
export class ConsumerPayments extends EventEmitter {
  promised = 0n;
  invoices = 0;
  readonly #log: Logger;

  constructor(
    private readonly session: ConsumerSession,
    private readonly key: IdentityKey,
    private readonly channels: PaymentChannelsClient,
    private readonly options: { tolerance?: InvoiceTolerance; log?: Logger; pay?: boolean } = {},
  ) {
    super();
    this.#log = options.log ?? silentLogger;
  }

  /** The most this consumer accepts to owe now. */
  ceiling(): bigint {
    const t = this.options.tolerance ?? DEFAULT_TOLERANCE;
    const price = priceFromProposal(this.session.proposal);
    const stats = this.session.tunnel.stats();
    const ms = BigInt(Math.max(0, Date.now() - this.session.timings.confirmed));
    const own = priceOf(price, { ms, bytes: BigInt(stats.bytesIn + stats.bytesOut) });
    const relative = (own * BigInt(Math.round(t.percent * 100))) / 10_000n;
    const absolute = priceOf(price, { ms: t.ms, bytes: t.bytes });
    return own + (relative > absolute ? relative : absolute);
  }

  start(): void {
    this.session.dialog.on(PAYMENT_INVOICE, (body) => void this.#onInvoice(body));
  }

  async #onInvoice(body: unknown): Promise<void> {
    const b = body as { sessionId?: string; amount?: string };
    if (b?.sessionId !== this.session.id || typeof b.amount !== "string" || !/^\d{1,78}$/.test(b.amount)) return;
    this.invoices++;
    const amount = BigInt(b.amount);
    if (amount <= this.promised) return;
    // Our meter must be as fresh as the provider's invoice, or a fast transfer looks like an overcharge.
    await this.session.tunnel.refresh?.().catch(() => undefined);
    const ceiling = this.ceiling();
    if (amount > ceiling) {
      this.#log.warn({ sessionId: this.session.id, invoiced: amount.toString(), ceiling: ceiling.toString() }, "invoice overcharges; ending the session");
      await this.session.destroy(`invoice overcharges: ${amount} wei invoiced, at most ${ceiling} by our meter`);
      return;
    }
    if (this.options.pay === false) return;
    const signature = this.channels.signPromise(this.key, this.session.provider, amount);
    try {
      await this.session.dialog.request(PAYMENT_PROMISE, { sessionId: this.session.id, amount: amount.toString(), signature: "0x" + Buffer.from(signature).toString("hex") });
      const increase = amount - this.promised;
      this.promised = amount;
      this.emit("promise-issued", { amount, increase });
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, sessionId: this.session.id }, "the provider did not acknowledge a promise");
    }
  }
}
