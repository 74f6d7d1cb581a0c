import type { ChannelState, PaymentChannelsClient } from "../chain/channels";
import { channelIdOf } from "../chain/eip712";

interface Entry {
  state: ChannelState;
  at: number;
  consumer: string;
  provider: string;
}

/**
 * The provider's view of its channels on chain (balance, settled), so that checking a promise
 * needs no chain round trip. A channel is read live the first time, then served from here and
 * read again when the contract's events say it changed (deposit, settlement, withdrawal; followed
 * from `start`), after each settlement, and in the background once older than `maxAgeMs`. When
 * the chain does not answer, the last figures stand: payment goes on through an outage, at the
 * risk stated in docs/payments.md (a withdrawal completed during it is not seen).
 */
export class ChannelStateCache {
  readonly #entries = new Map<string, Entry>();
  readonly #reading = new Map<string, Promise<ChannelState>>();
  readonly #maxAgeMs: number;
  readonly #onChange?: (channelId: string) => void;
  #timer?: NodeJS.Timeout;
  #fromBlock?: number;
  #started = false;

  constructor(
    readonly channels: PaymentChannelsClient,
    options: { maxAgeMs?: number; onChange?: (channelId: string) => void } = {},
  ) {
    this.#maxAgeMs = options.maxAgeMs ?? 60_000;
    this.#onChange = options.onChange;
  }

  /** Follows the contract's events (every `pollMs`): a channel that changed is read again. */
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
    const latest = await this.channels.blockNumber();
    if (this.#fromBlock === undefined) {
      this.#fromBlock = latest + 1;
      return;
    }
    if (latest < this.#fromBlock) return;
    const changed = await this.channels.changedChannels(this.#fromBlock, latest);
    if (!this.#started) return;
    this.#fromBlock = latest + 1;
    for (const id of changed) {
      const entry = this.#entries.get(id);
      if (entry) await this.read(entry.consumer, entry.provider).catch(() => undefined);
      this.#onChange?.(id);
    }
  }

  /** The channel's state: cached if there is one (refreshed in the background when old), else read. */
  async get(consumer: string, provider: string): Promise<ChannelState> {
    const entry = this.#entries.get(channelIdOf(consumer, provider).toLowerCase());
    if (!entry) return this.read(consumer, provider);
    if (Date.now() - entry.at > this.#maxAgeMs) void this.read(consumer, provider).catch(() => undefined);
    return entry.state;
  }

  /** Reads the channel from the chain now; if the chain fails, the cached state (or the error when none). */
  read(consumer: string, provider: string): Promise<ChannelState> {
    const id = channelIdOf(consumer, provider).toLowerCase();
    let reading = this.#reading.get(id);
    if (!reading) {
      reading = this.channels
        .state(consumer, provider)
        .then((state) => {
          this.#entries.set(id, { state, at: Date.now(), consumer, provider });
          return state;
        })
        .catch((err) => {
          const cached = this.#entries.get(id);
          if (cached) return cached.state;
          throw err;
        })
        .finally(() => this.#reading.delete(id));
      this.#reading.set(id, reading);
    }
    return reading;
  }

  /** The cached state without any chain call (undefined when never read). */
  peek(consumer: string, provider: string): ChannelState | undefined {
    return this.#entries.get(channelIdOf(consumer, provider).toLowerCase())?.state;
  }
}
