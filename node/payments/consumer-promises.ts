import { pairIdOf, type ConsumerVaultClient } from "../chain/vault";
import type { IdentityKey } from "../identity/key";
import type { IssuedPromiseStore } from "../store/issued-promise-store";

/** The latest promise signed to one provider: the consumer's whole debt to it. */
export interface SignedPromise {
  amount: bigint;
  /** 0x-prefixed, 65 bytes. */
  signature: string;
}

/**
 * What a consumer has promised each provider, shared by all of its sessions with that provider
 * (one after another, or at the same time): promises are cumulative per (consumer, provider) pair,
 * so every new one must start from the pair's latest, not from zero. All of them are paid from the
 * one vault. Each promise is stored before it is handed out; on first use a pair's figure comes
 * from the store, or from what the chain has settled if that is higher (a promise signed before
 * the store existed). A provider never used before needs nothing on chain: its figure is zero.
 */
export class ConsumerPromises {
  readonly #latest = new Map<string, SignedPromise>();
  /** The promise this consumer signed last, to whichever provider: what backs a receipt of a failed session (docs/quality.md). */
  lastSigned?: SignedPromise & { provider: string };
  readonly #loading = new Map<string, Promise<void>>();

  constructor(
    private readonly key: IdentityKey,
    private readonly vault: ConsumerVaultClient,
    private readonly store?: IssuedPromiseStore,
  ) {}

  /** Reads the pair's figure once (later calls share the first read). */
  load(provider: string): Promise<void> {
    const pairId = pairIdOf(this.key.address, provider);
    let loading = this.#loading.get(pairId);
    if (!loading) {
      loading = this.#load(pairId, provider);
      this.#loading.set(pairId, loading);
    }
    return loading;
  }

  async #load(pairId: string, provider: string): Promise<void> {
    const stored = this.store?.latest(pairId);
    if (stored) this.#raise(pairId, { amount: stored.amount, signature: stored.signature });
    if (stored && !this.lastSigned) this.lastSigned = { amount: stored.amount, signature: stored.signature, provider };
    // The chain's settled figure is a floor the consumer certainly signed; unreachable, the store stands.
    const settled = await this.vault.pair(this.key.address, provider).then(
      (s) => s.settled,
      () => 0n,
    );
    if (settled > (this.#latest.get(pairId)?.amount ?? 0n)) {
      this.#raise(pairId, { amount: settled, signature: this.#signature(provider, settled) });
    }
  }

  /** The latest promise to `provider` (after `load`). */
  latest(provider: string): SignedPromise | undefined {
    return this.#latest.get(pairIdOf(this.key.address, provider));
  }

  /** Signs a promise for the cumulative `amount`, stores it, and returns it. */
  sign(provider: string, amount: bigint): SignedPromise {
    const pairId = pairIdOf(this.key.address, provider);
    const promise = { amount, signature: this.#signature(provider, amount) };
    this.store?.save({ pairId: pairId, consumer: this.key.address, provider, amount, signature: promise.signature, issuedAt: Date.now() });
    this.#raise(pairId, promise);
    this.lastSigned = { ...promise, provider };
    return promise;
  }

  #signature(provider: string, amount: bigint): string {
    return "0x" + Buffer.from(this.vault.signPromise(this.key, provider, amount)).toString("hex");
  }

  #raise(pairId: string, p: SignedPromise): void {
    if (p.amount > (this.#latest.get(pairId)?.amount ?? -1n)) this.#latest.set(pairId, p);
  }
}
