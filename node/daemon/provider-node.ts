import { Broker } from "../broker/broker";
import type { IdentityRegistryClient } from "../chain/registry";
import { ProposalAnnouncer } from "../discovery/announcer";
import { Dialogs } from "../dialog/dialogs";
import type { IdentityKey } from "../identity/key";
import { silentLogger, type Logger } from "../log/logger";
import { PROPOSAL_FORMAT, type IpType, type Proposal } from "../proposal/proposal";
import { ProviderSessions } from "../session/provider";
import { PaymentChannelsClient } from "../chain/channels";
import type { ChainConnection } from "../chain/connect";
import { ProviderPayments } from "../payments/provider-payments";
import { Settler } from "../payments/settlement";
import { openDatabase, type Db } from "../store/database";
import { PromiseStore } from "../store/promise-store";
import { SessionStore } from "../store/session-store";
import { channelIdOf } from "../chain/eip712";
import { Wallet } from "ethers";
import type { ProviderService } from "../session/service";

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

export interface ProviderNodeOptions {
  key: IdentityKey;
  brokerUrls: string[];
  registry: IdentityRegistryClient;
  service: ProviderService;
  offer: Offer;
  log?: Logger;
  maxSessions?: number;
  keepaliveMs?: number;
  pingMs?: number;
  /** Payments: without them the provider serves for free (tests of the protocol only). */
  payments?: ProviderPaymentSettings & { conn: ChainConnection; dbFile: string };
}

/** The provider's payment policy (amounts in wei). */
export interface ProviderPaymentSettings {
  invoiceEveryMs: number;
  invoiceAboveWei: bigint;
  maxUnpaid: bigint;
  minChannelBalance: bigint;
  settleThreshold: bigint;
  settleOnSessionEnd: boolean;
}

/**
 * A running provider: broker connection, dialogs, the session handler for one service, and the
 * announcer that keeps its proposal in discovery. `start` brings them up in order, `stop` takes
 * them down in reverse (sessions ended, proposal unregistered, broker drained).
 */
export class ProviderNode {
  readonly broker: Broker;
  readonly dialogs: Dialogs;
  readonly sessions: ProviderSessions;
  readonly announcer: ProposalAnnouncer;
  readonly payments?: ProviderPayments;
  readonly settler?: Settler;
  readonly store?: PromiseStore;
  readonly history?: SessionStore;
  readonly #db?: Db;
  readonly #o: ProviderNodeOptions;
  readonly #log: Logger;

  constructor(options: ProviderNodeOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.broker = new Broker({ servers: options.brokerUrls, name: `myst-provider-${options.key.address}` });
    this.dialogs = new Dialogs({ broker: this.broker, key: options.key, directory: options.registry, log: this.#log });
    this.sessions = new ProviderSessions({
      dialogs: this.dialogs,
      services: new Map([[options.service.type, options.service]]),
      currentProposal: (type) => (type === options.service.type ? this.announcer.current ?? this.announcer.fresh() : undefined),
      log: this.#log,
      maxSessions: options.maxSessions,
      keepaliveMs: options.keepaliveMs,
      admission: options.payments ? (request) => this.payments!.admission(request) : undefined,
    });
    if (options.payments) {
      const p = options.payments;
      const channels = new PaymentChannelsClient(p.conn);
      this.#db = openDatabase(p.dbFile);
      this.store = new PromiseStore(this.#db);
      const history = new SessionStore(this.#db);
      this.history = history;
      this.sessions.on("session-accepted", (s) => history.started({ id: s.id, role: "provider", peer: s.consumer, serviceType: s.serviceType, startedAt: s.createdAt }));
      this.sessions.on("session-ended", (s) => {
        const usage = options.service.usage?.(s.id) ?? { bytesIn: 0, bytesOut: 0 };
        const promised = this.store!.latest(channelIdOf(s.consumer, s.proposal.provider))?.amount ?? 0n;
        history.ended(s.id, { endedAt: s.endedAt ?? Date.now(), reason: s.endReason ?? "", bytes: usage.bytesIn + usage.bytesOut, promised });
      });
      this.settler = new Settler(this.store, channels, new Wallet(options.key.privateKeyHex(), p.conn.provider), { log: this.#log });
      this.payments = new ProviderPayments({
        ...p,
        sessions: this.sessions,
        channels,
        store: this.store,
        settler: this.settler,
        usage: (id) => options.service.usage?.(id),
        log: this.#log,
      });
    }
    this.announcer = new ProposalAnnouncer({
      broker: this.broker,
      key: options.key,
      proposal: () => this.proposal(),
      pingMs: options.pingMs,
      log: this.#log,
    });
  }

  /** The proposal this node offers (without times). */
  proposal(): Omit<Proposal, "createdAt" | "expiresAt"> {
    const { offer, key, service, brokerUrls } = this.#o;
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
      contacts: [{ type: "nats/v1", brokerUrls, subject: this.dialogs.subject }],
    };
  }

  async start(): Promise<void> {
    // Anything stored but unsettled (a crash, a restart) goes on chain first.
    await this.settler?.settleAll();
    await this.broker.start();
    this.dialogs.start();
    this.sessions.start();
    this.payments?.start();
    await this.broker.flush();
    this.announcer.start();
    this.#log.info({ identity: this.#o.key.address, service: this.#o.service.type }, "provider started");
  }

  async stop(): Promise<void> {
    await this.announcer.stop();
    await this.sessions.stop();
    this.payments?.stop();
    await this.settler?.settleAll();
    this.#db?.close();
    this.dialogs.stop();
    await this.broker.stop();
    this.#log.info("provider stopped");
  }
}
