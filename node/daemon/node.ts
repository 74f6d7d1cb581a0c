import { DirectPeering } from "../nat/direct/peering";
import path from "node:path";
import { Wallet } from "ethers";
import { ConsumerVaultClient } from "../chain/vault";
import { Broker } from "../broker/broker";
import { connectChain, type ChainConnection } from "../chain/connect";
import { Dialogs } from "../dialog/dialogs";
import { readDeployment } from "../chain/deployment";
import { RegistrationRecords, Registrar, type RegistrationStatus } from "../chain/registration";
import { IdentityRegistryClient } from "../chain/registry";
import type { MystConfig } from "../config/config";
import { DiscoveryClient } from "../discovery/client";
import { MystError, isMystError } from "../errors/MystError";
import { IdentityKey, toHex } from "../identity/key";
import { Keystore } from "../identity/keystore";
import { Settler } from "../payments/settlement";
import { PromiseStore } from "../store/promise-store";
import { SessionStore } from "../store/session-store";
import { toAddress } from "../values/address";
import type { Logger } from "../log/logger";
import { parseFilter } from "../proposal/filter";
import { earningsReport, vaultReport, type EarningsReport, type VaultReport } from "../payments/reports";
import { checkServiceSpec, consumerService, servicePolicy, startProviderService, type ServiceSpec } from "../services/catalog";
import type { ControlsSettings } from "../services/controls/settings-schema";
import type { ControlsStatus } from "./provider-controls";
import { SessionError, SessionRefusedError } from "../session/errors";
import type { RefusalCode } from "../session/messages";
import { databaseFile, openDatabase, type Db } from "../store/database";
import { IssuedPromiseStore } from "../store/issued-promise-store";
import type { SessionRecord } from "../store/session-store";
import { ConsumerNode, connectionStatus, type Connection, type ConnectionStatus } from "./consumer-node";
import { NodeMetrics } from "./metrics";
import { ProviderNode, type Offer, type ProviderPaymentSettings } from "./provider-node";
import { ServicesFile, type OfferJson } from "./services-file";
import { ConsumerProtection, leftProtection, recoverProtection, type LeftProtection } from "../consumer-protection/protection";
import { carriesOwnConnections, controlEndpoints, type ControlEndpoint } from "../consumer-protection/control-endpoints";
import { protectedStatus, type ProtectedStatus } from "./protected-status";
import { Confinement, recoverConfinement } from "../consumer-protection/confined";
import type { ProposalFilter } from "../proposal/filter";
import { RECONNECT_ATTEMPTS, reconnectDelayMs, type ReconnectStatus } from "../session/reconnect";
import { AbortError, retry } from "../lifecycle/retry";
import { startInOrder } from "../lifecycle/startable";
import { ReachabilityMonitor, type ReachabilityView } from "../nat/monitor";
import type { ConsumerService, SessionProtection } from "../session/service";
import { NodeActivity } from "./node-activity";
import { checkVisibleIp, type VisibleIp } from "./visible-ip";

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
  /** The provider's payment policy and capacity, for every service it sells. */
  policy: ProviderPaymentSettings & { maxSessions: number };
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

/** A running service as `GET /services` shows it. */
export interface ServiceView {
  type: string;
  spec: ServiceSpec;
  offer: OfferJson;
  announcement: { state: string; lastError?: string; expiresAt?: string };
  sessions: number;
  /** Its controls now: offered or withdrawn (why), cap usage, schedule, access policy. */
  controls?: ControlsStatus;
}

export interface ConnectRequest {
  provider?: string;
  serviceType: string;
  country?: string;
  ipType?: string;
  /** Filter: only providers whose tunnel carries IPv6. */
  ipv6?: boolean;
  maxPricePerHourWei?: string;
  maxPricePerGiBWei?: string;
  netns?: string;
  /** Default true: traffic stays blocked when the tunnel drops, until disconnect. */
  killSwitch?: boolean;
  allowLan?: boolean;
  /**
   * When the session ends by itself, negotiate a new one (the same provider first, then the next
   * that matches the same filters) while the kill switch holds; bounded (session/reconnect.ts).
   */
  reconnect?: boolean;
  /**
   * Confined apps: the tunnel carries only a fresh network namespace's traffic (its name is in the
   * status, `confined.netns`); the consumer's own routes, resolver and firewall stay as they are.
   */
  confine?: boolean;
}

/** The connection the user asked for, until they disconnect: what a reconnect renews. */
interface WantedConnection {
  request: ConnectRequest;
  filter: ProposalFilter;
  service: ConsumerService;
  protection?: ConsumerProtection;
  confinement?: Confinement;
}

/** A connection's status with the reconnect in progress (or the last one). */
export type ConnectionView =
  | (Omit<ProtectedStatus, "state"> & {
      state: ProtectedStatus["state"] | "reconnecting";
      reconnect?: ReconnectStatus;
      confined?: ReturnType<Confinement["describe"]>;
    })
  | { state: "disconnected" | "connecting"; sessionId?: string; endReason?: string; lastFailure?: ConnectFailure }
  /** No myst runs, but one that died while connected left its kill switch (or resolver settings) in force. */
  | { state: "blocked" | "disconnected"; leftBehind: LeftProtection };

/**
 * Why a connect failed, as the person who asked is shown it: our code, and when the provider
 * refused, its refusal code (checked against the documented list at the dialog edge) and words.
 */
export interface ConnectFailure {
  at: string;
  code: string;
  refusal?: RefusalCode;
  message: string;
}

