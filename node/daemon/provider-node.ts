import type { BrokerCredentials } from "../config/broker-credentials";
import type { PaymentPolicy } from "../config/payment-policy";
import type { DirectPeering } from "../nat/direct/peering";
import { Broker } from "../broker/broker";
import type { IdentityRegistryClient } from "../chain/registry";
import { ProposalAnnouncer } from "../discovery/announcer";
import { Dialogs } from "../dialog/dialogs";
import type { IdentityKey } from "../identity/key";
import { silentLogger, type Logger } from "../log/logger";
import { PROPOSAL_FORMAT, type DirectContact, type IpType, type Proposal } from "../proposal/proposal";
import type { Reachability } from "../nat/reachability";
import { type ProviderSession, ProviderSessions, providerSessionPath } from "../session/provider";
import { ConsumerVaultClient } from "../chain/vault";
import type { ChainConnection } from "../chain/connect";
import { ProviderPayments } from "../payments/provider-payments";
import { Settler } from "../payments/settlement";
import type { Db } from "../store/database";
import { PromiseStore } from "../store/promise-store";
import { SessionStore } from "../store/session-store";
import { VaultStateCache } from "../payments/vault-cache";
import type { SessionUsage } from "../payments/provider-payments";
import { Wallet } from "ethers";
import type { ProviderService } from "../session/service";
import { SessionError } from "../session/errors";
import type { ServicePolicy } from "../services/controls/service-policy";
import { TrafficStore } from "../store/traffic-store";
import { ProviderControls, type ControlsStatus } from "./provider-controls";

/** What a provider sells, as the operator configures it (prices in wei). */
export interface Offer {
  country: string;
  city?: string;
  asn?: number;
  isp?: string;
  ipType: IpType;
  pricePerHour: bigint;
  pricePerGiB: bigint;
  bandwidthMbps: number;
}

/** A service this node sells, with the offer it is announced under. */
export interface ProvidedService {
  service: ProviderService;
  offer: Offer;
  /** Its controls: schedule, access lists, traffic caps (bandwidth and egress are the service's own). */
  policy?: ServicePolicy;
}

export interface ProviderNodeOptions {
  key: IdentityKey;
  brokerUrls: string[];
  /** How its own broker connection logs in (unused with `shared`). Default none: the broker's node role. */
  brokerCredentials?: BrokerCredentials;
  /**
   * The node's one broker connection and dialogs, when its owner (MystNode) shares them with the
   * consumer side and starts and stops them itself; without them this provider has its own.
   */
  shared?: { broker: Broker; dialogs: Dialogs };
  registry: IdentityRegistryClient;
  /** The services to sell from the start; more can be added and removed while running. */
  services: ProvidedService[];
  log?: Logger;
  maxSessions?: number;
  /** Per-peer limits (config maxDialogsPerPeer, maxSessionsPerConsumer). */
  maxDialogsPerPeer?: number;
  maxSessionsPerConsumer?: number;
  /** How long sessions outlive broker silence (config outageToleranceMs). */
  outageToleranceMs?: number;
  /** Direct channels with consumers that offer one (config stunServers); none: the broker carries every session. */
  direct?: DirectPeering;
  keepaliveMs?: number;
  pingMs?: number;
  /** Payments, always on: the policy, the chain, and the node's database (the caller owns it; traffic caps count there too). */
  payments: ProviderPaymentSettings & { conn: ChainConnection; db: Db };
  /** How long `stop` waits for settlements before leaving them to the next start. Default 10 s. */
  settleTimeoutMs?: number;
  /** The clock schedules and caps read (tests move it). Default Date.now. */
  clock?: () => number;
  /** How often traffic is counted and controls applied. Default 1 s. */
  controlsTickMs?: number;
  /** The node's reachability as last measured: its public contacts go into the proposals (direct/v1). */
  reachability?: () => Reachability | undefined;
  /** The router's ports for services whose consumers reach them unasked (`listenPort`): kept mapped while they are sold (nat/monitor.ts). */
  routerPorts?: {
    keep(port: number, protocol: "udp" | "tcp"): void;
    release(port: number, protocol: "udp" | "tcp"): void;
    maps(port: number, protocol: "udp" | "tcp"): boolean;
  };
}

