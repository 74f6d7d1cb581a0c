import { EventEmitter } from "node:events";
import { peerCodeOf } from "../dialog/dialogs";
import type { ErrorCode } from "../errors/catalogue";
import { silentLogger, type Logger } from "../log/logger";
import type { ConsumerSession } from "../session/consumer-session";
import { priceFromProposal, priceOf } from "./price";
import type { ConsumerPromises, SignedPromise } from "./consumer-promises";
import { checkPayment, PAYMENT_INVOICE, PAYMENT_PROMISE } from "./messages";

/** The codes a provider may answer a promise with that the consumer shows as they are. */
export const PROVIDER_PAYMENT_CODES = [
  "STORE_FULL",
  "STORE_READ_ONLY",
  "STORE_FAILED",
  "PROMISE_WRONG_SIGNER",
  "PROMISE_NOT_INCREASING",
  "PROMISE_ABOVE_BALANCE",
  "PROMISE_MALFORMED",
  "SESSION_ENDED",
] as const satisfies readonly ErrorCode[];

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
 * The consumer's side of payments for one session. Invoices state the pair's cumulative amount
 * (earlier and concurrent sessions with this provider included); the consumer checks the increase
 * over its latest promise to that provider against its own meter of this session (time since
 * confirmation, bytes through its tunnel, within the tolerance), answers a fair one with a promise
 * for the new cumulative amount, and ends the session over an unfair one. An invoice it has already
 * covered is answered with its latest promise again (the provider may not have stored it), and so is
 * a disconnect the consumer starts while a promise is unacknowledged. Emits "promise-issued"
 * ({amount, increase}) when the provider acknowledges a promise, `increase` being what that adds
 * to this session's acknowledged amount.
 */
/** What ConsumerPayments tells its listeners. */
export interface ConsumerPaymentsEvents {
  "promise-issued": [{ amount: bigint; increase: bigint }];
}

export class ConsumerPayments extends EventEmitter<ConsumerPaymentsEvents> {
  /** What this session has added to the pair's promises (its own cost), counted when signed. */
  promised = 0n;
  /** The part of `promised` the provider has acknowledged (stored durably on its side). */
  acknowledged = 0n;
  invoices = 0;
  /**
   * Why the provider did not acknowledge the last promise, in its own code and words (its store is
   * full, read-only…), until it acknowledges one again. The code is the provider's, kept as data:
   * one of PROVIDER_PAYMENT_CODES, anything else reported as PEER_ERROR.
   */
  providerRefusal?: { code: (typeof PROVIDER_PAYMENT_CODES)[number] | "PEER_ERROR"; message: string };
  readonly #log: Logger;

  constructor(
    private readonly session: ConsumerSession,
    private readonly promises: ConsumerPromises,
    private readonly options: { tolerance?: InvoiceTolerance; log?: Logger; pay?: boolean } = {},
  ) {
    super();
    this.#log = options.log ?? silentLogger;
  }

  /** The most this session accepts to owe now, by its own meter. */
  ceiling(): bigint {
    const t = this.options.tolerance ?? DEFAULT_TOLERANCE;
    const price = priceFromProposal(this.session.proposal);
    const stats = this.session.tunnel.stats();
    const ms = BigInt(Math.max(0, Date.now() - this.session.timings.confirmed));
    const own = priceOf(price, { ms, bytes: BigInt(stats.bytesIn + stats.bytesOut) });
    const relative = (own * BigInt(Math.round(t.percent * 100))) / 10_000n;
    const absolute = priceOf(price, { ms: t.ms, bytes: t.bytes });
    // What the provider counted as it sent it and we have not received yet: not an overcharge.
    const inFlight = priceOf(price, { ms: 0n, bytes: BigInt(this.session.tunnel.inFlightBytes?.() ?? 0) });
    return own + (relative > absolute ? relative : absolute) + inFlight;
  }

  start(): void {
    // One invoice at a time, after the pair's figure is known.
    let queue = this.promises.load(this.session.provider);
    // A disconnect of the consumer's own: the provider gets what it has not acknowledged first.
    this.session.beforeDestroy(() => this.flush());
    this.session.dialog.on(PAYMENT_INVOICE, (body) => {
      queue = queue
        .then(() => this.#onInvoice(body))
        .catch((err) => this.#log.error({ err: (err as Error).message, sessionId: this.session.id }, "handling an invoice failed"));
    });
  }

  async #onInvoice(body: unknown): Promise<void> {
    if (!checkPayment.invoice.Check(body) || body.sessionId !== this.session.id) {
      this.#log.warn({ sessionId: this.session.id }, "an invoice that does not match the schema; ignored");
      return;
    }
    const b = body;
    if (this.session.state === "ended") return;
    this.invoices++;
    const amount = BigInt(b.amount);
    // Our meter must be as fresh as the provider's invoice, or a fast transfer looks like an overcharge.
    if (amount > (this.promises.latest(this.session.provider)?.amount ?? 0n)) await this.session.tunnel.refresh?.().catch(() => undefined);
    // From here to signing nothing awaits: another session's promise to this provider cannot slip in.
    const latest = this.promises.latest(this.session.provider);
    if (latest && amount <= latest.amount) {
      // Already covered (by this session or another): the provider may have missed that promise.
      if (this.options.pay !== false) await this.#send(latest, this.promised);
      return;
    }
    const increase = amount - (latest?.amount ?? 0n);
    const ceiling = this.ceiling();
    if (this.promised + increase > ceiling) {
      this.#log.warn(
        { sessionId: this.session.id, invoiced: amount.toString(), increase: increase.toString(), ceiling: ceiling.toString() },
        "invoice overcharges; ending the session",
      );
      await this.session.destroy(`invoice overcharges: ${this.promised + increase} wei for this session, at most ${ceiling} by our meter`);
      return;
    }
    if (this.options.pay === false) return;
    // Counted as soon as it is signed: a promise the provider may hold is spent, acknowledged or not.
    const promise = this.promises.sign(this.session.provider, amount);
    this.promised += increase;
    await this.#send(promise, this.promised);
  }

  /**
   * Sends the pair's latest promise again when the provider has not acknowledged all this session
   * promised (a request that timed out, a refusal): before a disconnect, so the provider holds
   * everything the consumer counts as spent. A no-op when all is acknowledged or the session does
   * not pay.
   */
  async flush(timeoutMs = 2000): Promise<void> {
    if (this.options.pay === false || this.acknowledged >= this.promised) return;
    const latest = this.promises.latest(this.session.provider);
    if (latest) await this.#send(latest, this.promised, timeoutMs);
  }

  /** Sends `promise`, which covers `covers` of this session's own promises (cumulative: every one signed before it). */
  async #send(promise: SignedPromise, covers: bigint, timeoutMs?: number): Promise<void> {
    try {
      const body = { sessionId: this.session.id, amount: promise.amount.toString(), signature: promise.signature };
      await this.session.dialog.request(PAYMENT_PROMISE, body, { timeoutMs });
      this.providerRefusal = undefined;
      if (covers > this.acknowledged) {
        const increase = covers - this.acknowledged;
        this.acknowledged = covers;
        this.emit("promise-issued", { amount: promise.amount, increase });
      }
    } catch (err) {
      const code = peerCodeOf(err);
      if (code !== undefined)
        this.providerRefusal = { code: PROVIDER_PAYMENT_CODES.find((ours) => ours === code) ?? "PEER_ERROR", message: (err as Error).message };
      this.#log.warn({ err: (err as Error).message, sessionId: this.session.id }, "the provider did not acknowledge a promise");
    }
  }
}