function connectFailure(err: unknown): ConnectFailure {
  const at = new Date().toISOString();
  if (err instanceof SessionRefusedError) return { at, code: err.code, refusal: err.refusal, message: err.message };
  return isMystError(err) ? { at, code: err.code, message: err.message } : { at, code: "INTERNAL", message: "internal error (see the node's log)" };
}

/** What the node's vault commands refuse. */
export type VaultErrorCode = "BAD_AMOUNT" | "EXIT_PENDING" | "EXIT_NOT_REQUESTED";

export class VaultError extends MystError<VaultErrorCode> {}

/** What only an online node has: the unlocked key, and the provider and consumer sides. */
interface OnlineParts {
  key: IdentityKey;
  broker: Broker;
  dialogs: Dialogs;
  provider: ProviderNode;
  consumer: ConsumerNode;
  /** What the dashboard shows beyond the API's records: live sessions, earnings per day, health, why (not) visible. */
  activity: NodeActivity;
  /** How the node can be reached, measured (node/nat): its public contacts go into the proposals. */
  reachability: ReachabilityMonitor;
}

/** Asked of an offline node what only an online one does (sell, buy, hold a connection). */
export class NodeOfflineError extends MystError<"NODE_OFFLINE"> {}

/**
 * The node, and the one place its parts are built: one identity selling any number of services
 * (one per type) and buying one connection at a time, over one broker connection and one set of
 * dialogs. What the REST API (and so the CLI) asks of a node goes through here, whether it runs as
 * `myst daemon`, for one foreground command, or offline for a one-shot command. Services it runs
 * are remembered in `<data-dir>/services.json` and started again when the daemon restarts.
 */
export class MystNode {
  readonly metrics = new NodeMetrics();
  readonly startedAt = Date.now();
  readonly keystore: Keystore;
  readonly #o: NodeOptions;
  #online?: OnlineParts;
  #chain?: Promise<ChainParts>;
  #key?: Promise<IdentityKey>;
  #discovery?: DiscoveryClient;
  readonly #history: SessionStore;
  readonly #specs = new Map<string, { spec: ServiceSpec; offer: OfferJson }>();
  /**
   * What services.json says, by type: changed only by the operator's start and stop. A remembered
   * service that fails to start again stays remembered (the file is the operator's configuration).
   */
  readonly #remembered = new Map<string, { spec: ServiceSpec; offer: OfferJson }>();
  readonly #servicesFile: ServicesFile;
  readonly #starting = new Set<string>();
  readonly #db: Db;
  #connecting = false;
  #stopping?: Promise<void>;
  /** Stops the online parts, newest first (set once they all started). */
  #stopOnline?: () => Promise<void>;
  /** The connection's kill switch, DNS and IPv6 handling; outlives the session while it blocks. */
  #protection?: ConsumerProtection;
  #lastControl?: ControlEndpoint[];
  /** The confined namespace of a `confine` connection; outlives the session until disconnect. */
  #confinement?: Confinement;
  /** Cleared by disconnect and stop: a session that ends afterwards was ended on purpose. */
  #wanted?: WantedConnection;
  /** Why the last connect failed (the provider's refusal code and words), until one succeeds. */
  #lastFailure?: ConnectFailure;
  #reconnect?: ReconnectStatus;
  #reconnecting?: Promise<void>;
  /** Cuts a reconnect's wait short (disconnect, stop). */
  #wake?: () => void;

  constructor(options: NodeOptions) {
    this.#o = options;
    const { config } = options;
    this.keystore = options.keystore ?? new Keystore({ dir: path.join(config.dataDir, "keystore"), lightKdf: config.lightKdf });
    this.#servicesFile = new ServicesFile(config.dataDir);
    this.#db = openDatabase(databaseFile(config.dataDir));
    this.#history = new SessionStore(this.#db);
    if (options.chain) this.#chain = Promise.resolve(options.chain);
  }

  /** The provider side; only an online node has one. */
  get provider(): ProviderNode {
    return this.#onlineParts().provider;
  }

  /** The dashboard's view of the node's activity; only an online node has one. */
  get activity(): NodeActivity {
    return this.#onlineParts().activity;
  }

  /** The consumer side; only an online node has one. */
  get consumer(): ConsumerNode {
    return this.#onlineParts().consumer;
  }

  #onlineParts(): OnlineParts {
    if (!this.#online)
      throw new NodeOfflineError("NODE_OFFLINE", "this needs a running node (`myst daemon`, or a foreground `myst connect` / `myst service start`)");
    return this.#online;
  }

