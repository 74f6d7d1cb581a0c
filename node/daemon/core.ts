import path from "node:path";
import { Broker } from "../broker/broker";
import { DirectPeering } from "../nat/direct/peering";
import { connectChain, type ChainConnection } from "../chain/connect";
import { readDeployment } from "../chain/deployment";
import { RegistrationRecords, Registrar } from "../chain/registration";
import { IdentityRegistryClient } from "../chain/registry";
import type { MystConfig } from "../config/config";
import type { PaymentPolicy } from "../config/payment-policy";
import { Dialogs } from "../dialog/dialogs";
import { MystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import { Keystore } from "../identity/keystore";
import type { Logger } from "../log/logger";
import { ReachabilityMonitor } from "../nat/monitor";
import { consumerSpares } from "../services/catalog";
import { GuardSpare } from "../consumer-protection/guard-spare";
import type { ConsumerSpare } from "../services/tunnel-type";
import { databaseFile, openDatabase, type Db } from "../store/database";
import { OwnReceipts } from "../store/own-receipts";
import { IssuedPromiseStore } from "../store/issued-promise-store";
import { SessionStore } from "../store/session-store";
import { type Address, toAddress } from "../values/address";
import { ConsumerNode } from "./consumer-node";
import { NodeMetrics } from "./metrics";
import { NodeActivity } from "./node-activity";
import { ProviderNode } from "./provider-node";
import { udpBlockedBy } from "../session/udp-blocked";

/** Who a node is: its address, and how to unlock its key (the passphrase stays with the caller). */
export interface NodeIdentity {
  address: string;
  unlock(): Promise<IdentityKey>;
}

/** The chain as a node uses it: the connection, the registry (followed while online) and the registrar. */
export interface ChainParts {
  conn: ChainConnection;
  registry: IdentityRegistryClient;
  registrar: Registrar;
}

export interface NodeOptions {
  config: MystConfig;
  /**
   * The node's identity: it sells, buys, signs promises and settles. An online node unlocks it at
   * start; an offline one when a command first needs the key. None: an offline node over a
   * keystore that holds no identity yet (it can create or import one).
   */
  identity?: NodeIdentity;
  /** Default: the data dir's keystore. */
  keystore?: Keystore;
  /**
   * Tests hand their own (and start and stop them); by default the node connects to the chain of
   * its config when it first needs it, and follows registry events while online.
   */
  chain?: ChainParts;
  /**
   * A node for one command when none runs for the data dir (`myst sessions`, `myst earnings`,
   * `myst identities`…): the keystore, the store and the chain, and nothing that talks to peers —
   * no broker, no services, no connection. Its `disconnect` lifts what a crashed myst left behind.
   */
  offline?: boolean;
  /** The provider's payment policy and capacity, for every service it sells. Default: the config's (`paymentPolicy`). */
  policy?: PaymentPolicy;
  log: Logger;
  /** Announcement period (tests shorten it). Default 30 s. */
  pingMs?: number;
  /**
   * A node that lives for one command (a foreground `myst connect` or `myst service start`): it
   * neither starts the services remembered in services.json nor remembers the ones it starts.
   */
  ephemeral?: boolean;
  /** A kill switch a crashed myst left here stays until this node's connection replaces it (a foreground connect). */
  keepKillSwitchFor?: { netns?: string };
}

/** What only an online node has: the unlocked key, and the provider and consumer sides. */
export interface OnlineParts {
  key: IdentityKey;
  broker: Broker;
  dialogs: Dialogs;
  provider: ProviderNode;
  consumer: ConsumerNode;
  /** What the dashboard shows beyond the API's records: live sessions, earnings per day, health, why (not) visible. */
  activity: NodeActivity;
  /** How the node can be reached, measured (node/nat): its public contacts go into the proposals. */
  reachability: ReachabilityMonitor;
  /** What the consumer keeps ready for its next connection, by service type (configs `wireguardSpare`, `openvpnSpare`; empty when off). */
  spares: Map<string, ConsumerSpare>;
  /** The kill switch's table kept disarmed between connections (config `killSwitchSpare`; none when off). */
  guardSpare?: GuardSpare;
}

/** Asked of an offline node what only an online one does (sell, buy, hold a connection). */
export class NodeOfflineError extends MystError<"NODE_OFFLINE"> {}

/**
 * What every operation of a node stands on, built once: the keystore, the SQLite store, the chain
 * (connected when first needed), the key (unlocked when first needed) and, online, the provider and
 * consumer sides on one broker connection and one set of dialogs. The operation groups (node/ops/)
 * take it; MystNode builds it and runs its lifecycle.
 */
export class NodeCore {
  readonly metrics = new NodeMetrics();
  readonly startedAt = Date.now();
  readonly keystore: Keystore;
  readonly db: Db;
  readonly history: SessionStore;
  readonly options: NodeOptions;
  #online?: OnlineParts;
  #chain?: Promise<ChainParts>;
  #key?: Promise<IdentityKey>;

  constructor(options: NodeOptions) {
    this.options = options;
    const { config } = options;
    this.keystore = options.keystore ?? new Keystore({ dir: path.join(config.dataDir, "keystore"), lightKdf: config.lightKdf });
    this.db = openDatabase(databaseFile(config.dataDir));
    this.history = new SessionStore(this.db);
    if (options.chain) this.#chain = Promise.resolve(options.chain);
  }

  get config(): MystConfig {
    return this.options.config;
  }

  get log(): Logger {
    return this.options.log;
  }

  /** The node's identity; null for an offline node over an empty keystore. */
  get identity(): Address | null {
    return this.options.identity ? toAddress(this.options.identity.address, "identity") : null;
  }

  get offline(): boolean {
    return !!this.options.offline;
  }

  /** The online parts, or undefined on an offline node (or before start). */
  get maybeOnline(): OnlineParts | undefined {
    return this.#online;
  }

  /** The online parts; asked of an offline node, NODE_OFFLINE. */
  online(): OnlineParts {
    if (!this.#online)
      throw new NodeOfflineError("NODE_OFFLINE", "this needs a running node (`myst daemon`, or a foreground `myst connect` / `myst service start`)");
    return this.#online;
  }

  /** The chain, connected once when first needed (an offline node that only reads the store never connects). */
  chain(): Promise<ChainParts> {
    this.#chain ??= (async () => {
      const { config } = this.options;
      const conn = await connectChain({ rpcUrl: config.rpcUrl, deployment: readDeployment(config.deploymentFile) });
      const records = new RegistrationRecords(path.join(config.dataDir, "registrations"));
      return { conn, registry: new IdentityRegistryClient(conn), registrar: new Registrar(conn, new IdentityRegistryClient(conn), records) };
    })();
    return this.#chain;
  }

  /** The chain if it was connected (or is connecting), without connecting it. */
  connectedChain(): Promise<ChainParts | undefined> {
    return this.options.chain ? Promise.resolve(undefined) : (this.#chain?.catch(() => undefined) ?? Promise.resolve(undefined));
  }

  /** The node's key, unlocked once. */
  unlocked(): Promise<IdentityKey> {
    const identity = this.options.identity;
    if (!identity) return Promise.reject(this.#noIdentity());
    this.#key ??= identity.unlock();
    this.#key.catch(() => (this.#key = undefined)); // a wrong passphrase may be retried
    return this.#key;
  }

  /** The node's identity as a consumer (its address is enough: nothing is signed). */
  me(): Address {
    const me = this.identity;
    if (!me) throw this.#noIdentity();
    return me;
  }

  #noIdentity(): MystError {
    return new MystError("NO_IDENTITY", `no identity in ${this.keystore.dir}: run \`myst identities new\` (or name one with --identity)`);
  }

  /**
   * Builds the provider and consumer sides on the node's one broker connection and dialogs.
   * `tunnelled`: whether a consumer connection's tunnel or kill switch holds this machine's traffic
   * (the reachability monitor then keeps its last measurement: nat/monitor.ts).
   */
  buildOnline(key: IdentityKey, chain: ChainParts, policy: PaymentPolicy, o: { tunnelled?: () => boolean } = {}): OnlineParts {
    const { config, log } = this.options;
    const { registry, conn } = chain;
    const broker = new Broker({ servers: config.brokerUrls, name: "myst-node", credentials: config.brokerCredentials, log });
    const dialogs = new Dialogs({ broker, key, directory: registry, log, maxDialogsPerPeer: config.maxDialogsPerPeer });
    const reachability = new ReachabilityMonitor({
      stunServers: config.stunServers,
      portMapping: config.portMapping,
      port: config.natPort,
      log,
      tunnelled: o.tunnelled,
    });
    // A direct channel per session (node/nat/direct): each channel's socket measured with the same STUN servers.
    const direct = config.stunServers.length > 0 ? new DirectPeering({ stunServers: config.stunServers, log }) : undefined;
    const provider = new ProviderNode({
      key,
      shared: { broker, dialogs },
      reachability: () => reachability.current(),
      routerPorts: reachability,
      brokerUrls: config.brokerUrls,
      registry,
      services: [],
      log,
      maxSessions: policy.maxSessions,
      maxDialogsPerPeer: config.maxDialogsPerPeer,
      maxSessionsPerConsumer: config.maxSessionsPerConsumer,
      outageToleranceMs: config.outageToleranceMs,
      direct,
      pingMs: this.options.pingMs,
      payments: { ...policy, conn, db: this.db },
    });
    const consumer = new ConsumerNode({
      key,
      brokerUrls: config.brokerUrls,
      discoveryUrls: config.discoveryUrls,
      registry,
      conn,
      dialogs,
      history: this.history,
      promises: new IssuedPromiseStore(this.db),
      receipts: new OwnReceipts(this.db),
      outageToleranceMs: config.outageToleranceMs,
      direct,
      ...(config.country ? { country: config.country } : {}),
      knownUdpBlocked: () => udpBlockedBy(reachability.current()),
      log,
    });
    this.metrics.watchProvider(provider);
    this.metrics.watchConsumer(() => consumer.current);
    const activity = new NodeActivity({ identity: key.address, provider, consumer, conn, registry, db: this.db, log });
    reachability.onChange(() => provider.reannounce());
    const spareTypes = [...(config.wireguardSpare ? ["wireguard"] : []), ...(config.openvpnSpare ? ["openvpn"] : [])];
    const spares = spareTypes.length ? consumerSpares({ dataDir: config.dataDir, log, types: spareTypes }) : new Map<string, ConsumerSpare>();
    const guardSpare = config.killSwitchSpare ? new GuardSpare({ dataDir: config.dataDir, log }) : undefined;
    this.#online = { key, broker, dialogs, provider, consumer, activity, reachability, spares, guardSpare };
    return this.#online;
  }

  /** The online parts failed to start: the node is offline again. */
  dropOnline(): void {
    this.#online = undefined;
  }

  /** Closes what the core opened: the chain it connected itself, the store. */
  async close(): Promise<void> {
    const chain = await this.connectedChain();
    if (chain) {
      await chain.registry.stop();
      chain.conn.close();
    }
    this.db.close();
  }
}
