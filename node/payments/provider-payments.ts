import { isMystError } from "../errors/MystError";
import { PAYMENT_POLICY_DEFAULTS, type PaymentPolicy } from "../config/payment-policy";
import { EventEmitter } from "node:events";
import { pairIdOf, type PairState } from "../chain/vault";
import { silentLogger, type Logger } from "../log/logger";
import type { PromiseStore } from "../store/promise-store";
import type { Admission, ProviderSession, ProviderSessions } from "../session/provider";
import { priceFromProposal, priceOf } from "./price";
import { PromiseRejected, verifyPromise } from "./promise";
import { pairsWorthSettling } from "./fee-rule";
import type { Settler } from "./settlement";
import type { VaultStateCache } from "./vault-cache";
import { checkPayment, PAYMENT_INVOICE, PAYMENT_PROMISE } from "./messages";

/** What a service measured of a session: bytes each way, and how long the service was down under it. */
export interface SessionUsage {
  bytesIn: number;
  bytesOut: number;
  /** Time the session could not be served (its server restarting): not billed. */
  downMs?: number;
}

/**
 * The rules of the provider's payment policy this part applies (config/payment-policy.ts defines
 * them once); invoicing every 10 s, never early, free settlements and settling on session end are
 * what a bare ProviderPayments does when it is given none.
 */
export type PaymentRules = Omit<
  PaymentPolicy,
  "maxSessions" | "relayerKey" | "invoiceEveryMs" | "invoiceAboveWei" | "settlementFeeWei" | "settleOnSessionEnd"
> &
  Partial<Pick<PaymentPolicy, "invoiceEveryMs" | "invoiceAboveWei" | "settlementFeeWei" | "settleOnSessionEnd">>;

export interface ProviderPaymentsOptions extends PaymentRules {
  sessions: ProviderSessions;
  vaults: VaultStateCache;
  store: PromiseStore;
  settler: Settler;
  /** Bytes a session has moved so far, from the service's meter. */
  usage: (sessionId: string) => SessionUsage | undefined;
  /** Whether the broker connection is up: while it is down, no invoice can arrive and no cut-off is fair. */
  brokerUp?: () => boolean;
  log?: Logger;
}

/** One session's account: what its promises added to the pair's ledger, and its last invoice. */
interface Ledger {
  /** The pair's cumulative amount last invoiced. */
  invoiced: bigint;
  invoicedAt: number;
  /** What this session owed (its own amount) when it was last invoiced: a cut-off counts only what it was asked for. */
  asked: bigint;
  /** What this session's promises added to the pair's cumulative amount. */
  paid: bigint;
}

