import { Wallet } from "ethers";
import { connectChain, type ChainConnection } from "../../node/chain/connect";
import { Registrar, RegistrationRecords } from "../../node/chain/registration";
import { IdentityRegistryClient } from "../../node/chain/registry";
import { parsePaymentPolicy } from "../../node/config/payment-policy";
import type { ProviderNodeOptions } from "../../node/daemon/provider-node";
import { IdentityKey } from "../../node/identity/key";
import type { Db } from "../../node/store/database";
import { startNatsServer, type NatsServer } from "./nats-server";
import { LOCAL_FUNDER_KEY, testChain, type LocalChain } from "./local-chain";
import { tempDir } from "./tmp";

export { startNatsServer, type NatsServer };

/**
 * Payments for a provider in a test that is not about payments: the node's defaults, except that
 * it asks no deposit of a consumer (payments are always on; an empty vault is admitted).
 */
export function providerPayments(conn: ChainConnection, db: Db): ProviderNodeOptions["payments"] {
  return { ...parsePaymentPolicy({ minVaultBalance: "0", minEscrow: "0" }), conn, db };
}

/** A local chain and a NATS server, started for a test file and stopped after it. */
export class TestNetwork {
  chain!: LocalChain;
  conn!: ChainConnection;
  nats!: NatsServer;
  registry!: IdentityRegistryClient;
  #tmp = tempDir();
  #relayer!: Wallet;
  #nonceQueue: Promise<unknown> = Promise.resolve();

  async start(): Promise<this> {
    [this.chain, this.nats] = await Promise.all([testChain(), startNatsServer()]);
    this.conn = await connectChain({ rpcUrl: this.chain.rpcUrl, deployment: this.chain.deployment, pollingIntervalMs: 200 });
    this.registry = new IdentityRegistryClient(this.conn);
    await this.registry.start();
    this.#relayer = new Wallet(LOCAL_FUNDER_KEY, this.conn.provider);
    return this;
  }

  async stop(): Promise<void> {
    await this.registry?.stop();
    this.conn?.close();
    await Promise.all([this.chain?.stop(), this.nats?.stop()]);
    this.#tmp.cleanup();
  }

  /** A new identity, registered on chain through the funder as relayer. */
  async registeredIdentity(): Promise<IdentityKey> {
    return this.registerKey(IdentityKey.generate());
  }

  async registerKey(key: IdentityKey): Promise<IdentityKey> {
    const registrar = new Registrar(this.conn, new IdentityRegistryClient(this.conn), new RegistrationRecords(this.#tmp.dir));
    const run = this.#nonceQueue.then(() => registrar.register(key, { submitter: this.#relayer, timeoutMs: 10_000 }));
    this.#nonceQueue = run.catch(() => undefined);
    const status = await run;
    if (status.state !== "registered") throw new Error(`registration failed: ${JSON.stringify(status)}`);
    return key;
  }
}
