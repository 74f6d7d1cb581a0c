import { sameEndpoint, type TunnelEndpoint } from "../session/service";

const keyOf = (e: TunnelEndpoint) => `${e.address} ${e.protocol} ${e.port}`;
/** Each endpoint once (the same address, protocol and port: `sameEndpoint`). */
const uniqueOf = (endpoints: TunnelEndpoint[]) => [...new Map(endpoints.map((e) => [keyOf(e), e])).values()];

/** One endpoint let through the kill switch by `admit`, and how many admissions hold it. */
interface Held {
  endpoint: TunnelEndpoint;
  holders: number;
  /** Settles once the transaction that added it (if any) did: a second admission waits for the first's. */
  ready: Promise<void>;
}

/**
 * Who needs each endpoint a kill switch lets out beside its session's plan: every `admit` holds its
 * endpoints once, every `withdraw` gives one hold back, and an endpoint leaves the sets only when no
 * admission holds it and the plan (the session's tunnel) does not name it. So a withdraw never
 * takes out what the plan or another admission still needs, and an admission of an endpoint that
 * was already there (the plan's, another relay attempt's) is given back without removing it.
 */
export class Admissions {
  #held = new Map<string, Held>();

  /** Every endpoint held now (an arming lets them out beside its plan). */
  endpoints(): TunnelEndpoint[] {
    return [...this.#held.values()].map((h) => h.endpoint);
  }

  /**
   * Holds each endpoint once more. `fresh`: those not let out before (held by nobody, not in `plan`),
   * which the caller adds to the sets, handing the transaction to `added` (a failed one gives these
   * holds back); `waits`: the transactions of earlier admissions of the same endpoints still running.
   */
  take(endpoints: TunnelEndpoint[], plan: TunnelEndpoint[]): { fresh: TunnelEndpoint[]; waits: Promise<void>[]; added: (outcome: Promise<void>) => void } {
    const unique = uniqueOf(endpoints);
    const fresh: TunnelEndpoint[] = [];
    const waits: Promise<void>[] = [];
    const taken: Held[] = [];
    let settle: (outcome: Promise<void>) => void = () => undefined;
    // A failed transaction gives every hold of this admission back (it let nothing out).
    const adding = new Promise<void>((resolve) => {
      settle = (outcome) =>
        outcome.then(resolve, () => {
          this.#give(taken);
          resolve();
        });
    });
    for (const endpoint of unique) {
      const held = this.#held.get(keyOf(endpoint));
      if (held) {
        held.holders++;
        waits.push(held.ready);
        taken.push(held);
        continue;
      }
      const entry: Held = { endpoint, holders: 1, ready: adding };
      this.#held.set(keyOf(endpoint), entry);
      taken.push(entry);
      if (!plan.some((k) => sameEndpoint(k, endpoint))) fresh.push(endpoint);
    }
    return { fresh, waits, added: settle };
  }

  /**
   * Gives one hold back on each endpoint an admission of this generation holds (others are
   * ignored: never admitted, or dropped by `clear`); returns those no longer let out by anyone (not
   * held, not in `plan`), which the caller takes out of the sets.
   */
  give(endpoints: TunnelEndpoint[], plan: TunnelEndpoint[]): TunnelEndpoint[] {
    const unique = uniqueOf(endpoints);
    const held = unique.map((e) => this.#held.get(keyOf(e))).filter((h): h is Held => h !== undefined);
    return this.#give(held).filter((e) => !plan.some((k) => sameEndpoint(k, e)));
  }

  #give(held: Held[]): TunnelEndpoint[] {
    const released: TunnelEndpoint[] = [];
    for (const h of held) {
      if (this.#held.get(keyOf(h.endpoint)) !== h) continue;
      if (--h.holders > 0) continue;
      this.#held.delete(keyOf(h.endpoint));
      released.push(h.endpoint);
    }
    return released;
  }

  /** The endpoints held now that `plan` does not name. */
  besides(plan: TunnelEndpoint[]): TunnelEndpoint[] {
    return this.endpoints().filter((e) => !plan.some((k) => sameEndpoint(k, e)));
  }

  /** Those of `endpoints` no admission holds. */
  unheld(endpoints: TunnelEndpoint[]): TunnelEndpoint[] {
    return endpoints.filter((e) => !this.#held.has(keyOf(e)));
  }

  /** The protection ended (lift): no admission of before counts any more. */
  clear(): void {
    this.#held = new Map();
  }
}
