import { EventEmitter } from "node:events";
import type { Signer } from "ethers";
import type { ConsumerVaultClient, PairState, PromiseToSettle, Sent, SettlementReceipt } from "../chain/vault";
import { ChainError, revertName } from "../chain/errors";
import type { IdentityKey } from "../identity/key";
import { retryDelayMs } from "../lifecycle/retry";
import { silentLogger, type Logger } from "../log/logger";
import type { PromiseStore } from "../store/promise-store";

/** Where a pair's settlement stands while it is not done. */
export type SettlementState =
  /** Waiting its turn in the queue. */
  | "queued"
  /** Sent; waiting to be mined. */
  | "submitted"
  /** Failed for a reason that may pass (the chain did not answer, no gas): tried again with backoff. */
  | "retrying"
  /** The consumer's vault is empty: tried again after a while (a top-up makes it payable). */
  | "waiting-top-up"
  /** The chain refused it for a reason that will not change (a revert): reported, not retried. */
  | "rejected";

export interface PendingSettlement {
  /** The pair's id (pairIdOf(consumer, provider)). */
  pairId: string;
  consumer: string;
  provider: string;
  amount: bigint;
  state: SettlementState;
  attempts: number;
  lastError?: string;
  nextAttemptAt?: number;
  txHash?: string;
}

/** Relayed settlement: the provider signs each batch, a relayer's account submits it and takes a fee out of it. */
export interface RelaySettings {
  /** The provider's identity, which signs "settle these, pay the relayer at most `maxFeeWei`". */
  provider: IdentityKey;
  /** The most the relayer may take per transaction (MYST wei); it takes that, or the whole amount when smaller. */
  maxFeeWei: bigint;
}

export interface SettlerOptions {
  log?: Logger;
  /** First retry delay; doubles up to `maxRetryMs`. Default 1 s. */
  retryMs?: number;
  /** Longest retry delay. Default 60 s. */
  maxRetryMs?: number;
  /** How often to look again at an empty vault. Default 5 min. */
  topUpRetryMs?: number;
  /** The most promises in one transaction (`settleBatch`). Default 20. */
  maxBatch?: number;
  /** Settle through a relayer (the submitter is then the relayer's account, the provider needs no ETH). */
  relay?: RelaySettings;
  /** Called after a pair settled (the provider's vault cache reads it again). */
  onSettled?: (p: { consumer: string; provider: string }) => void;
}

/** What a Settler tells its listeners (metrics, logs, tests). */
export interface SettlerEvents {
  settled: [{ pairId: string; amount: bigint; paid: bigint; fee: bigint; gasUsed: bigint }];
  "settlement-failed": [{ pairId: string; error: string; retryInMs: number }];
  "settlement-rejected": [{ pairId: string; error: string }];
}

interface Batched {
  entry: PendingSettlement;
  promise: PromiseToSettle;
  /** What the vault will pay for it, as the contract computes it (overdraft included). */
  payable: bigint;
}

/**
 * Puts a provider's stored promises on chain from one account through one queue: the latest
 * promise of a pair, only when it is above what the chain says the pair settled (so no promise is
 * settled twice, even across restarts). Queued pairs go out together, up to `maxBatch` in one
 * `settleBatch` transaction (one pair alone: `settle`), directly or through a relayer. Transactions
 * are sent one at a time with nonces counted here (mining is awaited beside the queue); a failure
 * that may pass is retried with backoff for as long as the node runs; a revert is reported and not
 * retried. Emits "settled", "settlement-failed" and "settlement-rejected", per pair.
 */
export class Settler extends EventEmitter<SettlerEvents> {
  readonly #log: Logger;
  readonly #o: Required<Omit<SettlerOptions, "log" | "onSettled" | "relay">> & Pick<SettlerOptions, "onSettled" | "relay">;
  readonly #pending = new Map<string, PendingSettlement>();
  readonly #queue: string[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #mining = new Set<Promise<void>>();
  #working?: Promise<void>;
  #nonce?: number;
  #relayNonce?: bigint;
  #stopped = false;
  #submitterAddress?: string;

