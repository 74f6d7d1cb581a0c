/**
 * Message ids seen within the time window. Bounded: past `capacity` the oldest ids go first.
 * An evicted id can only be replayed while its timestamp is still inside the window, so the
 * window times the message rate is the capacity needed; it is documented in docs/protocol.md.
 */
export class ReplayCache {
  readonly #seen = new Map<string, number>();

  constructor(
    private readonly windowMs: number,
    private readonly capacity = 100_000,
  ) {}

  /** Records the id; false if it was already seen. */
  remember(id: string, now = Date.now()): boolean {
    const until = this.#seen.get(id);
    if (until !== undefined && until > now) return false;
    if (this.#seen.size >= this.capacity) this.#evict(now);
    this.#seen.set(id, now + 2 * this.windowMs);
    return true;
  }

  get size(): number {
    return this.#seen.size;
  }

  #evict(now: number): void {
    for (const [id, until] of this.#seen) {
      if (until <= now || this.#seen.size >= this.capacity) this.#seen.delete(id);
      else break;
    }
  }
}