/** The provider's payment policy (amounts in wei): one definition, in config/ (docs/payments.md explains each). */
export type ProviderPaymentSettings = Omit<PaymentPolicy, "maxSessions">;

/** One sold service as the node runs it: the service, its offer, and the announcer of its proposal. */
interface Selling extends ProvidedService {
  announcer: ProposalAnnouncer;
}

/**
 * A running provider: broker connection, dialogs, the session handler for its services, and one
 * announcer per service that keeps its proposal in discovery. `start` brings them up in order,
 * `stop` takes them down in reverse (sessions ended, proposals unregistered, broker drained).
 * Services can be added and removed while the node runs (the daemon's API does).
 */
export class ProviderNode {
  readonly broker: Broker;
  readonly dialogs: Dialogs;
  readonly sessions: ProviderSessions;
  readonly payments: ProviderPayments;
  readonly settler: Settler;
  readonly store: PromiseStore;
  readonly history: SessionStore;
  readonly vaultCache: VaultStateCache;
  readonly controls: ProviderControls;
  readonly #o: ProviderNodeOptions;
  readonly #log: Logger;
  readonly #selling = new Map<string, Selling>();
  /** The services by type, as ProviderSessions reads them (kept in step with #selling). */
  readonly #services = new Map<string, ProviderService>();
  #started = false;