/**
 * The provider's side of payments. The ledger is per (consumer, provider) pair and cumulative
 * across sessions: each session owes its own time and bytes at the proposal's price, and its
 * invoice states the pair's cumulative amount that pays that in full (the latest stored promise
 * plus what this session has not paid yet), so a second or a concurrent session continues from the
 * pair's figure instead of from zero. Every pair is paid from the consumer's one vault. Each promise
 * is checked against cached vault state (no chain round trip), stored durably before it is
 * acknowledged, and credited to its session by how much it adds to the pair.
 *
 * Risk: a consumer is admitted only with a vault that is not in exit and holds at least the
 * minimum balance and escrow; what it owes beyond the settled figure (its exposure) is kept under
 * a limit derived from its escrow: the pair is settled at half the limit whatever the fee, and a
 * session is ended when the limit is passed or its own unpaid amount passes `maxUnpaid`, or when
 * the vault starts its exit. Otherwise settlement waits for a good fee ratio (docs/payments.md).
 * Emits "promise-accepted" ({sessionId, amount, increase}) and "promise-rejected" ({sessionId, code}).
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
  /** A promise arrived since the fee rule last ran: it runs on the next tick (it reads every pair). */
  #policyDue = false;
  /** The consumers (lower-case) this provider holds promises of: a vault event of anyone else costs no store read. */
  readonly #payers = new Set<string>();

  constructor(options: ProviderPaymentsOptions) {
    super();
    this.#o = {
      ...options,
      invoiceEveryMs: options.invoiceEveryMs ?? Number(PAYMENT_POLICY_DEFAULTS.invoiceEvery) * 1000,
      invoiceAboveWei: options.invoiceAboveWei ?? 2n ** 255n,
      settlementFeeWei: options.settlementFeeWei ?? 0n,
      settleOnSessionEnd: options.settleOnSessionEnd ?? true,
      log: options.log ?? silentLogger,
    };
  }

  /** The admission check to give ProviderSessions: a live read (the consumer may just have deposited). */
  readonly admission: Admission = async ({ consumer, proposal }) => {
    const pair = await this.#o.vaults.read(consumer, proposal.provider);
    const refuse = (message: string) => ({ code: "PAYMENT_NOT_COVERED" as const, message });
    if (pair.vault.exitReadyAt !== 0n) return refuse("the consumer's vault is leaving (exit requested); this provider serves no vault in exit");
    if (pair.vault.balance < this.#o.minVaultBalance) {
      return refuse(`the vault holds ${pair.vault.balance} wei; this provider needs at least ${this.#o.minVaultBalance}`);
    }
    if (pair.vault.escrow < this.#o.minEscrow)
      return refuse(`the vault's escrow is ${pair.vault.escrow} wei; this provider needs at least ${this.#o.minEscrow}`);
    const unsettled = this.#unsettled(consumer, proposal.provider, pair);
    if (unsettled > 0n && unsettled >= this.exposureLimit(pair)) {
      this.#settleNow(consumer, proposal.provider);
      return refuse(`${unsettled} wei of earlier promises are not settled yet (limit ${this.exposureLimit(pair)}); try again once they are`);
    }
    return null;
  };

  /**
   * The most one consumer may owe this provider beyond what is settled, for its vault as it stands:
   * its escrow's share, never below `maxUnpaid` (the credit any session gets before it must pay),
   * never above `maxExposure`.
   */
  exposureLimit(pair: PairState): bigint {
    let limit = (pair.vault.escrow * BigInt(Math.round(this.#o.exposurePercentOfEscrow * 100))) / 10_000n;
    if (limit < this.#o.maxUnpaid) limit = this.#o.maxUnpaid;
    if (limit > this.#o.maxExposure) limit = this.#o.maxExposure;
    return limit;
  }

  /** Promised by the consumer and stored, but not settled on chain yet. */
  #unsettled(consumer: string, provider: string, pair?: PairState): bigint {
    const pairId = pairIdOf(consumer, provider);
    const latest = this.#o.store.latest(pairId)?.amount ?? 0n;
    const settledOnChain = pair?.settled ?? 0n;
    const settledHere = this.#o.store.settledAmount(pairId);
    const settled = settledOnChain > settledHere ? settledOnChain : settledHere;
    return latest > settled ? latest - settled : 0n;
  }

  #settleNow(consumer: string, provider: string): void {
    if (this.#o.store.latest(pairIdOf(consumer, provider))) this.#o.settler.settlePair(pairIdOf(consumer, provider), { now: true });
  }

  /**
   * The fee-aware rule (fee-rule.ts): a pair that reached `settleThreshold` or whose consumer's vault
   * is leaving goes whatever the fee; the others go in transactions whose own fee is at most
   * `settleFeePercent` of what each carries (counted per transaction of up to the settler's batch,
   * not per round). Pairs already on their way to the chain are left where they are.
   */
  settleByPolicy(): void {
    const onTheirWay = new Set(
      this.#o.settler
        .pending()
        .filter((p) => p.state !== "rejected")
        .map((p) => p.pairId),
    );
    const candidates = this.#o.settler
      .unsettled()
      .filter((p) => !onTheirWay.has(p.pairId))
      .map((p) => ({
        pairId: p.pairId,
        unsettled: p.unsettled,
        mustGo: p.unsettled >= this.#o.settleThreshold || this.#leaving(p.consumer, p.provider),
      }));
    if (candidates.length === 0) return;
    const rule = { feeWei: this.#o.settlementFeeWei, feePercent: this.#o.settleFeePercent, maxBatch: this.#o.settler.maxBatch };
    // In this order, in one turn: the settler's batches are then the transactions the rule counted.
    for (const pairId of pairsWorthSettling(candidates, rule)) this.#o.settler.settlePair(pairId);
  }

  /** Whether the consumer's vault is in exit, as last read (no chain call). */
  #leaving(consumer: string, provider: string): boolean {
    const exitReadyAt = this.#o.vaults.peek(consumer, provider)?.vault.exitReadyAt;
    return exitReadyAt !== undefined && exitReadyAt !== 0n;
  }

  /**
   * Exit is watched: a consumer whose vault started its exit can withdraw everything once the
   * challenge period passes, and a promise settled after that pays nothing. So every pair this
   * provider holds with that consumer is settled at once, whatever the fee rule or the threshold say.
   * Called for each vault the contract's events name, and at start for every pair with unsettled
   * promises (an exit that began while the node was down). When the vault cannot be read, the
   * pair is settled anyway: a fee is cheaper than a lost promise.
   */
  async settleIfLeaving(consumer: string): Promise<void> {
    if (!this.#payers.has(consumer.toLowerCase())) return;
    const pairs = this.#o.settler.unsettled().filter((p) => p.consumer.toLowerCase() === consumer.toLowerCase());
    for (const p of pairs) {
      let exitReadyAt: bigint | undefined;
      try {
        exitReadyAt = (await this.#o.vaults.read(p.consumer, p.provider)).vault.exitReadyAt;
      } catch (err) {
        this.#o.log.warn({ consumer: p.consumer, err: (err as Error).message }, "could not read a vault to see whether it is leaving; settling its pair now");
      }
      if (exitReadyAt === 0n) continue;
      this.#o.log.warn(
        { consumer: p.consumer, pairId: p.pairId, unsettled: p.unsettled.toString(), exitReadyAt: exitReadyAt?.toString() },
        "the consumer's vault is leaving: settling its pair now, whatever the fee rule says",
      );
      this.#o.settler.settlePair(p.pairId, { now: true });
    }
  }

  /** The start-up check: pairs whose consumer requested its exit while this node was not running. */
  async #settleLeavingAtStart(): Promise<void> {
    const consumers = new Set(this.#o.settler.unsettled().map((p) => p.consumer.toLowerCase()));
    for (const consumer of consumers) this.#payers.add(consumer);
    for (const consumer of consumers) await this.settleIfLeaving(consumer);
  }

  start(): void {
    const { sessions } = this.#o;
    sessions.on("session-accepted", (s: ProviderSession) => {
      this.#ledgers.set(s.id, { invoiced: 0n, invoicedAt: Date.now(), asked: 0n, paid: 0n });
      s.dialog.handle(PAYMENT_PROMISE, (body) =>
        this.#onPromise(s, body).catch((err) => {
          // The consumer is told the code (STORE_FULL…); the operator's health names the file and the cause.
          if (isMystError(err, "STORE_FULL", "STORE_READ_ONLY", "STORE_FAILED"))
            this.#o.log.error({ sessionId: s.id, code: err.code, err: err.message }, "a promise could not be stored: see the node's health (store)");
          this.emit("promise-rejected", { sessionId: s.id, code: (err as { code?: string }).code ?? "INTERNAL" });
          throw err;
        }),
      );
    });
    sessions.on("session-ended", (s: ProviderSession) => {
      this.#ledgers.delete(s.id);
      // Forced on request; otherwise the fee rule decides (a short session is not worth its own fee).
      if (this.#o.settleOnSessionEnd) this.#settleNow(s.consumer, s.proposal.provider);
      else this.settleByPolicy();
    });
    // Checked at least every second: the amount trigger and the unpaid limit must not wait a period.
    this.#timer = setInterval(() => void this.#tick(), Math.min(this.#o.invoiceEveryMs, 1000));
    this.#timer.unref();
    this.#o.vaults.on("vault-changed", this.#onVaultChanged);
    void this.#settleLeavingAtStart().catch((err) => this.#o.log.error({ err: (err as Error).message }, "checking for vaults in exit at start failed"));
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#o.vaults.off("vault-changed", this.#onVaultChanged);
  }

  readonly #onVaultChanged = (consumer: string): void => {
    this.settleIfLeaving(consumer).catch((err) => this.#o.log.error({ consumer, err: (err as Error).message }, "watching a vault's exit failed"));
  };

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
    if (this.#policyDue) {
      this.#policyDue = false;
      this.settleByPolicy();
    }
    const brokerDown = this.#o.brokerUp !== undefined && !this.#o.brokerUp();
    if (brokerDown) this.#brokerDownAt = Date.now();
    const grace = Math.max(2 * this.#o.invoiceEveryMs, 10_000);
    const enforce = Date.now() - this.#brokerDownAt > grace;
    for (const s of this.#o.sessions.list()) {
      if (s.state !== "active") continue;
      // While the broker is down only a session with a direct channel can be invoiced and pay.
      if (brokerDown && !s.dialog.direct) continue;
      const ledger = this.#ledgers.get(s.id);
      if (!ledger) continue;
      const due = this.due(s);
      const unpaid = due - ledger.paid;
      // Lagging is not paying what was asked: a burst of usage between two checks is invoiced first
      // (at once, below), and the session ends only if the next check still finds more than the
      // limit of what the invoice asked for unpaid.
      const overLimit = unpaid > this.#o.maxUnpaid;
      if (enforce && overLimit && ledger.asked - ledger.paid > this.#o.maxUnpaid) {
        await this.#o.sessions.end(s.id, `payment lagging: ${unpaid} wei unpaid, limit ${this.#o.maxUnpaid}`);
        continue;
      }
      const pair = this.#o.vaults.peek(s.consumer, s.proposal.provider);
      if (pair && pair.vault.exitReadyAt !== 0n) {
        this.#settleNow(s.consumer, s.proposal.provider);
        await this.#o.sessions.end(s.id, "the consumer's vault started its exit");
        continue;
      }
      if (pair) {
        const exposure = this.#unsettled(s.consumer, s.proposal.provider, pair) + (unpaid > 0n ? unpaid : 0n);
        const limit = this.exposureLimit(pair);
        if (enforce && exposure > limit) {
          this.#settleNow(s.consumer, s.proposal.provider);
          await this.#o.sessions.end(s.id, `exposure to this consumer: ${exposure} wei unsettled or unpaid, limit ${limit}`);
          continue;
        }
      }
      if (unpaid <= 0n) continue;
      const amount = (this.#o.store.latest(pairIdOf(s.consumer, s.proposal.provider))?.amount ?? 0n) + unpaid;
      const periodOver = Date.now() - ledger.invoicedAt >= this.#o.invoiceEveryMs;
      if (amount > ledger.invoiced && (periodOver || overLimit || amount - ledger.invoiced >= this.#o.invoiceAboveWei)) {
        ledger.invoiced = amount;
        ledger.invoicedAt = Date.now();
        ledger.asked = due;
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
    const pairId = pairIdOf(s.consumer, s.proposal.provider);
    const pair = await this.#o.vaults.get(s.consumer, s.proposal.provider);
    // From here to the store nothing awaits: two promises to one provider cannot both count one increase.
    const ledger = this.#ledgers.get(s.id);
    if (!ledger) throw new PromiseRejected("SESSION_ENDED", "the session is over");
    const last = this.#o.store.latest(pairId)?.amount ?? 0n;
    const signature = Buffer.from(b.signature.slice(2), "hex");
    verifyPromise({ consumer: s.consumer, provider: s.proposal.provider, amount, signature }, this.#o.vaults.vault, { lastAmount: last, pair });
    const increase = amount - last;
    // Durable before acknowledged: the response below is the consumer's receipt.
    if (increase > 0n)
      this.#o.store.save({
        pairId,
        consumer: s.consumer,
        provider: s.proposal.provider,
        sessionId: s.id,
        amount,
        increase,
        signature: b.signature,
        receivedAt: Date.now(),
      });
    ledger.paid += increase;
    this.#payers.add(s.consumer.toLowerCase());
    this.emit("promise-accepted", { sessionId: s.id, amount, increase });
    // Risk first: half the exposure limit settles the pair whatever the fee; otherwise the fee rule decides.
    if (this.#unsettled(s.consumer, s.proposal.provider, pair) * 2n >= this.exposureLimit(pair)) this.#settleNow(s.consumer, s.proposal.provider);
    else this.#policyDue = true;
    return { accepted: true, amount: amount.toString() };
  }
}
