import { Wallet, getAddress, isAddress } from "ethers";
import { PaymentChannelsClient } from "../chain/channels";
import type { ChainConnection } from "../chain/connect";
import type { Registrar, RegistrationStatus } from "../chain/registration";
import type { IdentityRegistryClient } from "../chain/registry";
import type { MystConfig } from "../config/config";
import { MystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import type { Keystore } from "../identity/keystore";
import type { Logger } from "../log/logger";
import { parseFilter } from "../proposal/filter";
import { channelReport, earningsReport, type ChannelReport, type EarningsReport } from "../payments/reports";
import { checkServiceSpec, consumerService, startProviderService, type OpenVpnSettings, type ServiceSpec } from "../services/catalog";
import { SessionError } from "../session/errors";
import { databaseFile, openDatabase, type Db } from "../store/database";
import { IssuedPromiseStore } from "../store/issued-promise-store";
import type { SessionRecord } from "../store/session-store";
import { ConsumerNode, connectionStatus, type Connection, type ConnectionStatus } from "./consumer-node";
import { NodeMetrics } from "./metrics";
import { ProviderNode, type Offer, type ProviderPaymentSettings } from "./provider-node";
import { ServicesFile, type OfferJson } from "./services-file";
import { ConsumerProtection, recoverProtection } from "../consumer-protection/protection";
import { protectedStatus, type ProtectedStatus } from "./protected-status";
import { Confinement, recoverConfinement } from "../consumer-protection/confined";
import type { ProposalFilter } from "../proposal/filter";
import { RECONNECT_ATTEMPTS, reconnectDelayMs, type ReconnectStatus } from "../session/reconnect";
import type { ConsumerService, SessionProtection } from "../session/service";
import { NodeActivity } from "./node-activity";
import { checkVisibleIp, type VisibleIp } from "./visible-ip";

export interface DaemonOptions {
  config: MystConfig;
  /** The node's identity, unlocked: it sells, buys, signs promises and settles. */
  key: IdentityKey;
  keystore: Keystore;
  conn: ChainConnection;
  /** Following registry events for as long as the daemon runs. */
  registry: IdentityRegistryClient;
  registrar: Registrar;
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
  topUpToWei?: string;
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
  | { state: "disconnected" | "connecting" };

/**
 * A long-running node: one identity selling any number of services (one per type) and buying one
 * connection at a time, over one broker connection and one set of dialogs. What the REST API and
 * the CLI ask of a running node goes through here. Services it runs are remembered in
 * `<data-dir>/services.json` and started again when the daemon restarts.
 */
export class MystDaemon {
  readonly metrics = new NodeMetrics();
  readonly provider: ProviderNode;
  readonly consumer: ConsumerNode;
  readonly channels: PaymentChannelsClient;
  readonly startedAt = Date.now();
  /** What the dashboard shows beyond the API's records: live sessions, earnings per day, health, why (not) visible. */
  readonly activity: NodeActivity;
  readonly #o: DaemonOptions;
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
  /** The connection's kill switch, DNS and IPv6 handling; outlives the session while it blocks. */
  #protection?: ConsumerProtection;
  /** The confined namespace of a `confine` connection; outlives the session until disconnect. */
  #confinement?: Confinement;
  /** Cleared by disconnect and stop: a session that ends afterwards was ended on purpose. */
  #wanted?: WantedConnection;
  #reconnect?: ReconnectStatus;
  #reconnecting?: Promise<void>;
  /** Cuts a reconnect's wait short (disconnect, stop). */
  #wake?: () => void;

  constructor(options: DaemonOptions) {
    this.#o = options;
    const { config, key, registry, conn, log, policy } = options;
    this.#servicesFile = new ServicesFile(config.dataDir);
    this.#db = openDatabase(databaseFile(config.dataDir));
    this.provider = new ProviderNode({
      key,
      brokerUrls: config.brokerUrls,
      registry,
      services: [],
      log,
      maxSessions: policy.maxSessions,
      maxDialogsPerPeer: config.maxDialogsPerPeer,
      maxSessionsPerConsumer: config.maxSessionsPerConsumer,
      outageToleranceMs: config.outageToleranceMs,
      pingMs: options.pingMs,
      payments: { ...policy, conn, db: this.#db },
    });
    this.consumer = new ConsumerNode({
      key,
      brokerUrls: config.brokerUrls,
      discoveryUrl: config.discoveryUrl,
      registry,
      conn,
      dialogs: this.provider.dialogs,
      history: this.provider.history,
      promises: new IssuedPromiseStore(this.#db),
      outageToleranceMs: config.outageToleranceMs,
      log,
    });
    this.channels = new PaymentChannelsClient(conn);
    this.metrics.watchProvider(this.provider);
    this.metrics.watchConsumer(() => this.consumer.current);
    this.activity = new NodeActivity({ identity: key.address, provider: this.provider, consumer: this.consumer, conn, registry, log });
  }

  get identity(): string {
    return this.#o.key.address;
  }

  async start(): Promise<void> {
    // Read first: a services file that is not a JSON list stops the start before anything runs.
    const { services, problems } = this.#o.ephemeral ? { services: [], problems: [] } : this.#servicesFile.read();
    await recoverProtection(this.#o.config.dataDir, this.#o.log, this.#o.keepKillSwitchFor ? { keepFor: this.#o.keepKillSwitchFor } : {});
    await recoverConfinement(this.#o.config.dataDir, this.#o.log);
    await this.provider.start();
    await this.consumer.start();
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
    await this.#cancelReconnect();
    await this.consumer.stop();
    await this.#protection?.lift().catch((err) => this.#o.log.error({ err: (err as Error).message }, "lifting the kill switch failed"));
    await this.#confinement?.remove().catch((err) => this.#o.log.error({ err: (err as Error).message }, "removing the confined namespace failed"));
    const services = [...this.#specs.keys()];
    const running = await Promise.all(services.map((type) => this.provider.removeService(type).catch(() => undefined)));
    // The tunnel servers first: nothing unbilled flows while the last promises settle (bounded).
    await Promise.all(running.map((s) => s?.stop?.().catch(() => undefined)));
    await this.provider.stop();
    this.#db.close();
    this.#o.log.info("daemon stopped");
  }

  // identities

  async identities(): Promise<{ address: string; keystoreFile: string; node: boolean; registered: boolean }[]> {
    return Promise.all(
      this.#o.keystore.list().map(async (e) => ({
        address: e.address,
        keystoreFile: e.file,
        node: e.address === this.identity,
        registered: await this.#o.registry.isRegistered(e.address),
      })),
    );
  }

  async createIdentity(passphrase: string): Promise<{ address: string; keystoreFile: string }> {
    const entry = await this.#o.keystore.create(passphrase);
    this.#o.log.info({ identity: entry.address }, "identity created");
    return { address: entry.address, keystoreFile: entry.file };
  }

  async showIdentity(
    address: string,
  ): Promise<{ address: string; node: boolean; keystoreFile: string | null; balanceWei: string; registration: RegistrationStatus }> {
    const id = checkAddress(address, "identity");
    const file = this.#o.keystore.list().find((e) => e.address === id)?.file ?? null;
    const [registration, balance] = await Promise.all([this.#o.registrar.status(id), this.channels.tokenBalance(id)]);
    return { address: id, node: id === this.identity, keystoreFile: file, balanceWei: balance.toString(), registration };
  }

  /** Registers an identity, paying gas from its own account; the node's own needs no passphrase. */
  async register(address: string, options: { passphrase?: string; beneficiary?: string }): Promise<RegistrationStatus> {
    const id = checkAddress(address, "identity");
    if (options.beneficiary !== undefined) checkAddress(options.beneficiary, "beneficiary");
    let key = this.#o.key;
    if (id !== this.identity) {
      if (options.passphrase === undefined) throw new MystError("PASSPHRASE_REQUIRED", `${id} is not the node's identity: give its passphrase to register it`);
      key = await this.#o.keystore.unlock(id, options.passphrase);
    }
    return this.#o.registrar.register(key, {
      submitter: new Wallet(key.privateKeyHex(), this.#o.conn.provider),
      beneficiary: options.beneficiary,
      timeoutMs: this.#o.config.registrationTimeoutMs,
    });
  }

  // services

  services(): ServiceView[] {
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
      };
    });
  }

  async startService(
    input: { type: string; openvpn?: Partial<OpenVpnSettings> },
    offer: OfferJson,
    options: { remember?: boolean } = {},
  ): Promise<ServiceView> {
    const spec = checkServiceSpec(input);
    if (this.#specs.has(spec.type) || this.#starting.has(spec.type))
      throw new SessionError("SERVICE_EXISTS", `a ${spec.type} service is already running: stop it first`);
    // Two requests for one type must not both start it (they would share its files and port).
    this.#starting.add(spec.type);
    try {
      const service = await startProviderService(spec, { dataDir: this.#o.config.dataDir, directory: this.#o.registry, log: this.#o.log });
      try {
        this.provider.addService({ service, offer: offerFromJson(offer) });
      } catch (err) {
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
    const { proposals, nextCursor } = await this.consumer.discovery.search(filter, page);
    return { proposals: proposals.map((p) => p.proposal), nextCursor };
  }

  connection(): ConnectionView {
    const c = this.consumer.current;
    const extra = {
      ...(this.#reconnect ? { reconnect: { ...this.#reconnect } } : {}),
      ...(this.#confinement?.active ? { confined: this.#confinement.describe() } : {}),
    };
    if (c && this.#reconnecting) return { ...protectedStatus(connectionStatus(c), this.#protection), state: "reconnecting", ...extra };
    if (c && (c.session.state === "active" || this.#protection?.state === "blocked"))
      return { ...protectedStatus(connectionStatus(c), this.#protection), ...extra };
    // A confined connection whose session ended: its namespace stays, without a route, until disconnect.
    if (c && this.#confinement?.active) return { ...protectedStatus(connectionStatus(c), this.#protection), state: "blocked", ...extra };
    return { state: this.#connecting ? "connecting" : "disconnected" };
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
    if (request.provider !== undefined) checkAddress(request.provider, "provider");
    const service = consumerService(request.serviceType, {
      key: this.#o.key,
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
        topUpTo: request.topUpToWei === undefined ? undefined : BigInt(request.topUpToWei),
        protection: confinement ?? protection,
      });
    } catch (err) {
      this.metrics.error("connect", (err as MystError).code ?? "INTERNAL");
      throw err;
    } finally {
      this.#connecting = false;
    }
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
    let failed: string[] = [];
    for (let attempt = 1; attempt <= RECONNECT_ATTEMPTS; attempt++) {
      const delay = reconnectDelayMs(attempt);
      status.nextAttemptAt = new Date(Date.now() + delay).toISOString();
      if (!(await this.#pause(delay)) || this.#wanted !== wanted) return;
      status.attempts = attempt;
      delete status.nextAttemptAt;
      let provider = wanted.request.provider;
      try {
        // The same provider first (it may be back), then the cheapest other match for the same filters.
        provider ??= failed.includes(last.session.provider)
          ? (await this.consumer.pick({ filter: wanted.filter, service: wanted.service, exclude: failed })).proposal.provider
          : last.session.provider;
        const connection = await this.consumer.connect({
          provider,
          filter: wanted.filter,
          service: wanted.service,
          topUpTo: wanted.request.topUpToWei === undefined ? undefined : BigInt(wanted.request.topUpToWei),
          protection: holding,
        });
        if (this.#wanted !== wanted) {
          // Disconnected while this attempt ran: the disconnect lifts the protection once this returns.
          await connection.session.destroy("consumer disconnected");
          return;
        }
        Object.assign(status, { state: "connected", provider: connection.session.provider });
        this.metrics.connected(connection);
        this.#o.log.info({ sessionId: connection.session.id, provider: connection.session.provider, attempt }, "reconnected");
        this.#watch(connection, wanted);
        return;
      } catch (err) {
        const code = (err as MystError).code ?? "INTERNAL";
        status.lastError = `${code}: ${(err as Error).message}`;
        this.metrics.error("reconnect", code);
        this.#o.log.warn({ attempt, of: RECONNECT_ATTEMPTS, provider, code, err: (err as Error).message }, "reconnect attempt failed");
        if (code === "NO_PROPOSAL") failed = [];
        else if (provider && !failed.includes(provider)) failed.push(provider);
      }
    }
    status.state = "gave-up";
    this.#o.log.error({ attempts: RECONNECT_ATTEMPTS }, "gave up reconnecting: traffic stays blocked by the kill switch until `myst disconnect`");
  }

  /** Waits `ms`; false when a disconnect or stop cut the wait short. */
  #pause(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve(true);
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve(false);
      };
    });
  }

  /** Whatever session ends from now on was ended on purpose; a reconnect in progress stops (its attempt finishes first). */
  async #cancelReconnect(): Promise<void> {
    this.#wanted = undefined;
    this.#wake?.();
    await this.#reconnecting;
  }

  async disconnect(): Promise<ProtectedStatus> {
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
    const c = this.consumer.current;
    if (!c) throw new SessionError("NOT_CONNECTED", "no connection yet");
    if (c.session.state === "active") await c.session.tunnel.refresh?.().catch(() => undefined);
    const { state, sessionId, bytesIn, bytesOut, durationSeconds, promisedWei, invoices, phasesMs } = connectionStatus(c);
    return { state, sessionId, bytesIn, bytesOut, durationSeconds, promisedWei, invoices, phasesMs };
  }

  // history and money

  sessions(options: { limit: number; role?: "provider" | "consumer" }): SessionRecord[] {
    return this.provider.history!.list(options.limit, options.role);
  }

  async channel(provider: string): Promise<ChannelReport> {
    const p = checkAddress(provider, "provider");
    return channelReport(await this.channels.state(this.identity, p), this.identity, p);
  }

  async topUp(provider: string, amountWei: bigint): Promise<{ depositedWei: string; txHash: string; gasUsed: string; channel: ChannelReport }> {
    const p = checkAddress(provider, "provider");
    if (amountWei <= 0n) throw new MystError("BAD_AMOUNT", "deposit a positive amount");
    const r = await this.channels.deposit(this.#o.key, this.identity, p, amountWei);
    return { depositedWei: amountWei.toString(), txHash: r.txHash, gasUsed: r.gasUsed.toString(), channel: await this.channel(p) };
  }

  async withdraw(provider: string) {
    return this.channels.leave(this.#o.key, checkAddress(provider, "provider"));
  }

  earnings(): EarningsReport {
    return earningsReport(this.provider.store!, this.provider.settler!.pending());
  }

  /** Settles every channel now and waits up to 30 s: what is still pending shows with its state and error. */
  async settle(): Promise<EarningsReport> {
    this.provider.settler!.settleAll();
    await this.provider.settler!.drain(30_000);
    return this.earnings();
  }

  /** The address the internet sees now (config ipCheckUrl), from inside `netns` when the tunnel runs there. */
  visibleIp(netns?: string): Promise<VisibleIp> {
    return checkVisibleIp(this.#o.config.ipCheckUrl, netns);
  }

  #writeServicesFile(): void {
    this.#servicesFile.write([...this.#remembered.values()]);
  }
}

function checkAddress(value: string, what: string): string {
  if (!isAddress(value)) throw new MystError("INVALID_ADDRESS", `${what} "${value}" is not an address (0x + 40 hex)`);
  return getAddress(value);
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
