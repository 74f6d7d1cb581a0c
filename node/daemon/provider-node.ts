import { Broker } from "../broker/broker";
import type { IdentityRegistryClient } from "../chain/registry";
import { ProposalAnnouncer } from "../discovery/announcer";
import { Dialogs } from "../dialog/dialogs";
import type { IdentityKey } from "../identity/key";
import { silentLogger, type Logger } from "../log/logger";
import { PROPOSAL_FORMAT, type IpType, type Proposal } from "../proposal/proposal";
import { ProviderSessions, type Admission } from "../session/provider";
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
  admission?: Admission;
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
      admission: options.admission,
    });
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
    await this.broker.start();
    this.dialogs.start();
    this.sessions.start();
    await this.broker.flush();
    this.announcer.start();
    this.#log.info({ identity: this.#o.key.address, service: this.#o.service.type }, "provider started");
  }

  async stop(): Promise<void> {
    await this.announcer.stop();
    await this.sessions.stop();
    this.dialogs.stop();
    await this.broker.stop();
    this.#log.info("provider stopped");
  }
}
