import path from "node:path";
import { parseEther } from "ethers";
import { ApiServer } from "../../node/api/server";
import { ensureApiToken } from "../../node/api/token";
import { Broker } from "../../node/broker/broker";
import { Registrar, RegistrationRecords } from "../../node/chain/registration";
import { IdentityRegistryClient } from "../../node/chain/registry";
import { loadConfig } from "../../node/config/config";
import { DiscoveryService } from "../../node/discovery/server";
import { Keystore } from "../../node/identity/keystore";
import { silentLogger } from "../../node/log/logger";
import { MystNode } from "../../node/ops/node";
import { REPLICA_CREDENTIALS } from "../../scripts/lib/nats-server";
import type { TestNetwork } from "../../scripts/lib/test-network";

/** A node with its REST API on a free 127.0.0.1 port, as the API tests drive it. */
export interface ApiNode {
  daemon: MystNode;
  api: ApiServer;
  url: string;
  token: string;
  address: string;
  dir: string;
}

/** A discovery service on a free port, on its own broker connection with the replicas' credentials. */
export async function startTestDiscovery(net: TestNetwork): Promise<{ discovery: DiscoveryService; broker: Broker }> {
  const broker = new Broker({ servers: [net.nats.url], name: "test-discovery", credentials: REPLICA_CREDENTIALS });
  await broker.start();
  const discovery = new DiscoveryService({ broker, directory: net.registry, port: 0 });
  await discovery.start();
  return { discovery, broker };
}

/**
 * Starts the node of data dir `dir` (the network's chain and broker, `discoveryUrl`, light KDF)
 * and its API. A fresh dir gets a new identity (passphrase "pw"), funded and registered; a dir
 * that has one (a restart) keeps it. `env` is the environment the config is read from.
 */
export async function startApiNode(net: TestNetwork, dir: string, discoveryUrl: string, env: NodeJS.ProcessEnv = {}): Promise<ApiNode> {
  const config = loadConfig(
    { dataDir: dir, rpcUrl: net.chain.rpcUrl, deployment: net.chain.deploymentFile, brokerUrl: [net.nats.url], discoveryUrl: [discoveryUrl], lightKdf: true },
    env,
  );
  const keystore = new Keystore({ dir: path.join(dir, "keystore"), lightKdf: true });
  const existing = keystore.list()[0];
  const key = await keystore.unlock((existing ?? (await keystore.create("pw"))).address, "pw");
  if (!existing) {
    await net.chain.fund([key.address], { eth: parseEther("10"), myst: parseEther("100") });
    await net.registerKey(key);
  }
  const daemon = new MystNode({
    config,
    identity: { address: key.address, unlock: async () => key },
    keystore,
    chain: {
      conn: net.conn,
      registry: net.registry,
      registrar: new Registrar(net.conn, new IdentityRegistryClient(net.conn), new RegistrationRecords(path.join(dir, "registrations"))),
    },
    policy: testPolicy(),
    log: silentLogger,
    // A proposal is valid for three pings: at 1 s, a loaded machine (five test files at once) let one expire between two pings (CI, 2026-12-07).
    pingMs: 5000,
  });
  await daemon.start();
  const token = ensureApiToken(dir);
  const api = new ApiServer({ daemon, token, host: "127.0.0.1", port: 0, version: "test", log: silentLogger });
  await api.start();
  return { daemon, api, url: api.url, token, address: key.address, dir };
}

/** Quick invoices and small limits, so a test sees payments within a second. */
function testPolicy() {
  return {
    maxSessions: 10,
    invoiceEveryMs: 300,
    invoiceAboveWei: parseEther("1"),
    maxUnpaid: parseEther("1"),
    minVaultBalance: parseEther("0.1"),
    minEscrow: parseEther("0.1"),
    exposurePercentOfEscrow: 50,
    maxExposure: parseEther("1"),
    settleThreshold: parseEther("100"),
    settleFeePercent: 1,
    settlementFeeWei: parseEther("1"),
    settleOnSessionEnd: false,
  };
}
