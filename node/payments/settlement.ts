import { EventEmitter } from "node:events";
import type { Signer } from "ethers";
import type { ConsumerVaultClient, PairState, PromiseToSettle, Sent, SettlementReceipt } from "../chain/vault";
import { ChainError, revertName } from "../chain/errors";
import type { IdentityKey } from "../identity/key";
import { setTimeout as sleep } from "node:timers/promises";
import { AbortError, retry, retryDelayMs } from "../lifecycle/retry";
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
  pair: Pair;
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
  readonly #pending = new Map<string, Pair>();
  readonly #queue: Pair[] = [];
  readonly #mining = new Set<Promise<void>>();
  /** Ends every pair's retrying and waiting when the queue stops. */
  readonly #stop = new AbortController();
  #working?: Promise<void>;
  #nonce?: number;
  #relayNonce?: bigint;
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

  get #stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  /**
   * Queues every pair whose latest stored promise is above what was settled (start-up, shutdown,
   * the operator's `myst earnings settle`); pairs waiting for a retry or a top-up are tried now.
   */
  settleAll(): void {
    for (const p of this.unsettled()) this.settlePair(p.pairId, { now: true });
  }

  /** The most promises one settlement transaction carries: a round of n pairs takes ⌈n / maxBatch⌉ transactions. */
  get maxBatch(): number {
    return this.#o.maxBatch;
  }

  /** The pairs whose latest stored promise is above what was settled, with that difference. */
  unsettled(): { pairId: string; consumer: string; provider: string; amount: bigint; unsettled: bigint }[] {
    return this.store
      .latestPerPair()
      .map((p) => ({
        pairId: p.pairId,
        consumer: p.consumer,
        provider: p.provider,
        amount: p.amount,
        unsettled: p.amount - this.store.settledAmount(p.pairId),
      }))
      .filter((p) => p.unsettled > 0n);
  }

  /**
   * Settles the pair's latest promise. A pair already on its way keeps its place (its latest
   * promise is read when its turn comes); one waiting for a retry or a top-up keeps waiting unless `now`.
   */
  settlePair(pairId: string, options: { now?: boolean } = {}): void {
    if (this.#stopped) return;
    const latest = this.store.latest(pairId);
    if (!latest) return;
    const entry = this.#pending.get(pairId);
    if (entry && entry.state !== "rejected") {
      if (latest.amount > entry.amount) entry.amount = latest.amount;
      if (options.now) {
        if (entry.state === "retrying" || entry.state === "waiting-top-up") {
          // Busy from now on (drain() waits for it), not once the loop resumes.
          entry.state = "queued";
          entry.nextAttemptAt = undefined;
          entry.wake.abort();
        } else entry.woken = true; // an attempt is under way: if it ends waiting for a top-up, it goes again at once
      }
      return;
    }
    const pair: Pair = {
      pairId,
      consumer: latest.consumer,
      provider: latest.provider,
      amount: latest.amount,
      state: "queued",
      attempts: 0,
      wake: new AbortController(),
    };
    this.#pending.set(pairId, pair);
    this.#settle(pair).catch((err) => this.#log.error({ pairId, err: (err as Error).message }, "settling a pair failed unexpectedly"));
  }

  /** Settlements not done yet, rejected ones included (they stay until a new promise or a restart). */
  pending(): PendingSettlement[] {
    return [...this.#pending.values()].map(({ wake: _wake, turn: _turn, woken: _woken, ...p }) => ({ ...p }));
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
    this.#stop.abort();
    this.#queue.length = 0;
    // Attempts under way end too (what was sent may still be mined; the next start reads the chain).
    for (const pair of this.#pending.values()) fail(pair, new AbortError("the settlement queue stopped"));
  }

  /**
   * One pair's way to the chain. Each attempt joins the queue's next batch; a failure that may pass
   * (the chain did not answer, a nonce taken) is retried on the node's schedule through `retry`, a
   * revert never is. An empty vault waits for a top-up, a newer promise goes again at once, and
   * `settlePair(…, { now })` cuts a wait short.
   */
  async #settle(pair: Pair): Promise<void> {
    while (!this.#stopped && this.#pending.get(pair.pairId) === pair) {
      pair.wake = new AbortController();
      pair.woken = false;
      const signal = AbortSignal.any([this.#stop.signal, pair.wake.signal]);
      let outcome: Outcome;
      try {
        outcome = await retry(() => this.#inNextBatch(pair), {
          attempts: Number.POSITIVE_INFINITY,
          baseMs: this.#o.retryMs,
          maxMs: this.#o.maxRetryMs,
          signal,
          retryable: (err) => !isFinal(err),
          onFailure: (err, attempt, willRetry) => {
            if (!willRetry || signal.aborted) return;
            try {
              this.#failed(pair, err, retryDelayMs(attempt, { baseMs: this.#o.retryMs, maxMs: this.#o.maxRetryMs }));
            } catch (e) {
              // A listener or the store failing must not turn a retry into a rejection.
              this.#log.error({ pairId: pair.pairId, err: (e as Error).message }, "recording a failed settlement failed");
            }
          },
        });
      } catch (err) {
        if (signal.aborted) continue; // woken (`now`) goes again at once; stopped ends here
        return this.#rejected(pair, err);
      }
      if (outcome === "settled") {
        this.#pending.delete(pair.pairId);
        return;
      }
      if (outcome === "top-up") {
        pair.state = "waiting-top-up";
        pair.lastError = "the consumer's vault is empty; the promise stays stored until a top-up";
        pair.nextAttemptAt = Date.now() + this.#o.topUpRetryMs;
        this.#log.warn({ pairId: pair.pairId }, pair.lastError);
        // A deposit seen while the attempt ran (woken) goes again at once.
        if (!pair.woken) await sleep(this.#o.topUpRetryMs, undefined, { signal, ref: false }).catch(() => undefined);
      }
      // "again": a newer promise, or one the chain says is settled already: at once.
      pair.nextAttemptAt = undefined;
    }
  }

  /** One attempt: the pair joins the next batch; resolves with what became of it, or rejects with its failure. */
  #inNextBatch(pair: Pair): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      pair.turn = { resolve, reject };
      pair.state = "queued";
      pair.nextAttemptAt = undefined;
      this.#queue.push(pair);
      this.#kick();
    });
  }

  /** Runs the batch worker unless it runs; one that ends while pairs wait (they joined as it finished) is run again. */
  #kick(): void {
    this.#working ??= this.#work().finally(() => {
      this.#working = undefined;
      if (this.#queue.length && !this.#stopped) this.#kick();
    });
  }

  async #work(): Promise<void> {
    // Let the pairs queued in the same turn (settleAll, sessions ending together) join one batch.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.#queue.length && !this.#stopped) await this.#submit(this.#queue.splice(0, this.#o.maxBatch));
  }

  async #submit(pairs: Pair[]): Promise<void> {
    const stillIn = attemptsOf(pairs);
    for (const pair of pairs) {
      pair.amount = this.store.latest(pair.pairId)!.amount;
      pair.attempts++;
    }
    try {
      const states = await Promise.all(pairs.map((p) => this.vault.pair(p.consumer, p.provider)));
      if (this.#stopped) return;
      const batch: Batched[] = [];
      pairs.forEach((pair, i) => {
        const latest = this.store.latest(pair.pairId)!;
        const state = states[i];
        if (latest.amount <= state.settled) return settle(pair, this.#alreadySettled(pair, latest.amount));
        if (state.vault.balance === 0n && state.vault.escrow === 0n) return settle(pair, "top-up");
        batch.push({
          pair,
          promise: { consumer: latest.consumer, provider: latest.provider, amount: latest.amount, signature: latest.signature },
          payable: payableBy(state, latest.amount),
        });
      });
      if (batch.length === 0) return;
      await this.#send(batch);
    } catch (err) {
      this.#sendFailed(stillIn(), err);
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
      // Signed for our relayer's account only: a copy sent first by someone watching the mempool reverts.
      const signature = await this.vault.signRelayed(this.#o.relay.provider, this.#submitterAddress, promises, this.#o.relay.maxFeeWei, relayNonce);
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
      b.pair.state = "submitted";
      b.pair.txHash = sent.txHash;
      this.store.recordSettlement({
        pairId: b.pair.pairId,
        amount: b.promise.amount,
        txHash: sent.txHash,
        paid: null,
        fee: null,
        status: "pending",
        error: null,
      });
    }
    this.#log.info({ promises: batch.length, nonce, txHash: sent.txHash, relayed: this.relayed }, "settlement sent");
    const mined = attemptsOf(batch.map((b) => b.pair));
    const mining = sent
      .mined()
      .then((r) => this.#mined(batch, sent.txHash, r))
      .catch((err) => this.#sendFailed(mined(), err))
      .finally(() => this.#mining.delete(mining));
    this.#mining.add(mining);
  }

  #mined(batch: Batched[], txHash: string, r: SettlementReceipt): void {
    // After stop the store may be closed; the next start reads the chain and records what was mined.
    if (this.#stopped) return;
    const total = [...r.paid.values()].reduce((a, b) => a + b, 0n);
    let feeLeft = r.fee;
    batch.forEach((b, i) => {
      const { pair, promise } = b;
      const paid = r.paid.get(promise.consumer.toLowerCase()) ?? 0n;
      // The relayer's fee, shared by what each promise paid (the last takes the rounding).
      const fee = i === batch.length - 1 ? feeLeft : total === 0n ? 0n : (r.fee * paid) / total;
      feeLeft -= fee;
      const gasUsed = r.gasUsed / BigInt(batch.length);
      this.store.recordSettlement({ pairId: pair.pairId, amount: promise.amount, txHash, paid, fee, status: "mined", error: null });
      this.emit("settled", { pairId: pair.pairId, amount: promise.amount, paid, fee, gasUsed });
      this.#log.info({ pairId: pair.pairId, amount: promise.amount.toString(), paid: paid.toString(), fee: fee.toString() }, "settled");
      this.#o.onSettled?.({ consumer: pair.consumer, provider: pair.provider });
      // A promise that arrived while this one was mining is settled next.
      if ((this.store.latest(pair.pairId)?.amount ?? 0n) > promise.amount) {
        pair.attempts = 0;
        return settle(pair, "again");
      }
      settle(pair, "settled");
    });
  }

  /** Settled already (before a crash, or by someone on our behalf): make the record say so. */
  #alreadySettled(pair: Pair, amount: bigint): Outcome {
    if (this.store.settledAmount(pair.pairId) < amount) {
      this.store.recordSettlement({ pairId: pair.pairId, amount, txHash: pair.txHash ?? null, paid: null, fee: null, status: "mined", error: null });
    }
    return "settled";
  }

  /**
   * A batch could not be sent or was not mined. The account's nonces are read again (a sent
   * transaction may have been dropped, or another program used the account). A revert that says
   * the promise is settled already goes again at once (the state read records it), an empty vault
   * waits for a top-up; anything else is each pair's attempt failing.
   */
  #sendFailed(pairs: Pair[], err: unknown): void {
    this.#nonce = undefined;
    this.#relayNonce = undefined;
    const revert = revertName(err);
    for (const pair of pairs) {
      if (revert === "PromiseNotAboveSettled") settle(pair, "again");
      else if (revert === "VaultEmpty" || revert === "RelayFeeAboveAmount") settle(pair, "top-up");
      else fail(pair, err);
    }
  }

  /** An attempt failed for a reason that may pass: recorded, reported, and tried again after `retryInMs`. */
  #failed(pair: Pair, err: unknown, retryInMs: number): void {
    const error = err instanceof Error ? err.message : String(err);
    pair.state = "retrying";
    pair.lastError = error;
    pair.nextAttemptAt = Date.now() + retryInMs;
    this.store.recordSettlement({ pairId: pair.pairId, amount: pair.amount, txHash: pair.txHash ?? null, paid: null, fee: null, status: "failed", error });
    this.emit("settlement-failed", { pairId: pair.pairId, error, retryInMs });
    this.#log.warn({ pairId: pair.pairId, attempt: pair.attempts, retryInMs, err: error }, "settlement failed; retrying");
  }

  /** The chain refused it for good (a revert): recorded and reported, not retried; the pair stays listed until a new promise. */
  #rejected(pair: Pair, err: unknown): void {
    if (this.#stopped) return;
    const error = err instanceof Error ? err.message : String(err);
    pair.state = "rejected";
    pair.lastError = error;
    this.store.recordSettlement({ pairId: pair.pairId, amount: pair.amount, txHash: pair.txHash ?? null, paid: null, fee: null, status: "failed", error });
    this.emit("settlement-rejected", { pairId: pair.pairId, error });
    this.#log.error({ pairId: pair.pairId, err: error }, "settlement rejected by the chain; not retried");
  }
}

/** What became of a pair's attempt: settled (or found settled), to go again at once, or waiting for a top-up. */
type Outcome = "settled" | "again" | "top-up";

/** A pair on its way: its public state, what wakes it from a wait, and its attempt in the queue. */
interface Pair extends PendingSettlement {
  wake: AbortController;
  /** Asked to go now while an attempt was under way. */
  woken?: boolean;
  turn?: { resolve: (outcome: Outcome) => void; reject: (err: unknown) => void };
}

/** Ends a pair's attempt with `outcome`. */
function settle(pair: Pair, outcome: Outcome): void {
  const turn = pair.turn;
  pair.turn = undefined;
  turn?.resolve(outcome);
}

/**
 * The pairs' attempts as they are now; what it returns lists the pairs still in those attempts. A
 * batch that fails ends its own attempts, not a later one of a pair that left it meanwhile (found
 * settled, or gone to wait for a top-up and woken since).
 */
function attemptsOf(pairs: Pair[]): () => Pair[] {
  const turns = new Map(pairs.map((p) => [p, p.turn]));
  return () => pairs.filter((p) => p.turn !== undefined && p.turn === turns.get(p));
}

/** Ends a pair's attempt with a failure. */
function fail(pair: Pair, err: unknown): void {
  const turn = pair.turn;
  pair.turn = undefined;
  turn?.reject(err);
}

/** A failure no retry can mend: the chain reverted it (a nonce the relayer must read again is not one). */
function isFinal(err: unknown): boolean {
  return err instanceof ChainError && err.code === "TX_REVERTED" && revertName(err) !== "RelayNonceInvalid";
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
