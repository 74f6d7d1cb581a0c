import { EventEmitter } from "node:events";
import type { Signer } from "ethers";
import type { PaymentChannelsClient } from "../chain/channels";
import { ChainError, revertName } from "../chain/errors";
import { backoffMs } from "../lifecycle/backoff";
import { silentLogger, type Logger } from "../log/logger";
import type { PromiseStore } from "../store/promise-store";

/** Where a channel's settlement stands while it is not done. */
export type SettlementState =
  /** Waiting its turn in the queue. */
  | "queued"
  /** Sent; waiting to be mined. */
  | "submitted"
  /** Failed for a reason that may pass (the chain did not answer, no gas): tried again with backoff. */
  | "retrying"
  /** The channel is empty: tried again after a while (a top-up makes it payable). */
  | "waiting-top-up"
  /** The chain refused it for a reason that will not change (a revert): reported, not retried. */
  | "rejected";

export interface PendingSettlement {
  channelId: string;
  consumer: string;
  provider: string;
  amount: bigint;
  state: SettlementState;
  attempts: number;
  lastError?: string;
  nextAttemptAt?: number;
  txHash?: string;
}

export interface SettlerOptions {
  log?: Logger;
  /** First retry delay; doubles up to `maxRetryMs`. Default 1 s. */
  retryMs?: number;
  /** Longest retry delay. Default 60 s. */
  maxRetryMs?: number;
  /** How often to look again at an empty channel. Default 5 min. */
  topUpRetryMs?: number;
  /** Called after a channel settled (the provider's channel cache reads it again). */
  onSettled?: (p: { consumer: string; provider: string }) => void;
}

/**
 * Puts a provider's stored promises on chain from one account through one queue: the latest
 * promise of a channel, only when it is above what the chain says is settled (so no promise is
 * settled twice, even across restarts). Transactions are sent one at a time with nonces counted
 * here (mining is awaited beside the queue, so 50 channels do not wait for 50 blocks in a row);
 * a failure that may pass (the chain does not answer, the nonce moved, no gas) is retried with
 * backoff for as long as the node runs; a revert is reported and not retried. Emits "settled"
 * ({channelId, amount, paid, gasUsed}), "settlement-failed" ({channelId, error, retryInMs}) and
 * "settlement-rejected" ({channelId, error}).
 */
/** What a Settler tells its listeners (metrics, logs, tests). */
export interface SettlerEvents {
  settled: [{ channelId: string; amount: bigint; paid: bigint; gasUsed: bigint }];
  "settlement-failed": [{ channelId: string; error: string; retryInMs: number }];
  "settlement-rejected": [{ channelId: string; error: string }];
}

export class Settler extends EventEmitter<SettlerEvents> {
  readonly #log: Logger;
  readonly #o: Required<Omit<SettlerOptions, "log" | "onSettled">> & Pick<SettlerOptions, "onSettled">;
  readonly #pending = new Map<string, PendingSettlement>();
  readonly #queue: string[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #mining = new Set<Promise<void>>();
  #working?: Promise<void>;
  #nonce?: number;
  #stopped = false;
  #submitterAddress?: string;

