import { EventEmitter } from "node:events";
import type { ConsumerVaultClient, PairState } from "../chain/vault";

interface Entry {
  state: PairState;
  at: number;
  consumer: string;
  provider: string;
}

/**
 * The provider's view of its consumers' vaults on chain (balance, escrow, exit) and of what each
 * pair has settled, so that checking a promise needs no chain round trip. A pair is read live the
 * first time, then served from here and read again when the contract's events say the consumer's
 * vault changed (deposit, any provider's settlement, exit; followed from `start`), after each of our
 * settlements, and in the background once older than `maxAgeMs`. When the chain does not answer,
 * the last figures stand: payment goes on through an outage, at the risk stated in docs/payments.md.
 * Emits "vault-changed" (the consumer, lower-case) for every vault the events name, after reading it.
 */
export class VaultStateCache extends EventEmitter<VaultStateCacheEvents> {
  readonly #entries = new Map<string, Entry>();
  readonly #reading = new Map<string, Promise<PairState>>();
  readonly #maxAgeMs: number;
  readonly #onChange?: (consumer: string) => void;
  #timer?: NodeJS.Timeout;
  #fromBlock?: number;
  #started = false;

  constructor(
    readonly vault: ConsumerVaultClient,
    options: { maxAgeMs?: number; onChange?: (consumer: string) => void } = {},
  ) {
    super();
    this.#maxAgeMs = options.maxAgeMs ?? 60_000;
    this.#onChange = options.onChange;
  }

  /** Follows the contract's events (every `pollMs`): a vault that changed is read again. */
  start(pollMs = 1000): void {
    if (this.#started) return;
    this.#started = true;
    const loop = () => {
      void this.#poll()
        .catch(() => undefined) // the chain is away: the cached figures stand; the next poll catches up
        .finally(() => {
          if (this.#started) this.#timer = setTimeout(loop, pollMs).unref();
        });
    };
    loop();
  }

  /** Stops following; a poll still waiting on a chain that does not answer is left to time out. */
  async stop(): Promise<void> {
    this.#started = false;
    clearTimeout(this.#timer);
  }

  async #poll(): Promise<void> {
    const latest = await this.vault.blockNumber();
    if (this.#fromBlock === undefined) {
      this.#fromBlock = latest + 1;
      return;
    }
    if (latest < this.#fromBlock) return;
    const changed = await this.vault.changedVaults(this.#fromBlock, latest);
    if (!this.#started) return;
    this.#fromBlock = latest + 1;
    for (const consumer of changed) {
      for (const entry of [...this.#entries.values()].filter((e) => e.consumer.toLowerCase() === consumer)) {
        await this.read(entry.consumer, entry.provider).catch(() => undefined);
      }
      this.#onChange?.(consumer);
      this.emit("vault-changed", consumer);
    }
  }

  /** The pair's state: cached if there is one (refreshed in the background when old), else read. */
  async get(consumer: string, provider: string): Promise<PairState> {
    const entry = this.#entries.get(key(consumer, provider));
    if (!entry) return this.read(consumer, provider);
    if (Date.now() - entry.at > this.#maxAgeMs) void this.read(consumer, provider).catch(() => undefined);
    return entry.state;
  }

  /** Reads the pair from the chain now; if the chain fails, the cached state (or the error when none). */
  read(consumer: string, provider: string): Promise<PairState> {
    const k = key(consumer, provider);
    let reading = this.#reading.get(k);
    if (!reading) {
      reading = this.vault
        .pair(consumer, provider)
        .then((state) => {
          this.#entries.set(k, { state, at: Date.now(), consumer, provider });
          return state;
        })
        .catch((err) => {
          const cached = this.#entries.get(k);
          if (cached) return cached.state;
          throw err;
        })
        .finally(() => this.#reading.delete(k));
      this.#reading.set(k, reading);
    }
    return reading;
  }

  /** The cached state without any chain call (undefined when never read). */
  peek(consumer: string, provider: string): PairState | undefined {
    return this.#entries.get(key(consumer, provider))?.state;
  }
}

/** What the cache tells its listeners. */
export interface VaultStateCacheEvents {
  /** The contract's events named this consumer's vault (a deposit, a settlement, an exit request…). */
  "vault-changed": [consumer: string];
}

const key = (consumer: string, provider: string) => `${consumer.toLowerCase()}:${provider.toLowerCase()}`;
