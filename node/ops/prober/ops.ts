import type { Static } from "@sinclair/typebox";
import type { NodeCore } from "../../daemon/core";
import { MystError } from "../../errors/MystError";
import { consumerService, isServiceType } from "../../services/catalog";
import { Prober } from "./prober";
import type * as S from "./schemas";

/**
 * The prober role of a running node: rounds of probes with its consumer side (docs/quality.md
 * "Probers"). One round at a time. Only service types whose consumer side needs no tunnel device
 * are probed here: a tunnel that routes the machine would take this node's own traffic along.
 */
export class ProberOps {
  #running = false;

  constructor(private readonly core: NodeCore) {}

  async round(body: Static<typeof S.ProbeRoundBody>): Promise<Static<typeof S.ProbeRoundResult>> {
    const { key, consumer } = this.core.online();
    const { config, log } = this.core;
    const service = (type: string) => consumerService(type, { key, dataDir: config.dataDir, log, routeAll: false });
    for (const type of body.serviceTypes) {
      if (!isServiceType(type)) throw new MystError("BAD_REQUEST", `unknown service type "${type}"`);
      if (service(type).plan)
        throw new MystError(
          "BAD_REQUEST",
          `a ${type} probe would route this machine through the provider: the prober probes service types without a tunnel device (docs/quality.md "Probers")`,
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
