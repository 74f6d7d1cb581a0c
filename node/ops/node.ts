import { recoverConfinement } from "../consumer-protection/confined";
import { recoverProtection } from "../consumer-protection/left-protection";
import { NodeCore, type NodeOptions } from "../daemon/core";
import type { NodeMetrics } from "../daemon/metrics";
import type { ProviderNode } from "../daemon/provider-node";
import { startInOrder } from "../lifecycle/startable";
import type { ReachabilityMonitor, ReachabilityView } from "../nat/monitor";
import type { Address } from "../values/address";
import { ConnectionOps } from "./connection/connection";
import { ProposalSearch } from "./connection/proposals";
import { EarningsOps } from "./earnings/earnings";
import { IdentityOps } from "./identities/identities";
import { ServiceOps } from "./services/services";
import { VaultOps } from "./vault/vault";
import { ProberOps } from "./prober/ops";

export type { NodeIdentity, NodeOptions, ChainParts } from "../daemon/core";
export { NodeOfflineError } from "../daemon/core";

/**
 * The node, and the one place its parts are put together: one identity selling any number of
 * services (one per type) and buying one connection at a time, over one broker connection and one
 * set of dialogs. What the REST API (and so the CLI) asks of a node goes to one of its operation
 * groups (node/ops/<group>/), whether it runs as `myst daemon`, for one foreground command, or
 * offline for a one-shot command. This class only composes them and runs the lifecycle.
 */
export class MystNode {
  /** The keystore, store, chain, key and (online) the provider and consumer sides every group stands on. */
  readonly core: NodeCore;
  readonly identities: IdentityOps;
  /** What it sells; remembered in `<data-dir>/services.json` and started again when the daemon restarts. */
  readonly services: ServiceOps;
  readonly proposals: ProposalSearch;
  readonly connection: ConnectionOps;
  readonly vault: VaultOps;
  readonly earnings: EarningsOps;
  /** The prober role: rounds of probes as a consumer (docs/quality.md "Probers"). */
  readonly prober: ProberOps;
  #stopping?: Promise<void>;
  /** Stops the online parts, newest first (set once they all started). */
  #stopOnline?: () => Promise<void>;

  constructor(options: NodeOptions) {
    this.core = new NodeCore(options);
    this.identities = new IdentityOps(this.core);
    this.services = new ServiceOps(this.core);
    this.proposals = new ProposalSearch(this.core);
    this.connection = new ConnectionOps(this.core);
    this.vault = new VaultOps(this.core);
    this.earnings = new EarningsOps(this.core);
    this.prober = new ProberOps(this.core);
  }

  get identity(): Address | null {
    return this.core.identity;
  }

  get metrics(): NodeMetrics {
    return this.core.metrics;
  }

  /** The provider side; only an online node has one. */
  get provider(): ProviderNode {
    return this.core.online().provider;
  }

  /** What keeps the node's reachability measured: its UDP socket (the one the contacts lead to) and the last measurement. Online only. */
  get reachabilityMonitor(): ReachabilityMonitor {
    return this.core.online().reachability;
  }

  /** How this node can be reached, as last measured (an offline node measures nothing). */
  reachability(): ReachabilityView {
    const online = this.core.maybeOnline;
    if (online) return online.reachability.view();
    return { state: "not-measured", summary: "not measured: no node is running (`myst daemon`)", contacts: [], mapping: "unknown", filtering: "unknown" };
  }

  async start(): Promise<void> {
    const { core } = this;
    const { options, config, log } = core;
    // Offline: nothing to start; the chain is connected and the key unlocked when first needed.
    if (options.offline) return;
    // Read first: a services file that is not a JSON list stops the start before anything runs.
    const remembered = this.services.readRemembered();
    const chain = await core.chain();
    const key = await core.unlocked();
    await recoverProtection(config.dataDir, log, options.keepKillSwitchFor ? { keepFor: options.keepKillSwitchFor } : {});
    await recoverConfinement(config.dataDir, log);
    // The node follows registry events while online; injected parts are their owner's to start.
    if (!options.chain) await chain.registry.start();
    const online = core.buildOnline(key, chain, options.policy ?? config.paymentPolicy, { tunnelled: () => this.connection.holdsOwnTraffic() });
    // In order, and if one part fails the ones started are stopped again: no half-started node.
    try {
      this.#stopOnline = await startInOrder([
        online.broker,
        online.dialogs,
        {
          // A provider that fails halfway through its start (settlement queued, sessions listening) is stopped again.
          start: () =>
            online.provider.start().catch(async (err) => {
              await online.provider.stop().catch(() => undefined);
              throw err;
            }),
          stop: () => this.services.stopSelling(),
        },
        { start: () => online.consumer.start(), stop: () => this.connection.stopBuying() },
        // Spare devices for the next connection (configs `wireguardSpare`, `openvpnSpare`) and the kill switch's spare
        // table (`killSwitchSpare`): none left once the node stops.
        {
          start: async () => void (await Promise.all([...online.spares.values()].map((s) => s.start()))),
          stop: async () => void (await Promise.all([...[...online.spares.values()].map((s) => s.stop()), online.guardSpare?.stop()])),
        },
        online.reachability,
      ]);
    } catch (err) {
      core.dropOnline();
      throw err;
    }
    await this.services.restart(remembered);
    log.info({ identity: this.identity }, "daemon started");
  }

  /** Stops everything once; a second call waits for the first. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    await this.#stopOnline?.();
    await this.core.close();
    if (!this.core.offline) this.core.log.info("node stopped");
  }
}
