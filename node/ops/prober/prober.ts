import crypto from "node:crypto";
import type { ConsumerNode } from "../../daemon/consumer-node";
import { stageOfError } from "../../daemon/consumer-receipts";
import type { Logger } from "../../log/logger";
import type { Stage } from "../../quality/receipt";
import type { ConsumerService } from "../../session/service";

/** One round of probes: which service types, how many providers of each, how long a working session is held. */
export interface ProbeRound {
  serviceTypes: string[];
  /** Providers probed per service type, drawn at random from discovery's listing. */
  sample: number;
  /** How long a working session is held at most, waiting for the provider's first invoice to be paid. */
  holdMs: number;
  /** The most one probe may take to connect (dialog to the last stage check). */
  budgetMs: number;
}

/** What one probe found (the signed probe result sent to discovery carries the same). */
export interface ProbeOutcome {
  provider: string;
  serviceType: string;
  reached: Stage | null;
  failed: Stage | null;
  /** Wei promised to the provider in the probe session (its normal price). */
  promisedWei: bigint;
  /** Why the connect failed, in words (a failed probe). */
  error?: string;
}

export interface ProberOptions {
  consumer: ConsumerNode;
  /** A fresh consumer side of `type` for each probe. */
  service(type: string): ConsumerService;
  /** The prober's own identity (never probed). */
  self: string;
  /** A number in [0, 1): which providers a round samples. Default crypto-random. */
  random?: () => number;
  log?: Logger;
}

/**
 * The prober role (docs/quality.md "Probers"): a consumer on a timer. Each round draws providers at
 * random from discovery's listing and connects to each as any consumer does (the same dialog,
 * proposal, payments through its vault at the provider's normal price, and stage checks: dialog,
 * negotiation, reachability, tunnel, DNS, first byte, a short throughput test), holds a working
 * session until the provider's first invoice is paid, ends it, and signs what it saw as a probe
 * result (POST /v1/probes). Nothing in the session tells the provider it is a probe.
 */
export class Prober {
  constructor(private readonly o: ProberOptions) {}

  /** One round: every sampled provider of every service type, one after another. */
  async round(r: ProbeRound): Promise<ProbeOutcome[]> {
    const out: ProbeOutcome[] = [];
    for (const serviceType of r.serviceTypes) {
      for (const provider of await this.#sample(serviceType, r.sample)) out.push(await this.probe(provider, serviceType, r));
    }
    return out;
  }

  /** Probes one provider's service; the probe result is signed and sent before this resolves. */
  async probe(provider: string, serviceType: string, r: Pick<ProbeRound, "holdMs" | "budgetMs">): Promise<ProbeOutcome> {
    try {
      const c = await this.o.consumer.connect({
        provider,
        service: this.o.service(serviceType),
        probe: true,
        alongside: true,
        budgetMs: r.budgetMs,
      });
      // Pay as a consumer pays: hold until the first invoice is answered (or the hold is over).
      const until = Date.now() + r.holdMs;
      while (c.session.state !== "ended" && (c.payments?.promised ?? 0n) === 0n && !c.checked?.failed && Date.now() < until)
        await new Promise((resolve) => setTimeout(resolve, 100));
      await c.session.destroy("done");
      await c.written;
      return {
        provider: provider.toLowerCase(),
        serviceType,
        reached: c.checked?.reached ?? "tunnel",
        failed: c.checked?.failed ?? null,
        promisedWei: c.payments?.promised ?? 0n,
      };
    } catch (err) {
      const outcome = stageOfError(err);
      this.o.log?.info({ provider, serviceType, stage: outcome.failed, err: (err as Error).message }, "probe failed");
      return { provider: provider.toLowerCase(), serviceType, ...outcome, promisedWei: 0n, error: (err as Error).message };
    }
  }

  /** Up to `n` providers of `serviceType` (not this prober), drawn at random from discovery's listing. */
  async #sample(serviceType: string, n: number): Promise<string[]> {
    const providers = new Set<string>();
    let cursor: string | undefined;
    // At most 10 pages of 500: a sample, not a census.
    for (let page = 0; page < 10; page++) {
      const answer = await this.o.consumer.discovery.search({ serviceType }, { limit: 500, ...(cursor ? { cursor } : {}) });
      for (const p of answer.proposals) providers.add(p.proposal.provider.toLowerCase());
      if (!answer.nextCursor) break;
      cursor = answer.nextCursor;
    }
    providers.delete(this.o.self.toLowerCase());
    const list = [...providers];
    const random = this.o.random ?? (() => crypto.randomInt(0, 2 ** 32) / 2 ** 32);
    // Fisher–Yates: the first n of a shuffled list.
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [list[i], list[j]] = [list[j], list[i]];
    }
    return list.slice(0, n);
  }
}