  constructor(options: ProviderNodeOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.broker =
      options.shared?.broker ?? new Broker({ servers: options.brokerUrls, name: "myst-provider", credentials: options.brokerCredentials, log: this.#log });
    this.dialogs =
      options.shared?.dialogs ??
      new Dialogs({
        broker: this.broker,
        key: options.key,
        directory: options.registry,
        log: this.#log,
        maxDialogsPerPeer: options.maxDialogsPerPeer,
      });
    this.sessions = new ProviderSessions({
      dialogs: this.dialogs,
      services: this.#services,
      currentProposal: (type) => {
        const selling = this.#selling.get(type);
        return selling ? (selling.announcer.current ?? selling.announcer.fresh()) : undefined;
      },
      log: this.#log,
      maxSessions: options.maxSessions,
      maxSessionsPerConsumer: options.maxSessionsPerConsumer,
      outageToleranceMs: options.outageToleranceMs,
      keepaliveMs: options.keepaliveMs,
      direct: options.direct,
      routerMaps: options.routerPorts && ((port, protocol) => options.routerPorts!.maps(port, protocol)),
      // The provider's own controls first (no chain call), then payment.
      admission: async (request) => (await this.controls.admission(request)) ?? this.payments.admission(request),
      relaySigners: { publicKeyOf: (id) => options.registry.publicKeyOf(id) },
      availability: (type, consumer) => this.controls.availability(type, consumer),
    });
    const p = options.payments;
    this.controls = new ProviderControls({
      sessions: this.sessions,
      traffic: new TrafficStore(p.db),
      usage: (id) => this.usage(id),
      withdraw: async (type) => {
        await this.#selling.get(type)?.announcer.withdraw();
      },
      offer: (type) => {
        if (this.#started) this.#selling.get(type)?.announcer.start();
      },
      clock: options.clock,
      tickMs: options.controlsTickMs,
      log: this.#log,
    });
    const vault = new ConsumerVaultClient(p.conn);
    this.store = new PromiseStore(p.db);
    const store = this.store;
    // A deposit into an empty vault makes the pair's stored promise settleable at once.
    const cache = new VaultStateCache(vault, {
      onChange: (consumer) => {
        for (const pending of this.settler.pending()) {
          if (pending.consumer.toLowerCase() === consumer && pending.state === "waiting-top-up") this.settler.settlePair(pending.pairId, { now: true });
        }
      },
    });
    this.vaultCache = cache;
    const history = new SessionStore(p.db);
    this.history = history;
    this.sessions.on("session-accepted", (s) =>
      history.started({ id: s.id, role: "provider", peer: s.consumer, serviceType: s.serviceType, startedAt: s.createdAt }),
    );
    // The path it took (relayed: through which relay), once the consumer confirmed, and again when its relay changes.
    const recordPath = (s: ProviderSession) => {
      const path = providerSessionPath(s);
      // A relay's own session: how its consumer reached it, as its TURN engine saw the allocation.
      const transport = this.#services.get(s.serviceType)?.transportOf?.(s.id);
      try {
        if (path) history.path(s.id, { ...path, ...(transport ? { transport } : {}) });
      } catch (err) {
        this.#log.warn({ sessionId: s.id, err: (err as Error).message }, "the session's path was not recorded in the history");
      }
    };
    this.sessions.on("session-active", recordPath);
    this.sessions.on("session-path", recordPath);
    this.sessions.on("session-ended", (s) => {
      recordPath(s);
      const usage = this.usage(s.id) ?? { bytesIn: 0, bytesOut: 0 };
      // The session's own amount: what its promises added to the pair's ledger (not the pair's total).
      history.ended(s.id, {
        endedAt: s.endedAt ?? Date.now(),
        reason: s.endReason ?? "",
        bytes: usage.bytesIn + usage.bytesOut,
        promised: store.sessionAmount(s.id),
      });
    });
    // With a relayer the identity signs and the relayer's account sends and pays the gas: the identity needs no ETH.
    const submitter = new Wallet(p.relayerKey ?? options.key.privateKeyHex(), p.conn.provider);
    this.settler = new Settler(this.store, vault, submitter, {
      log: this.#log,
      relay: p.relayerKey ? { provider: options.key, maxFeeWei: p.settlementFeeWei } : undefined,
      onSettled: ({ consumer, provider }) => void cache.read(consumer, provider).catch(() => undefined),
    });
    this.payments = new ProviderPayments({
      ...p,
      sessions: this.sessions,
      vaults: cache,
      store: this.store,
      settler: this.settler,
      usage: (id) => this.usage(id),
      brokerUp: () => this.broker.status === "connected",
      log: this.#log,
    });
    for (const provided of options.services) this.#add(provided);
  }

  /** Bytes a session moved so far (and time its service was down), from its service's meter. */
  usage(sessionId: string): SessionUsage | undefined {
    const session = this.sessions.get(sessionId);
    return session ? this.#services.get(session.serviceType)?.usage?.(sessionId) : undefined;
  }

  /** The services sold now, with the state of their proposal in discovery. */
  selling(): { type: string; offer: Offer; announcement: { state: string; lastError?: string; expiresAt?: number }; controls?: ControlsStatus }[] {
    return [...this.#selling.values()].map((s) => ({
      type: s.service.type,
      offer: s.offer,
      ...(s.policy ? { controls: this.controls.status(s.service.type) } : {}),
      announcement: {
        state: s.announcer.state,
        ...(s.announcer.lastError ? { lastError: s.announcer.lastError } : {}),
        ...(s.announcer.current ? { expiresAt: s.announcer.current.expiresAt } : {}),
      },
    }));
  }

  /** Starts selling one more service (announced at once when the node runs). */
  addService(provided: ProvidedService): void {
    if (this.#selling.has(provided.service.type)) throw new SessionError("SERVICE_EXISTS", `a ${provided.service.type} service is already running`);
    const selling = this.#add(provided);
    if (this.#started && this.controls.offered(provided.service.type)) selling.announcer.start();
    else if (this.#started) void selling.announcer.withdraw();
    this.#log.info({ service: provided.service.type }, "service added");
  }

  /** Stops selling a service: its sessions end, its proposal is withdrawn. The service itself is the caller's to stop. */
  async removeService(type: string): Promise<ProviderService> {
    const selling = this.#selling.get(type);
    if (!selling) throw new SessionError("SERVICE_UNKNOWN", `no ${type} service is running`);
    await selling.announcer.stop();
    this.controls.remove(type);
    this.#selling.delete(type);
    await Promise.all(
      this.sessions
        .list()
        .filter((s) => s.serviceType === type && s.state !== "ended")
        .map((s) => this.sessions.end(s.id, "service stopped")),
    );
    this.#services.delete(type);
    const listen = selling.service.listenPort;
    if (listen) this.#o.routerPorts?.release(listen.port, listen.protocol);
    this.#log.info({ service: type }, "service removed");
    return selling.service;
  }

  #add(provided: ProvidedService): Selling {
    const announcer = new ProposalAnnouncer({
      broker: this.broker,
      key: this.#o.key,
      proposal: () => this.proposal(provided),
      pingMs: this.#o.pingMs,
      log: this.#log,
    });
    const selling = { ...provided, announcer };
    this.#selling.set(provided.service.type, selling);
    this.#services.set(provided.service.type, provided.service);
    if (provided.policy) this.controls.add(provided.service.type, provided.policy);
    const listen = provided.service.listenPort;
    if (listen) this.#o.routerPorts?.keep(listen.port, listen.protocol);
    return selling;
  }

  /** The proposal this node offers for a service (without times). */
  proposal({ service, offer, policy }: ProvidedService): Omit<Proposal, "createdAt" | "expiresAt"> {
    const { key, brokerUrls } = this.#o;
    return {
      format: PROPOSAL_FORMAT,
      provider: key.address,
      serviceType: service.type,
      location: {
        country: offer.country,
        ...(offer.city ? { city: offer.city } : {}),
        ...(offer.asn !== undefined ? { asn: offer.asn } : {}),
        ...(offer.isp ? { isp: offer.isp } : {}),
        ipType: offer.ipType,
      },
      price: { currency: "MYST", perHour: offer.pricePerHour.toString(), perGiB: offer.pricePerGiB.toString() },
      bandwidthMbps: offer.bandwidthMbps,
      ...(service.ipv6 ? { ipv6: true } : {}),
      ...(service.reach ? { reach: service.reach } : {}),
      ...(policy?.access?.policy === "allowlist" ? { accessPolicy: "allowlist" as const } : {}),
      contacts: [{ type: "nats/v1", brokerUrls, subject: this.dialogs.subject }, ...directContact(this.#o.reachability?.())],
    };
  }

  /** Announces every proposal again now (the node's contacts changed), instead of at the next ping. */
  reannounce(): void {
    for (const [type, s] of this.#selling) if (this.#started && this.controls.offered(type)) s.announcer.refresh();
  }

  async start(): Promise<void> {
    // Anything stored but unsettled (a crash, a restart) is queued at once; a chain that does not
    // answer delays it, not the start.
    this.settler.settleAll();
    this.vaultCache.start();
    if (!this.#o.shared) {
      await this.broker.start();
      await this.dialogs.start();
    }
    this.sessions.start();
    this.payments.start();
    this.#started = true;
    // A service whose cap is reached or whose schedule is closed is not announced.
    await this.controls.tick();
    this.controls.start();
    for (const [type, s] of this.#selling) {
      if (this.controls.offered(type)) s.announcer.start();
      else void s.announcer.withdraw();
    }
    this.#log.info({ identity: this.#o.key.address, services: [...this.#selling.keys()] }, "provider started");
  }

  async stop(): Promise<void> {
    this.#started = false;
    await Promise.all([...this.#selling.values()].map((s) => s.announcer.stop()));
    await this.sessions.stop();
    this.controls.stop();
    this.payments.stop();
    // Bounded: a chain that does not answer must not keep the node from stopping. What is not
    // settled stays stored and is settled at the next start.
    this.settler.settleAll();
    const settled = await this.settler.drain(this.#o.settleTimeoutMs ?? 10_000);
    this.settler.stop();
    await this.vaultCache.stop();
    if (!settled)
      this.#log.warn({ pending: this.settler.pending().length }, "settlements still pending at shutdown; they are stored and settled at the next start");
    if (!this.#o.shared) {
      this.dialogs.stop();
      await this.broker.stop();
    }
    this.#log.info("provider stopped");
  }
}

/** The direct/v1 contact of a measured reachability: none without public candidates. */
function directContact(r: Reachability | undefined): DirectContact[] {
  if (!r || r.contacts.length === 0) return [];
  return [
    {
      type: "direct/v1",
      nat: { mapping: r.mapping, filtering: r.filtering as DirectContact["nat"]["filtering"] },
      candidates: r.contacts.slice(0, 8).map((c) => ({ kind: c.kind, address: c.address, port: c.port, protocol: c.protocol })),
    },
  ];
}