  /** The chain, connected once when first needed (an offline node that only reads the store never connects). */
  #chainParts(): Promise<ChainParts> {
    this.#chain ??= (async () => {
      const { config } = this.#o;
      const conn = await connectChain({ rpcUrl: config.rpcUrl, deployment: readDeployment(config.deploymentFile) });
      const records = new RegistrationRecords(path.join(config.dataDir, "registrations"));
      return { conn, registry: new IdentityRegistryClient(conn), registrar: new Registrar(conn, new IdentityRegistryClient(conn), records) };
    })();
    return this.#chain;
  }

  /** The node's key, unlocked once. */
  #unlocked(): Promise<IdentityKey> {
    const identity = this.#o.identity;
    if (!identity)
      return Promise.reject(new MystError("NO_IDENTITY", `no identity in ${this.keystore.dir}: run \`myst identities new\` (or name one with --identity)`));
    this.#key ??= identity.unlock();
    this.#key.catch(() => (this.#key = undefined)); // a wrong passphrase may be retried
    return this.#key;
  }

  /** Builds the provider and consumer sides on the node's one broker connection and dialogs. */
  #buildOnline(key: IdentityKey, chain: ChainParts): OnlineParts {
    const { config, log, policy } = this.#o;
    const { registry, conn } = chain;
    const broker = new Broker({ servers: config.brokerUrls, name: "myst-node", credentials: config.brokerCredentials, log });
    const dialogs = new Dialogs({ broker, key, directory: registry, log, maxDialogsPerPeer: config.maxDialogsPerPeer });
    const reachability = new ReachabilityMonitor({ stunServers: config.stunServers, portMapping: config.portMapping, port: config.natPort, log });
    // A direct channel per session (node/nat/direct): each channel's socket measured with the same STUN servers.
    const direct = config.stunServers.length > 0 ? new DirectPeering({ stunServers: config.stunServers, log }) : undefined;
    const provider = new ProviderNode({
      key,
      shared: { broker, dialogs },
      reachability: () => reachability.current(),
      brokerUrls: config.brokerUrls,
      registry,
      services: [],
      log,
      maxSessions: policy.maxSessions,
      maxDialogsPerPeer: config.maxDialogsPerPeer,
      maxSessionsPerConsumer: config.maxSessionsPerConsumer,
      outageToleranceMs: config.outageToleranceMs,
      direct,
      pingMs: this.#o.pingMs,
      payments: { ...policy, conn, db: this.#db },
    });
    const consumer = new ConsumerNode({
      key,
      brokerUrls: config.brokerUrls,
      discoveryUrls: config.discoveryUrls,
      registry,
      conn,
      dialogs,
      history: this.#history,
      promises: new IssuedPromiseStore(this.#db),
      outageToleranceMs: config.outageToleranceMs,
      direct,
      log,
    });
    this.metrics.watchProvider(provider);
    this.metrics.watchConsumer(() => consumer.current);
    const activity = new NodeActivity({ identity: key.address, provider, consumer, conn, registry, db: this.#db, log });
    reachability.onChange(() => provider.reannounce());
    return { key, broker, dialogs, provider, consumer, activity, reachability };
  }

  /** What keeps the node's reachability measured: its UDP socket (the one the contacts lead to) and the last measurement. Online only. */
  get reachabilityMonitor(): ReachabilityMonitor {
    return this.#onlineParts().reachability;
  }

  /** How this node can be reached, as last measured (an offline node measures nothing). */
  reachability(): ReachabilityView {
    if (this.#online) return this.#online.reachability.view();
    return { state: "not-measured", summary: "not measured: no node is running (`myst daemon`)", contacts: [], mapping: "unknown", filtering: "unknown" };
  }

  /** The node's identity; null for an offline node over an empty keystore. */
  get identity(): string | null {
    return this.#o.identity ? toAddress(this.#o.identity.address, "identity") : null;
  }

  get offline(): boolean {
    return !!this.#o.offline;
  }

  async start(): Promise<void> {
    // Offline: nothing to start; the chain is connected and the key unlocked when first needed.
    if (this.#o.offline) return;
    // Read first: a services file that is not a JSON list stops the start before anything runs.
    const { services, problems } = this.#o.ephemeral ? { services: [], problems: [] } : this.#servicesFile.read();
    const chain = await this.#chainParts();
    const key = await this.#unlocked();
    await recoverProtection(this.#o.config.dataDir, this.#o.log, this.#o.keepKillSwitchFor ? { keepFor: this.#o.keepKillSwitchFor } : {});
    await recoverConfinement(this.#o.config.dataDir, this.#o.log);
    // The node follows registry events while online; injected parts are their owner's to start.
    if (!this.#o.chain) await chain.registry.start();
    const online = this.#buildOnline(key, chain);
    this.#online = online;
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
          stop: () => this.#stopSelling(),
        },
        { start: () => online.consumer.start(), stop: () => this.#stopBuying() },
        online.reachability,
      ]);
    } catch (err) {
      this.#online = undefined;
      throw err;
    }
    for (const problem of problems) {
      this.#o.log.error(
        { file: this.#servicesFile.file, problem, keptAs: `${this.#servicesFile.file}.invalid` },
        "a remembered service is invalid; not started",
      );
      this.metrics.error("service", "SERVICES_FILE_INVALID");
    }
    for (const saved of services) this.#remembered.set(saved.spec.type, saved as { spec: ServiceSpec; offer: OfferJson });
    for (const saved of services) {
      try {
        await this.startService(saved.spec, saved.offer, { remember: false });
      } catch (err) {
        this.#o.log.error({ service: saved.spec.type, code: (err as MystError).code, err: (err as Error).message }, "could not restart a remembered service");
        this.metrics.error("service", (err as MystError).code ?? "INTERNAL");
      }
    }
    this.#o.log.info({ identity: this.identity }, "daemon started");
  }

  /** Stops everything once; a second call waits for the first. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    await this.#stopOnline?.();
    const chain = this.#o.chain ? undefined : await this.#chain?.catch(() => undefined);
    if (chain) {
      await chain.registry.stop();
      chain.conn.close();
    }
    this.#db.close();
    if (!this.#o.offline) this.#o.log.info("node stopped");
  }

  /** The consumer side stops: no reconnect, the session ended, the kill switch and confinement lifted. */
  async #stopBuying(): Promise<void> {
    await this.#cancelReconnect();
    await this.consumer.stop();
    await this.#protection?.lift().catch((err) => this.#o.log.error({ err: (err as Error).message }, "lifting the kill switch failed"));
    await this.#confinement?.remove().catch((err) => this.#o.log.error({ err: (err as Error).message }, "removing the confined namespace failed"));
  }

  /** The provider side stops: the tunnel servers first (nothing unbilled flows while the last promises settle, bounded), then the provider. */
  async #stopSelling(): Promise<void> {
    const services = [...this.#specs.keys()];
    const running = await Promise.all(services.map((type) => this.provider.removeService(type).catch(() => undefined)));
    await Promise.all(running.map((s) => s?.stop?.().catch(() => undefined)));
    await this.provider.stop();
  }

  // identities

  /** The keystore's identities; `registered` is null when the chain cannot be asked. */
  async identities(): Promise<{ address: string; keystoreFile: string; node: boolean; registered: boolean | null }[]> {
    const registry = await this.#chainParts()
      .then((c) => c.registry)
      .catch(() => undefined);
    return Promise.all(
      this.keystore.list().map(async (e) => ({
        address: e.address,
        keystoreFile: e.file,
        node: e.address === this.identity,
        registered: registry ? await registry.isRegistered(e.address).catch(() => null) : null,
      })),
    );
  }

  async createIdentity(passphrase: string): Promise<{ address: string; keystoreFile: string }> {
    const entry = await this.keystore.create(passphrase);
    this.#o.log.info({ identity: entry.address }, "identity created");
    return { address: entry.address, keystoreFile: entry.file };
  }

  /** Imports keystore v3 JSON (geth, ethers, MetaMask), checked with its passphrase; re-encrypted with `newPassphrase`. */
  async importIdentity(options: { keystore: string; passphrase: string; newPassphrase?: string; source?: string }) {
    const entry = await this.keystore.importJson(options.keystore, options.passphrase, options.newPassphrase, options.source);
    this.#o.log.info({ identity: entry.address }, "identity imported");
    return { address: entry.address, keystoreFile: entry.file };
  }

  /** An identity's keystore JSON, as stored or re-encrypted under a new passphrase. */
  async exportIdentity(address: string, reencrypt?: { passphrase: string; newPassphrase: string }): Promise<{ address: string; keystore: string }> {
    const id = toAddress(address, "identity");
    return { address: id, keystore: await this.keystore.export(id, reencrypt) };
  }

  /**
   * An identity: its keystore file, MYST balance and registration (null and "unknown" when the
   * chain cannot be asked), and its public key when it is the node's own and unlocked.
   */
  async showIdentity(address: string) {
    const id = toAddress(address, "identity");
    const file = this.keystore.list().find((e) => e.address === id)?.file ?? null;
    const why = (err: unknown) => (err instanceof Error ? err.message : String(err));
    const [registration, balance] = await this.#chainParts().then(
      (c) =>
        Promise.all([
          c.registrar.status(id).catch((err): { state: "unknown"; identity: string; reason: string } => ({ state: "unknown", identity: id, reason: why(err) })),
          new ConsumerVaultClient(c.conn).tokenBalance(id).catch(() => null),
        ]),
      (err) => [{ state: "unknown" as const, identity: id, reason: why(err) }, null] as const,
    );
    // The public key shows when the key can be unlocked; a wrong passphrase is an error, none is not.
    const key =
      id === this.identity ? await this.#unlocked().catch((err) => (isMystError(err, "PASSPHRASE_MISSING") ? undefined : Promise.reject(err))) : undefined;
    return {
      address: id,
      node: id === this.identity,
      keystoreFile: file,
      ...(key ? { publicKey: toHex(key.publicKey) } : {}),
      balanceWei: balance === null ? null : balance.toString(),
      registration,
    };
  }

  /**
   * Registers an identity, paying gas from its own account or a relayer's (a hex private key);
   * the node's own needs no passphrase.
   */
  async register(address: string, options: { passphrase?: string; beneficiary?: string; relayerKey?: string }): Promise<RegistrationStatus> {
    const id = toAddress(address, "identity");
    const beneficiary = options.beneficiary === undefined ? undefined : toAddress(options.beneficiary, "beneficiary");
    let relayer: IdentityKey | undefined;
    if (options.relayerKey !== undefined) {
      try {
        relayer = IdentityKey.fromHex(options.relayerKey.trim());
      } catch (err) {
        throw new MystError("RELAYER_KEY_INVALID", "the relayer key is not a 32-byte hex private key", { cause: err });
      }
    }
    let key: IdentityKey;
    if (id === this.identity) key = await this.#unlocked();
    else if (options.passphrase === undefined)
      throw new MystError("PASSPHRASE_REQUIRED", `${id} is not the node's identity: give its passphrase to register it`);
    else key = await this.keystore.unlock(id, options.passphrase);
    const { registrar, conn } = await this.#chainParts();
    return registrar.register(key, {
      submitter: new Wallet((relayer ?? key).privateKeyHex(), conn.provider),
      beneficiary,
      timeoutMs: this.#o.config.registrationTimeoutMs,
    });
  }

  // services

  services(): ServiceView[] {
    if (!this.#online) return [];
    const live = this.provider.sessions.list().filter((s) => s.state !== "ended");
    return this.provider.selling().map((s) => {
      const saved = this.#specs.get(s.type)!;
      return {
        type: s.type,
        spec: saved.spec,
        offer: saved.offer,
        announcement: {
          state: s.announcement.state,
          ...(s.announcement.lastError ? { lastError: s.announcement.lastError } : {}),
          ...(s.announcement.expiresAt ? { expiresAt: new Date(s.announcement.expiresAt).toISOString() } : {}),
        },
        sessions: live.filter((x) => x.serviceType === s.type).length,
        ...(s.controls ? { controls: s.controls } : {}),
      };
    });
  }

  async startService(
    input: { type: string; controls?: ControlsSettings; [settings: string]: unknown },
    offer: OfferJson,
    options: { remember?: boolean } = {},
  ): Promise<ServiceView> {
    const spec = checkServiceSpec(input);
    if (this.#specs.has(spec.type) || this.#starting.has(spec.type))
      throw new SessionError("SERVICE_EXISTS", `a ${spec.type} service is already running: stop it first`);
    // Two requests for one type must not both start it (they would share its files and port).
    this.#starting.add(spec.type);
    try {
      const { registry } = await this.#chainParts();
      this.#onlineParts();
      // The policy first: a bad schedule or an unreadable access list stops the start before anything runs.
      const policy = servicePolicy(spec, this.#o.log);
      const service = await startProviderService(spec, {
        dataDir: this.#o.config.dataDir,
        directory: registry,
        log: this.#o.log,
        bandwidthMbps: offer.bandwidthMbps,
      });
      try {
        this.provider.addService({ service, offer: offerFromJson(offer), policy });
      } catch (err) {
        policy.stop();
        await service.stop?.().catch(() => undefined);
        throw err;
      }
    } finally {
      this.#starting.delete(spec.type);
    }
    this.#specs.set(spec.type, { spec, offer });
    if (options.remember !== false && !this.#o.ephemeral) {
      this.#remembered.set(spec.type, { spec, offer });
      this.#writeServicesFile();
    }
    this.#o.log.info({ service: spec.type }, "service started");
    return this.services().find((s) => s.type === spec.type)!;
  }

  async stopService(type: string): Promise<{ type: string; stopped: true }> {
    if (!this.#specs.has(type)) {
      // Remembered but not running (it failed to start again): stopping it forgets it.
      if (!this.#remembered.delete(type)) throw new SessionError("SERVICE_UNKNOWN", `no ${type} service is running`);
      this.#writeServicesFile();
      return { type, stopped: true };
    }
    const service = await this.provider.removeService(type);
    this.#specs.delete(type);
    if (!this.#o.ephemeral && this.#remembered.delete(type)) this.#writeServicesFile();
    await service.stop?.();
    this.#o.log.info({ service: type }, "service stopped");
    return { type, stopped: true };
  }

  // proposals and the connection

  async proposals(query: Record<string, string | string[] | undefined>, page: { limit?: number; cursor?: string }) {
    const filter = parseFilter(Object.fromEntries(Object.entries(query).filter(([, v]) => v !== undefined)) as Record<string, string | string[]>);
    const { proposals, nextCursor, rejected } = await (await this.#discoveryClient()).search(filter, page);
    return { proposals: proposals.map((p) => p.proposal), nextCursor, rejected };
  }

  async #discoveryClient(): Promise<DiscoveryClient> {
    if (this.#online) return this.consumer.discovery;
    const { registry } = await this.#chainParts();
    this.#discovery ??= new DiscoveryClient(this.#o.config.discoveryUrls, (id) => registry.publicKeyOf(id));
    return this.#discovery;
  }

  connection(): ConnectionView {
    if (!this.#online) {
      // An offline node (no myst running here): what a myst that died while connected left in force.
      const left = leftProtection(this.#o.config.dataDir);
      return left ? { state: left.killSwitch ? "blocked" : "disconnected", leftBehind: left } : { state: "disconnected" };
    }
    const c = this.consumer.current;
    const extra = {
      ...(this.#reconnect ? { reconnect: { ...this.#reconnect } } : {}),
      ...(this.#confinement?.active ? { confined: this.#confinement.describe() } : {}),
    };
    if (c && this.#reconnecting) return { ...protectedStatus(connectionStatus(c), this.#protection), state: "reconnecting", ...extra };
    // The session ended by itself and is still winding down (its tunnel stopping) before the node
    // takes it in: what follows is a reconnect or the kill switch holding, not a disconnect.
    const wanted = this.#wanted;
    if (c && c.session.state !== "active" && wanted?.protection && this.#protection?.state === "protecting") {
      if (wanted.request.reconnect && !this.#reconnect) return { ...protectedStatus(connectionStatus(c), this.#protection), state: "reconnecting", ...extra };
      if (wanted.request.killSwitch !== false) return { ...protectedStatus(connectionStatus(c), this.#protection), state: "blocked", ...extra };
    }
    if (c && (c.session.state === "active" || this.#protection?.state === "blocked"))
      return { ...protectedStatus(connectionStatus(c), this.#protection), ...extra };
    // A confined connection whose session ended: its namespace stays, without a route, until disconnect.
    if (c && this.#confinement?.active) return { ...protectedStatus(connectionStatus(c), this.#protection), state: "blocked", ...extra };
    if (this.#connecting) return { state: "connecting" };
    const failed = this.#lastFailure ? { lastFailure: this.#lastFailure } : {};
    // The last connection's end, for whoever follows it (a foreground `myst connect`).
    return c
      ? { state: "disconnected", sessionId: c.session.id, ...(c.session.endReason ? { endReason: c.session.endReason } : {}), ...failed }
      : { state: "disconnected", ...failed };
  }

  /**
   * The node's control endpoints, resolved now; when the names cannot be resolved (a kill switch
   * still holding from the last session lets no DNS out but to its dead provider), the ones this
   * node resolved last time.
   */
  async #controlEndpoints(): Promise<ControlEndpoint[]> {
    try {
      this.#lastControl = await controlEndpoints(this.#o.config);
    } catch (err) {
      if (!this.#lastControl) throw err;
      this.#o.log.warn({ err: (err as Error).message }, "control endpoints not resolved: using the addresses resolved for the last connection");
    }
    return this.#lastControl;
  }

  async connect(request: ConnectRequest): Promise<ProtectedStatus & { confined?: ReturnType<Confinement["describe"]> }> {
    if (this.#connecting) throw new SessionError("ALREADY_CONNECTING", "a connection is being set up");
    if (this.#reconnecting) throw new SessionError("ALREADY_CONNECTING", "the connection is reconnecting: `myst disconnect` first");
    if (request.reconnect && request.killSwitch === false)
      throw new MystError("BAD_REQUEST", "--reconnect keeps the kill switch between sessions: it cannot be combined with --no-kill-switch");
    if (request.confine && request.reconnect) throw new MystError("BAD_REQUEST", "a confined connection (myst run) does not reconnect: leave out --reconnect");
    const current = this.consumer.current;
    if (current && current.session.state === "active")
      throw new SessionError("ALREADY_CONNECTED", `already connected (session ${current.session.id}): disconnect first`);
    const { key } = this.#onlineParts();
    if (request.provider !== undefined) toAddress(request.provider, "provider");
    const service = consumerService(request.serviceType, {
      key,
      dataDir: this.#o.config.dataDir,
      netns: request.netns,
      log: this.#o.log,
      routeAll: !request.confine,
    });
    if (request.confine && !service.plan)
      throw new MystError("BAD_REQUEST", `a ${request.serviceType} tunnel cannot be confined to a namespace (it declares no tunnel device)`);
    const filter = parseFilter({
      ...(request.country ? { country: request.country } : {}),
      ...(request.ipType ? { ip_type: request.ipType } : {}),
      ...(request.ipv6 ? { ipv6: "true" } : {}),
      ...(request.maxPricePerHourWei ? { max_price_per_hour: request.maxPricePerHourWei } : {}),
      ...(request.maxPricePerGiBWei ? { max_price_per_gib: request.maxPricePerGiBWei } : {}),
    });
    // The node's own connections go through the tunnel only when it is in the node's namespace:
    // their endpoints, resolved while the resolver still answers.
    const control = service.plan && !request.confine && carriesOwnConnections(request.netns) ? await this.#controlEndpoints() : undefined;
    this.#connecting = true;
    let connection: Connection;
    await this.#protection?.lift();
    await this.#confinement?.remove();
    const confinement = request.confine ? new Confinement({ netns: request.netns, dataDir: this.#o.config.dataDir, log: this.#o.log }) : undefined;
    this.#confinement = confinement;
    const protection =
      service.plan && !confinement
        ? new ConsumerProtection({
            killSwitch: request.killSwitch !== false,
            allowLan: !!request.allowLan,
            netns: request.netns,
            control,
            dataDir: this.#o.config.dataDir,
            log: this.#o.log,
          })
        : undefined;
    this.#protection = protection;
    this.#reconnect = undefined;
    try {
      connection = await this.consumer.connect({
        provider: request.provider,
        filter,
        service,
        protection: confinement ?? protection,
      });
    } catch (err) {
      this.metrics.error("connect", (err as MystError).code ?? "INTERNAL");
      this.#lastFailure = connectFailure(err);
      throw err;
    } finally {
      this.#connecting = false;
    }
    this.#lastFailure = undefined;
    this.metrics.connected(connection);
    this.#o.log.info({ sessionId: connection.session.id, provider: connection.session.provider }, "connected");
    const wanted: WantedConnection = { request, filter, service, protection, confinement };
    this.#wanted = wanted;
    this.#watch(connection, wanted);
    return { ...protectedStatus(connectionStatus(connection), protection), ...(confinement ? { confined: confinement.describe() } : {}) };
  }

  /**
   * A session that ends by itself (not by disconnect or stop) leaves the kill switch holding (state
   * "blocked") until disconnect; with `reconnect`, a new session is negotiated meanwhile.
   */
  #watch(connection: Connection, wanted: WantedConnection): void {
    void connection.session.ended.then((reason) => {
      if (this.#wanted !== wanted) return;
      if (wanted.confinement) return void wanted.confinement.tunnelDown();
      if (!wanted.request.reconnect) return void wanted.protection?.tunnelDown();
      this.#reconnecting = this.#reconnectAfter(connection, wanted, reason)
        .catch((err) => this.#o.log.error({ err: (err as Error).message }, "reconnecting failed"))
        .finally(() => (this.#reconnecting = undefined));
    });
  }

  async #reconnectAfter(last: Connection, wanted: WantedConnection, reason: string): Promise<void> {
    const status: ReconnectStatus = { state: "reconnecting", attempts: 0, maxAttempts: RECONNECT_ATTEMPTS, since: new Date().toISOString(), lastError: reason };
    this.#reconnect = status;
    this.#o.log.warn({ sessionId: last.session.id, reason }, "session ended by itself: reconnecting while the kill switch holds");
    // Between sessions nothing passes, not even to the provider that just went away.
    if (wanted.protection) await wanted.protection.block();
    // A failed attempt must leave the kill switch blocking, not lift it as a failed first connect does.
    const holding: SessionProtection | undefined = wanted.protection && {
      engage: (plan) => wanted.protection!.engage(plan),
      tunnelUp: (tunnel) => wanted.protection!.tunnelUp(tunnel),
      abandon: () => wanted.protection!.block(),
    };
    // A disconnect or stop cuts the waits short and ends the retrying.
    const stop = new AbortController();
    this.#wake = () => stop.abort();
    const nextAttemptIn = (attempt: number) => (status.nextAttemptAt = new Date(Date.now() + reconnectDelayMs(attempt)).toISOString());
    let failed: string[] = [];
    let provider: string | undefined;
    try {
      nextAttemptIn(1);
      if (!(await this.#pause(reconnectDelayMs(1), stop.signal)) || this.#wanted !== wanted) return;
      const connection = await retry(
        async (attempt) => {
          if (this.#wanted !== wanted) throw new AbortError("disconnected");
          status.attempts = attempt;
          delete status.nextAttemptAt;
          // The same provider first (it may be back), then the cheapest other match for the same filters.
          provider = wanted.request.provider;
          provider ??= failed.includes(last.session.provider)
            ? (await this.consumer.pick({ filter: wanted.filter, service: wanted.service, exclude: failed })).proposal.provider
            : last.session.provider;
          return this.consumer.connect({
            provider,
            filter: wanted.filter,
            service: wanted.service,
            protection: holding,
          });
        },
        {
          attempts: RECONNECT_ATTEMPTS,
          baseMs: reconnectDelayMs(2),
          maxMs: reconnectDelayMs(RECONNECT_ATTEMPTS),
          signal: stop.signal,
          onFailure: (err, attempt) => {
            const code = (err as MystError).code ?? "INTERNAL";
            status.lastError = `${code}: ${(err as Error).message}`;
            this.metrics.error("reconnect", code);
            this.#o.log.warn({ attempt, of: RECONNECT_ATTEMPTS, provider, code, err: (err as Error).message }, "reconnect attempt failed");
            if (code === "NO_PROPOSAL") failed = [];
            else if (provider && !failed.includes(provider)) failed.push(provider);
            if (attempt < RECONNECT_ATTEMPTS) nextAttemptIn(attempt + 1);
          },
        },
      );
      if (this.#wanted !== wanted) {
        // Disconnected while this attempt ran: the disconnect lifts the protection once this returns.
        await connection.session.destroy("consumer disconnected");
        return;
      }
      Object.assign(status, { state: "connected", provider: connection.session.provider });
      this.metrics.connected(connection);
      this.#o.log.info({ sessionId: connection.session.id, provider: connection.session.provider, attempt: status.attempts }, "reconnected");
      this.#watch(connection, wanted);
    } catch {
      if (stop.signal.aborted || this.#wanted !== wanted) return;
      status.state = "gave-up";
      delete status.nextAttemptAt;
      this.#o.log.error({ attempts: RECONNECT_ATTEMPTS }, "gave up reconnecting: traffic stays blocked by the kill switch until `myst disconnect`");
    } finally {
      this.#wake = undefined;
    }
  }

  /** Waits `ms`; false when a disconnect or stop cut the wait short. */
  #pause(ms: number, signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve(false);
      const timer = setTimeout(() => resolve(true), ms);
      signal.addEventListener("abort", () => (clearTimeout(timer), resolve(false)), { once: true });
    });
  }

  /** Whatever session ends from now on was ended on purpose; a reconnect in progress stops (its attempt finishes first). */
  async #cancelReconnect(): Promise<void> {
    this.#wanted = undefined;
    this.#wake?.();
    await this.#reconnecting;
  }

  async disconnect(): Promise<ProtectedStatus | { state: "disconnected"; recovered: string[] }> {
    if (!this.#online) {
      // No node held a connection: a myst that died while connected may have left its kill switch in force.
      const recovered = [await recoverProtection(this.#o.config.dataDir, this.#o.log), await recoverConfinement(this.#o.config.dataDir, this.#o.log)];
      const done = recovered.filter((m): m is string => !!m);
      if (done.length === 0) throw new SessionError("NOT_CONNECTED", "not connected (no node runs for this data dir)");
      return { state: "disconnected", recovered: done };
    }
    const wasReconnecting = this.#reconnecting !== undefined;
    await this.#cancelReconnect();
    this.#reconnect = undefined;
    const c = this.consumer.current;
    if (c && c.session.state !== "active" && this.#confinement?.active) {
      await this.#confinement.remove();
      return { ...protectedStatus(connectionStatus(c), this.#protection), state: "disconnected" };
    }
    if (c && c.session.state !== "active" && this.#protection && (this.#protection.state === "blocked" || wasReconnecting)) {
      await this.#protection.lift();
      return protectedStatus(connectionStatus(c), this.#protection);
    }
    if (c?.session.state !== "active") throw new SessionError("NOT_CONNECTED", "not connected");
    await c.session.tunnel.refresh?.().catch(() => undefined);
    await c.session.destroy("consumer disconnected");
    await this.#protection?.lift();
    await this.#confinement?.remove();
    this.#o.log.info({ sessionId: c.session.id }, "disconnected");
    return protectedStatus(connectionStatus(c), this.#protection);
  }

  /** The live connection's numbers; the last one's after it ended. */
  async statistics(): Promise<
    Pick<ConnectionStatus, "state" | "sessionId" | "bytesIn" | "bytesOut" | "durationSeconds" | "promisedWei" | "invoices" | "phasesMs">
  > {
    const c = this.#online?.consumer.current;
    if (!c) throw new SessionError("NOT_CONNECTED", "no connection yet");
    if (c.session.state === "active") await c.session.tunnel.refresh?.().catch(() => undefined);
    const { state, sessionId, bytesIn, bytesOut, durationSeconds, promisedWei, invoices, phasesMs } = connectionStatus(c);
    return { state, sessionId, bytesIn, bytesOut, durationSeconds, promisedWei, invoices, phasesMs };
  }

  // history and money

  sessions(options: { limit: number; role?: "provider" | "consumer" }): SessionRecord[] {
    return this.#history.list(options.limit, options.role);
  }

  /** The node's identity as a consumer (its address is enough: nothing is signed). */
  #me(): string {
    const me = this.identity;
    if (!me) throw new MystError("NO_IDENTITY", `no identity in ${this.keystore.dir}: run \`myst identities new\` (or name one with --identity)`);
    return me;
  }

  async #vault(): Promise<ConsumerVaultClient> {
    return new ConsumerVaultClient((await this.#chainParts()).conn);
  }

  /** The node identity's vault: what pays any provider it buys from. */
  async vaultStatus(): Promise<VaultReport> {
    const me = this.#me();
    const vault = await this.#vault();
    const [state, wallet] = await Promise.all([vault.vault(me), vault.tokenBalance(me)]);
    return vaultReport(state, me, wallet);
  }

  /**
   * Adds to the vault's balance and escrow from the identity's MYST (one `transferAndCall` of exactly
   * this sum, no allowance); the identity pays the gas. Cancels a pending exit.
   */
  async deposit(
    amountWei: bigint,
    escrowWei: bigint,
  ): Promise<{ depositedWei: string; escrowWei: string; txHash: string; gasUsed: string; vault: VaultReport }> {
    if (amountWei < 0n || escrowWei < 0n || amountWei + escrowWei === 0n) throw new VaultError("BAD_AMOUNT", "deposit a positive amount");
    const key = await this.#unlocked();
    const vault = await this.#vault();
    const wallet = await vault.tokenBalance(key.address);
    if (wallet < amountWei + escrowWei) {
      throw new VaultError("BAD_AMOUNT", `the identity holds ${wallet} wei of MYST; the deposit needs ${amountWei + escrowWei}`);
    }
    const r = await vault.deposit(key, key.address, amountWei, escrowWei);
    return {
      depositedWei: amountWei.toString(),
      escrowWei: escrowWei.toString(),
      txHash: r.txHash,
      gasUsed: r.gasUsed.toString(),
      vault: await this.vaultStatus(),
    };
  }

  /** Starts leaving: providers refuse a vault in exit, and may settle what they hold during the challenge period. */
  async requestExit(): Promise<{ txHash: string; vault: VaultReport }> {
    const key = await this.#unlocked();
    const vault = await this.#vault();
    const state = await vault.vault(key.address);
    if (state.exitReadyAt !== 0n)
      throw new VaultError("EXIT_PENDING", `an exit is already pending; withdraw from ${new Date(Number(state.exitReadyAt) * 1000).toISOString()}`);
    const txHash = await vault.requestExit(key);
    return { txHash, vault: await this.vaultStatus() };
  }

  /** After the challenge period, takes the vault's balance and escrow back. */
  async withdrawVault(): Promise<{ txHash: string; withdrawnWei: string; vault: VaultReport }> {
    const key = await this.#unlocked();
    const vault = await this.#vault();
    const state = await vault.vault(key.address);
    if (state.exitReadyAt === 0n)
      throw new VaultError("EXIT_NOT_REQUESTED", "request an exit first (`myst vault exit`), then withdraw after the challenge period");
    const r = await vault.withdraw(key);
    return { txHash: r.txHash, withdrawnWei: r.amount.toString(), vault: await this.vaultStatus() };
  }

  earnings(): EarningsReport {
    if (this.#online) return earningsReport(this.provider.store, this.provider.settler.pending());
    return earningsReport(new PromiseStore(this.#db));
  }

  /**
   * Settles every pair now (in batches), waits (30 s online; 60 s offline, whose queue lives only
   * for this call), then pays the earnings the vault credited to the beneficiary: what is still
   * pending shows with its state and error.
   */
  async settle(): Promise<EarningsReport> {
    if (this.#online) {
      const settler = this.provider.settler;
      settler.settleAll();
      if (await settler.drain(30_000)) await settler.payOut(this.#me());
      return this.earnings();
    }
    const key = await this.#unlocked();
    const { conn } = await this.#chainParts();
    const store = new PromiseStore(this.#db);
    const settler = new Settler(store, new ConsumerVaultClient(conn), new Wallet(key.privateKeyHex(), conn.provider), { log: this.#o.log });
    settler.settleAll();
    if (await settler.drain(60_000)) await settler.payOut(key.address);
    settler.stop();
    return earningsReport(store, settler.pending());
  }

  /** The address the internet sees now (config ipCheckUrl), from inside `netns` when the tunnel runs there. */
  visibleIp(netns?: string): Promise<VisibleIp> {
    return checkVisibleIp(this.#o.config.ipCheckUrl, netns);
  }

  #writeServicesFile(): void {
    this.#servicesFile.write([...this.#remembered.values()]);
  }
}

export function offerFromJson(o: OfferJson): Offer {
  return {
    country: o.country.toUpperCase(),
    city: o.city,
    asn: o.asn,
    isp: o.isp,
    ipType: o.ipType,
    pricePerHour: BigInt(o.pricePerHourWei),
    pricePerGiB: BigInt(o.pricePerGiBWei),
    bandwidthMbps: o.bandwidthMbps,
  };
}
