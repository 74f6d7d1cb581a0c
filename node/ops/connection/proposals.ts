import type { NodeCore } from "../../daemon/core";
import { DiscoveryClient } from "../../discovery/client";
import type { ProposalFilter } from "../../proposal/filter";

/** Searches discovery for proposals (each one re-verified): the online node's client, or one of its own offline. */
export class ProposalSearch {
  #discovery?: DiscoveryClient;

  constructor(private readonly core: NodeCore) {}

  async search(filter: ProposalFilter, page: { limit?: number; cursor?: string }) {
    const { proposals, nextCursor, rejected } = await (await this.#client()).search(filter, page);
    return { proposals: proposals.map((p) => p.proposal), nextCursor, rejected };
  }

  async #client(): Promise<DiscoveryClient> {
    const online = this.core.maybeOnline;
    if (online) return online.consumer.discovery;
    const { registry } = await this.core.chain();
    this.#discovery ??= new DiscoveryClient(this.core.config.discoveryUrls, (id) => registry.publicKeyOf(id));
    return this.#discovery;
  }
}