  constructor(
    private readonly store: PromiseStore,
    private readonly vault: ConsumerVaultClient,
    /** Pays the gas: the provider's own account, or the relayer's when `relay` is set. */
    private readonly submitter: Signer,
    options: SettlerOptions = {},
  ) {
    super();
    this.#log = options.log ?? silentLogger;
    this.#o = {
      retryMs: options.retryMs ?? 1000,
      maxRetryMs: options.maxRetryMs ?? 60_000,
      topUpRetryMs: options.topUpRetryMs ?? 300_000,
      maxBatch: options.maxBatch ?? 20,
      relay: options.relay,
      onSettled: options.onSettled,
    };
  }

  /** Whether settlements go through a relayer. */
  get relayed(): boolean {
    return this.#o.relay !== undefined;
  }

  /**
   * Queues every pair whose latest stored promise is above what was settled (start-up, shutdown,
   * the operator's `myst earnings settle`); pairs waiting for a retry or a top-up are tried now.
   */
  settleAll(): void {
    for (const p of this.unsettled()) this.settlePair(p.pairId, { now: true });
  }

  /** The pairs whose latest stored promise is above what was settled, with that difference. */
  unsettled(): { pairId: string; consumer: string; amount: bigint; unsettled: bigint }[] {
    return this.store
      .latestPerPair()
      .map((p) => ({ pairId: p.pairId, consumer: p.consumer, amount: p.amount, unsettled: p.amount - this.store.settledAmount(p.pairId) }))
      .filter((p) => p.unsettled > 0n);
  }

  /**
   * Queues the pair's latest promise. A pair already in the queue keeps its place (its latest
   * promise is read when its turn comes); one waiting for a retry keeps waiting unless `now`.
   */
  settlePair(pairId: string, options: { now?: boolean } = {}): void {
    if (this.#stopped) return;
    const latest = this.store.latest(pairId);
    if (!latest) return;
    const entry = this.#pending.get(pairId);
    if (entry && entry.state !== "rejected") {
      if (latest.amount > entry.amount) entry.amount = latest.amount;
      if (options.now && (entry.state === "retrying" || entry.state === "waiting-top-up")) {
        entry.state = "queued";
        entry.nextAttemptAt = undefined;
        this.#enqueue(pairId);
      }
      return;
    }
    this.#pending.set(pairId, { pairId, consumer: latest.consumer, provider: latest.provider, amount: latest.amount, state: "queued", attempts: 0 });
    this.#enqueue(pairId);
  }

  /** Settlements not done yet, rejected ones included (they stay until a new promise or a restart). */
  pending(): PendingSettlement[] {
    return [...this.#pending.values()].map((p) => ({ ...p }));
  }

  /**
   * Waits until nothing is queued, sent or retrying (empty vaults and rejected pairs do not count),
   * or until `timeoutMs` passed. True when everything was settled in time.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const busy = [...this.#pending.values()].some((p) => p.state === "queued" || p.state === "submitted" || p.state === "retrying");
      if (!busy) return true;
      await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, deadline - Date.now()))));
    }
    return false;
  }

  /**
   * Pays the provider's earnings credited in the vault to its beneficiary (anyone may; the submitter
   * pays the gas). Call it when nothing is in flight (after `drain`): it takes the account's next nonce.
   */
  async payOut(provider: string): Promise<{ txHash: string; amount: bigint } | null> {
    if ((await this.vault.earnings(provider)) === 0n) return null;
    this.#nonce = undefined;
    const r = await this.vault.withdrawEarnings(this.submitter, provider);
    this.#log.info({ amount: r.amount.toString(), txHash: r.txHash }, "earnings paid out");
    return r;
  }

  /** Stops the queue: nothing new is sent. What is stored stays stored; the next start settles it. */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }

  #enqueue(pairId: string): void {
    if (!this.#queue.includes(pairId)) this.#queue.push(pairId);
    this.#working ??= this.#work().finally(() => {
      this.#working = undefined;
      if (this.#queue.length && !this.#stopped) this.#enqueue(this.#queue[0]);
    });
  }

  async #work(): Promise<void> {
    // Let the pairs queued in the same turn (settleAll, sessions ending together) join one batch.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.#queue.length && !this.#stopped) {
      const entries = this.#queue
        .splice(0, this.#o.maxBatch)
        .map((id) => this.#pending.get(id))
        .filter((e): e is PendingSettlement => e !== undefined && e.state !== "rejected");
      if (entries.length) await this.#submit(entries);
    }
  }

  async #submit(entries: PendingSettlement[]): Promise<void> {
    for (const entry of entries) {
      entry.amount = this.store.latest(entry.pairId)!.amount;
      entry.attempts++;
    }
    try {
      const states = await Promise.all(entries.map((e) => this.vault.pair(e.consumer, e.provider)));
      if (this.#stopped) return;
      const batch: Batched[] = [];
      entries.forEach((entry, i) => {
        const latest = this.store.latest(entry.pairId)!;
        const state = states[i];
        if (latest.amount <= state.settled) return this.#alreadySettled(entry, latest.amount);
        if (state.vault.balance === 0n && state.vault.escrow === 0n) return this.#waitForTopUp(entry);
        batch.push({
          entry,
          promise: { consumer: latest.consumer, provider: latest.provider, amount: latest.amount, signature: latest.signature },
          payable: payableBy(state, latest.amount),
        });
      });
      if (batch.length === 0) return;
      await this.#send(batch);
    } catch (err) {
      for (const entry of entries) this.#failed(entry, err);
    }
  }

  async #send(batch: Batched[]): Promise<void> {
    this.#submitterAddress ??= await this.submitter.getAddress();
    const nonce = this.#nonce ?? (await this.vault.pendingNonce(this.#submitterAddress));
    const provider = batch[0].promise.provider;
    const promises = batch.map((b) => b.promise);
    let sent: Sent<SettlementReceipt>;
    if (this.#o.relay) {
      const relayNonce = this.#relayNonce ?? (await this.vault.relayNonce(provider));
      const payable = batch.reduce((sum, b) => sum + b.payable, 0n);
      // The relayer takes its cap, or the whole amount when that is less (the contract refuses a fee above the amount).
      let fee = this.#o.relay.maxFeeWei;
      if (payable < fee) fee = payable;
      const signature = await this.vault.signRelayed(this.#o.relay.provider, promises, this.#o.relay.maxFeeWei, relayNonce);
      if (this.#stopped) return;
      sent = await this.vault.submitRelayed(this.submitter, { provider, promises, maxFee: this.#o.relay.maxFeeWei, fee, nonce: relayNonce, signature }, nonce);
      this.#relayNonce = relayNonce + 1n;
    } else {
      if (this.#stopped) return;
      sent = await this.vault.submitSettle(this.submitter, provider, promises, nonce);
    }
    this.#nonce = nonce + 1;
    if (this.#stopped) return;
    for (const b of batch) {
      b.entry.state = "submitted";
      b.entry.txHash = sent.txHash;
      this.store.recordSettlement({
        pairId: b.entry.pairId,
        amount: b.promise.amount,
        txHash: sent.txHash,
        paid: null,
        fee: null,
        status: "pending",
        error: null,
      });
    }
    this.#log.info({ promises: batch.length, nonce, txHash: sent.txHash, relayed: this.relayed }, "settlement sent");
    const mining = sent
      .mined()
      .then((r) => this.#mined(batch, sent.txHash, r))
      .catch((err) => {
        for (const b of batch) this.#failed(b.entry, err);
      })
      .finally(() => this.#mining.delete(mining));
    this.#mining.add(mining);
  }

  #mined(batch: Batched[], txHash: string, r: SettlementReceipt): void {
    // After stop the store may be closed; the next start reads the chain and records what was mined.
    if (this.#stopped) return;
    const total = [...r.paid.values()].reduce((a, b) => a + b, 0n);
    let feeLeft = r.fee;
    batch.forEach((b, i) => {
      const { entry, promise } = b;
      const paid = r.paid.get(promise.consumer.toLowerCase()) ?? 0n;
      // The relayer's fee, shared by what each promise paid (the last takes the rounding).
      const fee = i === batch.length - 1 ? feeLeft : total === 0n ? 0n : (r.fee * paid) / total;
      feeLeft -= fee;
      const gasUsed = r.gasUsed / BigInt(batch.length);
      this.store.recordSettlement({ pairId: entry.pairId, amount: promise.amount, txHash, paid, fee, status: "mined", error: null });
      this.emit("settled", { pairId: entry.pairId, amount: promise.amount, paid, fee, gasUsed });
      this.#log.info({ pairId: entry.pairId, amount: promise.amount.toString(), paid: paid.toString(), fee: fee.toString() }, "settled");
      this.#o.onSettled?.({ consumer: entry.consumer, provider: entry.provider });
      // A promise that arrived while this one was mining is settled next.
      if ((this.store.latest(entry.pairId)?.amount ?? 0n) > promise.amount) {
        entry.state = "queued";
        entry.attempts = 0;
        return this.#enqueue(entry.pairId);
      }
      this.#pending.delete(entry.pairId);
    });
  }

  /** Settled already (before a crash, or by someone on our behalf): make the record say so. */
  #alreadySettled(entry: PendingSettlement, amount: bigint): void {
    if (this.store.settledAmount(entry.pairId) < amount) {
      this.store.recordSettlement({ pairId: entry.pairId, amount, txHash: entry.txHash ?? null, paid: null, fee: null, status: "mined", error: null });
    }
    this.#pending.delete(entry.pairId);
  }

  #waitForTopUp(entry: PendingSettlement): void {
    entry.state = "waiting-top-up";
    entry.lastError = "the consumer's vault is empty; the promise stays stored until a top-up";
    this.#log.warn({ pairId: entry.pairId }, entry.lastError);
    this.#retryIn(entry, this.#o.topUpRetryMs);
  }

  #failed(entry: PendingSettlement, err: unknown): void {
    if (this.#stopped) return;
    const error = err instanceof Error ? err.message : String(err);
    const code = err instanceof ChainError ? err.code : undefined;
    const revert = revertName(err);
    entry.lastError = error;
    // The account's nonces are read again after anything went wrong: a sent transaction may have
    // been dropped, or another program used the account.
    this.#nonce = undefined;
    this.#relayNonce = undefined;
    if (revert === "PromiseNotAboveSettled") {
      entry.state = "queued";
      return this.#enqueue(entry.pairId); // the state read records it as settled
    }
    if (revert === "VaultEmpty" || revert === "RelayFeeAboveAmount") return this.#waitForTopUp(entry);
    if (code === "TX_REVERTED" && revert !== "RelayNonceInvalid") {
      entry.state = "rejected";
      this.store.recordSettlement({
        pairId: entry.pairId,
        amount: entry.amount,
        txHash: entry.txHash ?? null,
        paid: null,
        fee: null,
        status: "failed",
        error,
      });
      this.emit("settlement-rejected", { pairId: entry.pairId, error });
      this.#log.error({ pairId: entry.pairId, err: error }, "settlement rejected by the chain; not retried");
      return;
    }
    const delay = retryDelayMs(entry.attempts, { baseMs: this.#o.retryMs, maxMs: this.#o.maxRetryMs });
    entry.state = "retrying";
    this.store.recordSettlement({
      pairId: entry.pairId,
      amount: entry.amount,
      txHash: entry.txHash ?? null,
      paid: null,
      fee: null,
      status: "failed",
      error,
    });
    this.emit("settlement-failed", { pairId: entry.pairId, error, retryInMs: delay });
    this.#log.warn({ pairId: entry.pairId, attempt: entry.attempts, retryInMs: delay, err: error }, "settlement failed; retrying");
    this.#retryIn(entry, delay);
  }

  #retryIn(entry: PendingSettlement, ms: number): void {
    if (this.#stopped) return;
    entry.nextAttemptAt = Date.now() + ms;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#pending.get(entry.pairId) !== entry) return;
      entry.state = "queued";
      entry.nextAttemptAt = undefined;
      this.#enqueue(entry.pairId);
    }, ms);
    timer.unref();
    this.#timers.add(timer);
  }
}

/** What the vault pays for a promise of cumulative `amount`, as the contract computes it (overdraft: up to half the escrow). */
export function payableBy(state: PairState, amount: bigint): bigint {
  const owed = amount - state.settled;
  if (owed <= 0n) return 0n;
  if (owed <= state.vault.balance) return owed;
  const fromEscrow = owed - state.vault.balance;
  const cap = state.vault.escrow / 2n;
  return state.vault.balance + (fromEscrow < cap ? fromEscrow : cap);
}
