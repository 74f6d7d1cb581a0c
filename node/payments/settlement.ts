import { EventEmitter } from "node:events";
import type { Signer } from "ethers";
import type { PaymentChannelsClient } from "../chain/channels";
import { silentLogger, type Logger } from "../log/logger";
import type { PromiseStore } from "../store/promise-store";

/**
 * Puts a provider's stored promises on chain: the latest promise of a channel, only when it is
 * above what the chain says is settled (so no promise is settled twice, even across restarts),
 * one settlement per channel at a time, retried with backoff when the chain fails. Emits
 * "settled" ({channelId, amount, paid, gasUsed}) and "settlement-failed" ({channelId, error}).
 */
export class Settler extends EventEmitter {
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #log: Logger;

  constructor(
    private readonly store: PromiseStore,
    private readonly channels: PaymentChannelsClient,
    private readonly submitter: Signer,
    options: { log?: Logger; retries?: number; retryMs?: number } = {},
  ) {
    super();
    this.#log = options.log ?? silentLogger;
    this.retries = options.retries ?? 3;
    this.retryMs = options.retryMs ?? 1000;
  }

  private readonly retries: number;
  private readonly retryMs: number;

  /** Settles every channel whose latest stored promise is not settled yet (start-up, shutdown). */
  async settleAll(): Promise<void> {
    for (const p of this.store.latestPerChannel()) await this.settleChannel(p.channelId);
  }

  settleChannel(channelId: string): Promise<void> {
    let run = this.#inFlight.get(channelId);
    if (!run) {
      run = this.#settle(channelId).finally(() => this.#inFlight.delete(channelId));
      this.#inFlight.set(channelId, run);
    }
    return run;
  }

  async #settle(channelId: string): Promise<void> {
    const latest = this.store.latest(channelId);
    if (!latest) return;
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      try {
        const state = await this.channels.state(latest.consumer, latest.provider);
        if (latest.amount <= state.settled) return;
        if (state.balance === 0n) {
          this.#log.warn({ channelId }, "channel empty; the promise stays stored until a top-up");
          return;
        }
        const signature = Buffer.from(latest.signature.slice(2), "hex");
        const result = await this.channels.settle(this.submitter, latest.consumer, latest.provider, latest.amount, signature);
        this.store.recordSettlement({ channelId, amount: latest.amount, txHash: result.txHash, paid: result.paid, status: "mined", error: null });
        this.emit("settled", { channelId, amount: latest.amount, paid: result.paid, gasUsed: result.gasUsed });
        this.#log.info({ channelId, amount: latest.amount.toString(), paid: result.paid.toString(), gasUsed: result.gasUsed.toString() }, "settled");
        return;
      } catch (err) {
        this.store.recordSettlement({ channelId, amount: latest.amount, txHash: null, paid: null, status: "failed", error: (err as Error).message });
        this.emit("settlement-failed", { channelId, error: (err as Error).message });
        this.#log.warn({ channelId, attempt, err: (err as Error).message }, "settlement failed");
        if (attempt < this.retries) await new Promise((r) => setTimeout(r, this.retryMs * 2 ** attempt));
      }
    }
  }
}
