import { connectChain } from "../chain/connect";
import { readDeployment } from "../chain/deployment";
import { IdentityRegistryClient } from "../chain/registry";
import { Broker } from "../broker/broker";
import type { MystConfig } from "../config/config";
import { JetStreamProposalStore } from "../discovery/jetstream-store";
import { JetStreamReceiptStore } from "../discovery/receipt-store";
import { promiseCheckOf } from "../quality/score";
import { loadReplicaKey } from "../discovery/record-mark";
import { DiscoveryService } from "../discovery/server";
import { SignatureWorkers } from "../discovery/signature-workers";
import { startInOrder, type Startable } from "../lifecycle/startable";
import type { Logger } from "../log/logger";

/*
 * How a discovery replica is started (`myst discovery`). Beside launch.ts, not in it: a replica needs
 * the chain's registry, the broker and discovery, and none of the node (sessions, tunnels, payments,
 * its store), so `myst discovery` loads only this module's imports.
 */

export interface DiscoveryReplicaOptions {
  host: string;
  port: number;
  ttlMs: number;
  bucket: string;
  replicas: number;
  threads?: number;
  /** The replicas' key (record-mark.ts); made there when missing. */
  replicaKeyFile: string;
}

/** A discovery replica (the other program `myst` can be): its HTTP API over the shared JetStream index. */
export async function startDiscoveryReplica(config: MystConfig, log: Logger, o: DiscoveryReplicaOptions): Promise<{ url: string; stop(): Promise<void> }> {
  const conn = await connectChain({ rpcUrl: config.rpcUrl, deployment: readDeployment(config.deploymentFile) });
  const registry = new IdentityRegistryClient(conn);
  const credentials = config.brokerCredentials;
  const broker = new Broker({ servers: config.brokerUrls, name: "myst-discovery", credentials, log });
  const service = new DiscoveryService({
    broker,
    store: new JetStreamProposalStore({ servers: config.brokerUrls, credentials, bucket: o.bucket, ttlMs: o.ttlMs, replicas: o.replicas, log }),
    signatureWorkers: o.threads === undefined ? undefined : new SignatureWorkers(o.threads),
    replicaKey: loadReplicaKey(o.replicaKeyFile),
    directory: registry,
    host: o.host,
    port: o.port,
    maxServiceTypesPerProvider: config.maxServiceTypesPerProvider,
    // Receipts in their own stream beside the index; a promise weighs only in this chain's vault.
    quality: {
      promiseCheck: promiseCheckOf(conn.chainId, conn.deployment.contracts.ConsumerVault),
      store: new JetStreamReceiptStore({ servers: config.brokerUrls, credentials, replicas: o.replicas, log }),
    },
    log,
  });
  const chain: Startable = { start: () => undefined, stop: () => conn.close() };
  const stop = await startInOrder([chain, registry, broker, service]);
  return { url: service.url, stop };
}