  constructor(
    private readonly store: PromiseStore,
    private readonly channels: PaymentChannelsClient,
    private readonly submitter: Signer,
    options: SettlerOptions = {},
  ) {
    super();
    this.#log = options.log ?? silentLogger;
    this.#o = {
      retryMs: options.retryMs ?? 1000,
      maxRetryMs: options.maxRetryMs ?? 60_000,
      topUpRetryMs: options.topUpRetryMs ?? 300_000,
      onSettled: options.onSettled,
    };
  }

  /**
   * Queues every channel whose latest stored promise is above what was settled (start-up, shutdown,
   * the operator's `myst settle`); channels waiting for a retry or a top-up are tried now.
   */
  settleAll(): void {
    for (const p of this.store.latestPerChannel()) {
      if (p.amount > this.store.settledAmount(p.channelId)) this.settleChannel(p.channelId, { now: true });
    }
  }

  /**
   * Queues the channel's latest promise. A channel already in the queue keeps its place (its latest
   * promise is read when its turn comes); one waiting for a retry keeps waiting unless `now`.
   */
  settleChannel(channelId: string, options: { now?: boolean } = {}): void {
    if (this.#stopped) return;
    const latest = this.store.latest(channelId);
    if (!latest) return;
    const entry = this.#pending.get(channelId);
    if (entry && entry.state !== "rejected") {
      if (latest.amount > entry.amount) entry.amount = latest.amount;
      if (options.now && (entry.state === "retrying" || entry.state === "waiting-top-up")) {
        entry.state = "queued";
        entry.nextAttemptAt = undefined;
        this.#enqueue(channelId);
      }
      return;
    }
    this.#pending.set(channelId, { channelId, consumer: latest.consumer, provider: latest.provider, amount: latest.amount, state: "queued", attempts: 0 });
    this.#enqueue(channelId);
  }

  /** Settlements not done yet, rejected ones included (they stay until a new promise or a restart). */
  pending(): PendingSettlement[] {
    return [...this.#pending.values()].map((p) => ({ ...p }));
  }

  /**
   * Waits until nothing is queued, sent or retrying (empty and rejected channels do not count), or
   * until `timeoutMs` passed. True when everything was settled in time.
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

  /** Stops the queue: nothing new is sent. What is stored stays stored; the next start settles it. */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }

  #enqueue(channelId: string): void {
    if (!this.#queue.includes(channelId)) this.#queue.push(channelId);
    this.#working ??= this.#work().finally(() => {
      this.#working = undefined;
      if (this.#queue.length && !this.#stopped) this.#enqueue(this.#queue[0]);
    });
  }

  async #work(): Promise<void> {
    while (this.#queue.length && !this.#stopped) {
      const channelId = this.#queue.shift()!;
      const entry = this.#pending.get(channelId);
      if (!entry || entry.state === "rejected") continue;
      await this.#submit(entry);
    }
  }

  async #submit(entry: PendingSettlement): Promise<void> {
    const latest = this.store.latest(entry.channelId)!;
    entry.amount = latest.amount;
    entry.attempts++;
    try {
      const state = await this.channels.state(latest.consumer, latest.provider);
      if (this.#stopped) return;
      if (latest.amount <= state.settled) {
        // Settled already (before a crash, or by someone else on our behalf): make the record say so.
        if (this.store.settledAmount(entry.channelId) < latest.amount) {
          this.store.recordSettlement({
            channelId: entry.channelId,
            amount: latest.amount,
            txHash: entry.txHash ?? null,
            paid: null,
            status: "mined",
            error: null,
          });
        }
        return this.#done(entry);
      }
      if (state.balance === 0n) return this.#waitForTopUp(entry);
      this.#submitterAddress ??= await this.submitter.getAddress();
      const nonce = this.#nonce ?? (await this.channels.pendingNonce(this.#submitterAddress));
      const signature = Buffer.from(latest.signature.slice(2), "hex");
      if (this.#stopped) return;
      const sent = await this.channels.submitSettle(
        this.submitter,
        { consumer: latest.consumer, provider: latest.provider, amount: latest.amount, signature },
        nonce,
      );
      this.#nonce = nonce + 1;
      if (this.#stopped) return;
      entry.state = "submitted";
      entry.txHash = sent.txHash;
      this.#log.info({ channelId: entry.channelId, amount: latest.amount.toString(), nonce, txHash: sent.txHash }, "settlement sent");
      this.store.recordSettlement({ channelId: entry.channelId, amount: latest.amount, txHash: sent.txHash, paid: null, status: "pending", error: null });
      const mining = sent
        .mined()
        .then((r) => this.#mined(entry, latest.amount, sent.txHash, r))
        .catch((err) => this.#failed(entry, err))
        .finally(() => this.#mining.delete(mining));
      this.#mining.add(mining);
    } catch (err) {
      this.#failed(entry, err);
    }
  }

  #mined(entry: PendingSettlement, amount: bigint, txHash: string, r: { gasUsed: bigint; paid: bigint }): void {
    // After stop the store may be closed; the next start reads the chain and records what was mined.
    if (this.#stopped) return;
    this.store.recordSettlement({ channelId: entry.channelId, amount, txHash, paid: r.paid, status: "mined", error: null });
    this.emit("settled", { channelId: entry.channelId, amount, paid: r.paid, gasUsed: r.gasUsed });
    this.#log.info({ channelId: entry.channelId, amount: amount.toString(), paid: r.paid.toString(), gasUsed: r.gasUsed.toString() }, "settled");
    this.#o.onSettled?.({ consumer: entry.consumer, provider: entry.provider });
    // A promise that arrived while this one was mining is settled next.
    if ((this.store.latest(entry.channelId)?.amount ?? 0n) > amount) {
      entry.state = "queued";
      entry.attempts = 0;
      return this.#enqueue(entry.channelId);
    }
    this.#pending.delete(entry.channelId);
  }

  #done(entry: PendingSettlement): void {
    this.#pending.delete(entry.channelId);
  }

  #waitForTopUp(entry: PendingSettlement): void {
    entry.state = "waiting-top-up";
    entry.lastError = "the channel is empty; the promise stays stored until a top-up";
    this.#log.warn({ channelId: entry.channelId }, entry.lastError);
    this.#retryIn(entry, this.#o.topUpRetryMs);
  }

  #failed(entry: PendingSettlement, err: unknown): void {
    if (this.#stopped) return;
    const error = err instanceof Error ? err.message : String(err);
    const code = err instanceof ChainError ? err.code : undefined;
    const revert = revertName(err);
    entry.lastError = error;
    // The account's nonce is read again after anything went wrong: a sent transaction may have been
    // dropped, or another program used the account.
    this.#nonce = undefined;
    if (revert === "PromiseNotAboveSettled") {
      entry.state = "queued";
      return this.#enqueue(entry.channelId); // the state read records it as settled
    }
    if (revert === "ChannelInsufficientBalance") return this.#waitForTopUp(entry);
    if (code === "TX_REVERTED") {
      entry.state = "rejected";
      this.store.recordSettlement({ channelId: entry.channelId, amount: entry.amount, txHash: entry.txHash ?? null, paid: null, status: "failed", error });
      this.emit("settlement-rejected", { channelId: entry.channelId, error });
      this.#log.error({ channelId: entry.channelId, err: error }, "settlement rejected by the chain; not retried");
      return;
    }
    const delay = backoffMs(entry.attempts, { baseMs: this.#o.retryMs, maxMs: this.#o.maxRetryMs });
    entry.state = "retrying";
    this.store.recordSettlement({ channelId: entry.channelId, amount: entry.amount, txHash: entry.txHash ?? null, paid: null, status: "failed", error });
    this.emit("settlement-failed", { channelId: entry.channelId, error, retryInMs: delay });
    this.#log.warn({ channelId: entry.channelId, attempt: entry.attempts, retryInMs: delay, err: error }, "settlement failed; retrying");
    this.#retryIn(entry, delay);
  }

  #retryIn(entry: PendingSettlement, ms: number): void {
    if (this.#stopped) return;
    entry.nextAttemptAt = Date.now() + ms;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#pending.get(entry.channelId) !== entry) return;
      entry.state = "queued";
      entry.nextAttemptAt = undefined;
      this.#enqueue(entry.channelId);
    }, ms);
    timer.unref();
    this.#timers.add(timer);
  }
}
