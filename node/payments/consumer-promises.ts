import type { PaymentChannelsClient } from "../chain/channels";
import { channelIdOf } from "../chain/eip712";
import type { IdentityKey } from "../identity/key";
import type { IssuedPromiseStore } from "../store/issued-promise-store";

/** The latest promise signed on one channel: the consumer's whole debt to that provider. */
export interface SignedPromise {
  amount: bigint;
  /** 0x-prefixed, 65 bytes. */
  signature: string;
}

/**
 * What a consumer has promised each provider, shared by all of its sessions with that provider
 * (one after another, or at the same time): promises are cumulative per channel, so every new one
 * must start from the channel's latest, not from zero. Each promise is stored before it is handed
 * out; on first use a channel's figure comes from the store, or from what the chain has settled
 * if that is higher (a promise signed before the store existed).
 */
export class ConsumerPromises {
  readonly #latest = new Map<string, SignedPromise>();
  readonly #loading = new Map<string, Promise<void>>();

  constructor(
    private readonly key: IdentityKey,
    private readonly channels: PaymentChannelsClient,
    private readonly store?: IssuedPromiseStore,
  ) {}

  /** Reads the channel's figure once (later calls share the first read). */
  load(provider: string): Promise<void> {
    const channelId = channelIdOf(this.key.address, provider);
    let loading = this.#loading.get(channelId);
    if (!loading) {
      loading = this.#load(channelId, provider);
      this.#loading.set(channelId, loading);
    }
    return loading;
  }

  async #load(channelId: string, provider: string): Promise<void> {
    const stored = this.store?.latest(channelId);
    if (stored) this.#raise(channelId, { amount: stored.amount, signature: stored.signature });
    // The chain's settled figure is a floor the consumer certainly signed; unreachable, the store stands.
    const settled = await this.channels.state(this.key.address, provider).then(
      (s) => s.settled,
      () => 0n,
    );
    if (settled > (this.#latest.get(channelId)?.amount ?? 0n)) {
      this.#raise(channelId, { amount: settled, signature: this.#signature(provider, settled) });
    }
  }

  /** The latest promise on the channel with `provider` (after `load`). */
  latest(provider: string): SignedPromise | undefined {
    return this.#latest.get(channelIdOf(this.key.address, provider));
  }

  /** Signs a promise for the cumulative `amount`, stores it, and returns it. */
  sign(provider: string, amount: bigint): SignedPromise {
    const channelId = channelIdOf(this.key.address, provider);
    const promise = { amount, signature: this.#signature(provider, amount) };
    this.store?.save({ channelId, consumer: this.key.address, provider, amount, signature: promise.signature, issuedAt: Date.now() });
    this.#raise(channelId, promise);
    return promise;
  }

  #signature(provider: string, amount: bigint): string {
    return "0x" + Buffer.from(this.channels.signPromise(this.key, provider, amount)).toString("hex");
  }

  #raise(channelId: string, p: SignedPromise): void {
    if (p.amount > (this.#latest.get(channelId)?.amount ?? -1n)) this.#latest.set(channelId, p);
  }
}
