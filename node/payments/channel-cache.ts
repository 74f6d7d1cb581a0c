import type { ChannelState, PaymentChannelsClient } from "../chain/channels";
import { channelIdOf } from "../chain/eip712";

interface Entry {
  state: ChannelState;
  at: number;
}

/**
 * The provider's view of its channels on chain (balance, settled), so that checking a promise
 * needs no chain round trip. A channel is read live the first time, then served from here and
 * read again in the background once older than `maxAgeMs`, and right after each settlement. When
 * the chain does not answer, the last figures stand: payment goes on through an outage, at the
 * risk stated in docs/payments.md (a withdrawal completed during it is not seen).
 */
export class ChannelStateCache {
  readonly #entries = new Map<string, Entry>();
  readonly #reading = new Map<string, Promise<ChannelState>>();
  readonly #maxAgeMs: number;

  constructor(
    readonly channels: PaymentChannelsClient,
    options: { maxAgeMs?: number } = {},
  ) {
    this.#maxAgeMs = options.maxAgeMs ?? 15_000;
  }

  /** The channel's state: cached if there is one (refreshed in the background when old), else read. */
  async get(consumer: string, provider: string): Promise<ChannelState> {
    const entry = this.#entries.get(channelIdOf(consumer, provider));
    if (!entry) return this.read(consumer, provider);
    if (Date.now() - entry.at > this.#maxAgeMs) void this.read(consumer, provider).catch(() => undefined);
    return entry.state;
  }

  /** Reads the channel from the chain now; if the chain fails, the cached state (or the error when none). */
  read(consumer: string, provider: string): Promise<ChannelState> {
    const id = channelIdOf(consumer, provider);
    let reading = this.#reading.get(id);
    if (!reading) {
      reading = this.channels
        .state(consumer, provider)
        .then((state) => {
          this.#entries.set(id, { state, at: Date.now() });
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
    return this.#entries.get(channelIdOf(consumer, provider))?.state;
  }
}
