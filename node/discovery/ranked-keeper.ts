import type { ProposalIndex, RankedOrder } from "./index";
import type { QualityBook } from "./quality";

/** The shortest gap between two updates of a ranked order (ms): how stale `sort=quality` may be, at most, after a change. */
export const RANKED_REFRESH_MS = 100;

/**
 * A replica's order of every listed proposal by quality (best first, unrated at the neutral 50, then
 * key), kept off the query path: a query reads the last order made (one consistent snapshot) and never
 * makes it (a replica makes the first when its load ends, before it is ready: server.ts). When scores change (the book's batches) or the listed set changes
 * (the index's `onListings`), an update is scheduled on a timer, at most one every RANKED_REFRESH_MS;
 * it moves only the proposals whose score changed or that were listed since (one merge pass over typed
 * arrays), and makes the whole order again only when too much changed to list (50,000 at once).
 * So a change shows in `sort=quality` within RANKED_REFRESH_MS plus one update's run after it.
 */
export class RankedOrderKeeper {
  #order?: RankedOrder;
  #version = -1;
  #listings = -1;
  #at = 0;
  #timer?: NodeJS.Timeout;

  constructor(
    private readonly index: ProposalIndex,
    private readonly book: QualityBook,
  ) {
    book.onScores(() => this.#schedule());
    index.onListings(() => this.#schedule());
  }

  /** The last order made (made now only if none was yet); schedules an update if it is behind. */
  order(): RankedOrder {
    if (!this.#order) this.update();
    else if (this.#behind()) this.#schedule();
    return this.#order as RankedOrder;
  }

  /** Brings the order up to date now (the timer's work; tests and the bench call it directly). */
  update(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#order && !this.#behind()) return;
    const version = this.book.version;
    const listings = this.index.listings;
    const changes = this.book.takeChanges();
    const listed = this.index.takeListed();
    this.#order = this.#order && changes && listed ? this.index.rerankedOrder(this.#order, changes, this.#rate, listed) : this.index.rankedOrder(this.#rate);
    this.#version = version;
    this.#listings = listings;
    this.#at = Date.now();
  }

  #behind(): boolean {
    return this.#version !== this.book.version || this.#listings !== this.index.listings;
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => this.update(), Math.max(0, this.#at + RANKED_REFRESH_MS - Date.now()));
    this.#timer.unref();
  }

  readonly #rate = (provider: string, serviceType: string) => {
    const s = this.book.rated(provider, serviceType);
    return { rank: s?.rank ?? 50, score: s?.score ?? null };
  };
}

const keepers = new WeakMap<ProposalIndex, RankedOrderKeeper>();

/** The keeper of `index`'s ranked order by `book`'s scores (one per index: made when a replica is ready, or at the first ranked query). */
export function rankedKeeperOf(index: ProposalIndex, book: QualityBook): RankedOrderKeeper {
  let k = keepers.get(index);
  if (!k) keepers.set(index, (k = new RankedOrderKeeper(index, book)));
  return k;
}
