import type { Static } from "@sinclair/typebox";
import type { NodeCore } from "../../daemon/core";
import { MystError } from "../../errors/MystError";
import { consumerService, isServiceType } from "../../services/catalog";
import { inOwnNetworkNamespace } from "./confinement";
import { Prober } from "./prober";
import type * as S from "./schemas";

/**
 * The prober role of a running node: rounds of probes with its consumer side (docs/quality.md
 * "Probers"). One round at a time. A tunnel type (a consumer side with a device) is probed only
 * when the node runs in a network namespace of its own (detected, or `proberConfined`): its tunnel
 * routes that namespace, as a consumer's routes its machine, and runs the stage checks through it;
 * elsewhere it would route the machine, so it is refused with the reason.
 */
export class ProberOps {
  #running = false;

  constructor(private readonly core: NodeCore) {}

  async round(body: Static<typeof S.ProbeRoundBody>): Promise<Static<typeof S.ProbeRoundResult>> {
    const { key, consumer } = this.core.online();
    const { config, log } = this.core;
    const confined = config.proberConfined === true || inOwnNetworkNamespace();
    const tunnelCheck = { name: config.tunnelCheckName, url: config.tunnelCheckUrl };
    const service = (type: string) => consumerService(type, { key, dataDir: config.dataDir, log, routeAll: confined, tunnelCheck });
    for (const type of body.serviceTypes) {
      if (!isServiceType(type)) throw new MystError("BAD_REQUEST", `unknown service type "${type}"`);
      if (service(type).plan && !confined)
        throw new MystError(
          "BAD_REQUEST",
          `a ${type} probe would route this machine through the provider: run the prober in a network namespace of its own (or a container, with proberConfined) to probe tunnel types (docs/quality.md "Probers")`,
        );
    }
    if (this.#running) throw new MystError("PROBE_ROUND_RUNNING", "a round of probes is already running");
    this.#running = true;
    const startedAt = new Date().toISOString();
    try {
      const prober = new Prober({ consumer, service, self: key.address, log });
      const probes = await prober.round({
        serviceTypes: body.serviceTypes,
        sample: body.sample ?? 5,
        holdMs: (body.holdSeconds ?? 10) * 1000,
        budgetMs: 15_000,
      });
      return { startedAt, endedAt: new Date().toISOString(), probes: probes.map((p) => ({ ...p, promisedWei: p.promisedWei.toString() })) };
    } finally {
      this.#running = false;
    }
  }
}
