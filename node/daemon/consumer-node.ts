import type { DirectPeering } from "../nat/direct/peering";
import type { BrokerCredentials } from "../config/broker-credentials";
import { Broker } from "../broker/broker";
import type { IdentityRegistryClient } from "../chain/registry";
import { DiscoveryClient, type FoundProposal } from "../discovery/client";
import { Dialogs } from "../dialog/dialogs";
import type { IdentityKey } from "../identity/key";
import { silentLogger, type Logger } from "../log/logger";
import type { ProposalFilter } from "../proposal/filter";
import { directContactOf, parseSignedProposal, type SignedProposal, unreachableReason } from "../proposal/proposal";
import { announcedAddressesOf } from "../session/offer-addresses";
import { SessionError, SessionRefusedError } from "../session/errors";
import { ConsumerSessions } from "../session/consumer";
import type { ConsumerSession, RelayLeg } from "../session/consumer-session";
import type { ConsumerService, SessionProtection } from "../session/service";
import { ConsumerVaultClient } from "../chain/vault";
import type { ChainConnection } from "../chain/connect";
import { ConsumerPayments } from "../payments/consumer-payments";
import type { SessionPathRecord, SessionStore } from "../store/session-store";
import type { IssuedPromiseStore } from "../store/issued-promise-store";
import { ConsumerPromises } from "../payments/consumer-promises";
import type { RelayOpener } from "../session/consumer";
import { ConnectStages } from "../session/stages";
import { RelayConsumerService, type RelayTunnel } from "../services/relay/consumer";
import { orderRelays } from "./relay-choice";
import { openTcpRelayLeg } from "./tcp-relay-leg";

/** How many relays a connect tries before it gives up. */
const RELAYS_TRIED = 3;
import crypto from "node:crypto";
import type { OwnReceipts } from "../store/own-receipts";
import type { Stage } from "../quality/receipt";
import {
  checkSize,
  ConsumerReceipts,
  orderCandidates,
  failedAttempt,
  type PendingReceipt,
  type StageOutcome,
  sessionReceipt,
  stageOfCheck,
  stageOfError,
} from "./consumer-receipts";

export interface ConsumerNodeOptions {
  key: IdentityKey;
  brokerUrls: string[];
  /** How its own broker connection logs in (unused with `dialogs`). Default none: the broker's node role. */
  brokerCredentials?: BrokerCredentials;
  /** Discovery replicas, tried in order. */
  discoveryUrls: string[];
  registry: IdentityRegistryClient;
  /**
   * Dialogs to share with a provider node of the same identity in the same process (the daemon):
   * one identity listens on one subject. Without them the consumer opens its own broker connection.
   */
  dialogs?: Dialogs;
  /** Payments: the consumer answers invoices with promises on this chain. */
  conn?: ChainConnection;
  /** Where sessions are recorded (started, ended with bytes and the amount promised). */
  history?: SessionStore;
  /** How long a session outlives broker silence (config outageToleranceMs). */
  outageToleranceMs?: number;
  /** Direct channels with providers (config stunServers); none: the broker carries every session. */
  direct?: DirectPeering;
  /** The node's own reachability says UDP gets nothing back here: a session's socket is not measured again (session/udp-blocked.ts). */
  knownUdpBlocked?: () => boolean;
  /** Where the promises this consumer signs are kept (its cumulative figure per provider, across sessions). */
  promises?: IssuedPromiseStore;
  /**
   * The consumer's own country (ISO 3166-1 alpha-2, config `country`): a relay there is picked
   * first. None: the provider's country first, as before (relay-choice.ts).
   */
  country?: string;
  /** Where its own session receipts are kept (docs/quality.md): the evidence it prefers when it picks a provider. */
  receipts?: OwnReceipts;
  log?: Logger;
}

/**
 * What `connect` looks for: a provider by id, or the cheapest proposal that matches filters. The
 * filter's price limits are also sent to the provider, which refuses if its price is above them.
 */
export interface ConnectTarget {
  provider?: string;
  filter?: ProposalFilter;
  service: ConsumerService;
  /** Kill switch, DNS and IPv6 handling for this connection (node/consumer-protection). */
  protection?: SessionProtection;
  /** Providers not to pick from discovery (a reconnect skips the ones that just failed). */
  exclude?: string[];
  /** Beside the current connection, not instead of it (the proxy: one local port per connection). */
  alongside?: boolean;
  /** Through a relay even when a direct path may exist. */
  viaRelay?: boolean;
  /**
   * Without a provider: how long the connect may try candidates, one after another, when a stage
   * fails (docs/quality.md). Default 30 s; at most `maxCandidates` (default 5) are tried.
   */
  budgetMs?: number;
  maxCandidates?: number;
  /**
   * A prober's connect (docs/quality.md "Probers"): to the provider named, with the same messages,
   * payments and stage checks as any consumer's (the provider cannot tell the two apart); only what
   * is signed at the end differs: probe results (POST /v1/probes) instead of receipts.
   */
  probe?: boolean;
}

/** A candidate that failed during one connect, before the one that worked. */
export interface FailedCandidate {
  provider: string;
  stage: Stage;
  message: string;
}

export interface Connection {
  session: ConsumerSession;
  payments?: ConsumerPayments;
  proposal: FoundProposal;
  /** ms spent in each phase: discovery lookup, negotiation (create → accepted), tunnel up, confirm. */
  phases: { discovery: number; negotiation: number; tunnel: number; confirm: number };
  /** Candidates that failed first in the same connect (fallback). */
  fellOver: FailedCandidate[];
  /** The stages this connection's checks reached, and the one they failed at (a connect to a named provider keeps a failed check). */
  checked?: StageOutcome;
  /** Resolves once the session ended and its receipts (or probe results) are signed and sent. */
  written?: Promise<void>;
}

/** A running consumer: finds proposals in discovery, negotiates sessions, holds the tunnel. */
export class ConsumerNode {
  readonly dialogs: Dialogs;
  /** The broker connection this node owns (none when its dialogs are shared). */
  readonly #broker?: Broker;
  readonly sessions: ConsumerSessions;
  readonly discovery: DiscoveryClient;
  readonly vault?: ConsumerVaultClient;
  readonly promises?: ConsumerPromises;
  readonly receipts: ConsumerReceipts;
  current?: Connection;
  /** Connections beside the current one (the proxy's, each on its own port), until their sessions end. */
  readonly alongside = new Set<Connection>();
  readonly #paid = new WeakMap<ConsumerSession, ConsumerPayments | undefined>();

  constructor(private readonly o: ConsumerNodeOptions) {
    const log = o.log ?? silentLogger;
    if (o.dialogs) this.dialogs = o.dialogs;
    else {
      this.#broker = new Broker({ servers: o.brokerUrls, name: "myst-consumer", credentials: o.brokerCredentials, log });
      this.dialogs = new Dialogs({ broker: this.#broker, key: o.key, directory: o.registry, log });
    }
    this.sessions = new ConsumerSessions(this.dialogs, { log, outageToleranceMs: o.outageToleranceMs, direct: o.direct, knownUdpBlocked: o.knownUdpBlocked });
    this.discovery = new DiscoveryClient(o.discoveryUrls, (id) => o.registry.publicKeyOf(id));
    if (o.conn) {
      this.vault = new ConsumerVaultClient(o.conn);
      this.promises = new ConsumerPromises(o.key, this.vault, o.promises);
    }
    this.receipts = new ConsumerReceipts({ key: o.key, discovery: this.discovery, promises: this.promises, own: o.receipts, log });
  }

  async start(): Promise<void> {
    if (!this.#broker) return;
    await this.#broker.start();
    await this.dialogs.start();
  }

  async stop(): Promise<void> {
    await this.current?.session.destroy("consumer stopping");
    await Promise.all([...this.alongside].map((c) => c.session.destroy("consumer stopping")));
    if (!this.#broker) return;
    this.dialogs.stop();
    await this.#broker.stop();
  }

  /**
   * Connects to the provider named, or to the best match of the filters: candidates in order of the
   * consumer's own evidence, then discovery's quality score, then price; when a stage fails (no
   * answer, refused, no tunnel, no first byte, a tenth of the bandwidth), the next candidate, until
   * one works or the budget is spent. Every attempt ends in a signed receipt (docs/quality.md).
   */
  async connect(target: ConnectTarget): Promise<Connection> {
    if (!target.alongside && this.current && this.current.session.state !== "ended")
      throw new SessionError("ALREADY_CONNECTED", `already connected (session ${this.current.session.id})`);
    const t0 = Date.now();
    const candidates = target.provider ? [await this.#find(target)] : await this.#candidates(target);
    const t1 = Date.now();
    const deadline = t0 + (target.budgetMs ?? 30_000);
    const failed: PendingReceipt[] = [];
    const fellOver: FailedCandidate[] = [];
    const kind = target.probe ? "probe" : "receipt";
    let lastError: unknown;
    for (const found of candidates.slice(0, target.provider ? 1 : (target.maxCandidates ?? 5))) {
      const left = deadline - Date.now();
      if (fellOver.length > 0 && left < 1000) break;
      const attemptStarted = Date.now();
      const stages = new ConnectStages(t0);
      stages.mark("candidates found (discovery)", t1);
      let session: ConsumerSession;
      try {
        // Nothing on chain here: the consumer's one vault pays any provider, one never used before included.
        session = await this.sessions.connect({
          proposal: found.signed,
          service: target.service,
          maxPrice: priceLimit(target.filter),
          protection: target.protection,
          relay: (o) => this.#openRelay(o, target.filter),
          stages,
          ...(target.viaRelay ? { viaRelay: true } : {}),
          ...(target.provider && !target.probe ? {} : { timeoutMs: Math.max(1000, Math.min(10_000, left)) }),
        });
      } catch (err) {
        if (!providerFault(err)) throw err;
        lastError = err;
        const outcome = stageOfError(err);
        failed.push(failedAttempt(found, outcome, `a-${crypto.randomBytes(8).toString("hex")}`, attemptStarted));
        fellOver.push({ provider: found.proposal.provider, stage: outcome.failed ?? "dialog", message: (err as Error).message });
        this.o.log?.info({ provider: found.proposal.provider, stage: outcome.failed, err: (err as Error).message }, "candidate failed; trying the next");
        continue;
      }
      const payments = this.promises ? new ConsumerPayments(session, this.promises, { log: this.o.log }) : undefined;
      payments?.start();
      // The stages after the tunnel: a first byte and a short throughput test, where the tunnel can.
      const advertised = found.proposal.bandwidthMbps;
      const check = session.tunnel.check ? await session.tunnel.check(checkSize(advertised)).catch(() => undefined) : undefined;
      const outcome = session.tunnel.check ? stageOfCheck(check ?? { firstByteMs: null, bytes: 0, ms: 0 }, advertised) : stageOfCheck(undefined, advertised);
      stages.mark("first byte and throughput checked");
      this.o.log?.info({ sessionId: session.id, path: session.path.tunnel, transport: session.path.relay?.transport, stagesMs: stages }, "connect stages");
      const t = session.timings;
      const pending = sessionReceipt(found, { id: session.id, path: session.path.tunnel, connectMs: t.tunnelUp - t.started }, outcome, check);
      if (outcome.failed && !target.provider) {
        fellOver.push({ provider: found.proposal.provider, stage: outcome.failed, message: `the ${outcome.failed} check failed` });
        lastError = new SessionError("STAGE_FAILED", `provider ${found.proposal.provider} failed the ${outcome.failed} check`);
        await session.destroy(`the ${outcome.failed} check failed`);
        failed.push({ ...pending, durationMs: Date.now() - attemptStarted });
        continue;
      }
      const connection: Connection = {
        session,
        payments,
        proposal: found,
        phases: { discovery: t1 - t0, negotiation: t.accepted - t.started, tunnel: t.tunnelUp - t.accepted, confirm: t.confirmed - t.tunnelUp },
        fellOver,
        checked: outcome,
      };
      if (target.alongside) {
        this.alongside.add(connection);
        void session.ended.then(() => this.alongside.delete(connection));
      } else this.current = connection;
      this.#record(connection);
      // The receipts are signed when the session ends: then its money is known, and backs the failures too.
      connection.written = session.ended.then(async () => {
        const stats = session.tunnel.stats();
        const promisedWei = payments?.promised ?? 0n;
        await this.receipts.write(pending, { promisedWei, bytesIn: stats.bytesIn, bytesOut: stats.bytesOut, durationMs: Date.now() - t.confirmed }, kind);
        for (const f of failed) await this.receipts.write(f, undefined, kind);
      });
      return connection;
    }
    // A prober's failed probe is its result: sent before the connect says it failed.
    if (target.probe) await Promise.all(failed.map((f) => this.receipts.write(f, undefined, kind)));
    else for (const f of failed) void this.receipts.write(f, undefined, kind);
    if (fellOver.length > 1 || (fellOver.length === 1 && candidates.length > 1)) {
      const tried = fellOver.map((f) => `${f.provider} (${f.stage})`).join(", ");
      throw new SessionError("CANDIDATES_FAILED", `no candidate worked: ${tried}; last: ${(lastError as Error).message}`, { cause: lastError });
    }
    throw lastError ?? new SessionError("NO_PROPOSAL", "no candidate to try");
  }

  /**
   * A relay for a session no punch can join: the cheapest relay proposal within the consumer's
   * price limit, one in the consumer's own country first, then one in the provider's (relay-choice.ts); a paid session with it (its credential comes
   * only inside one), an allocation over UDP (TLS first when UDP gets nothing back), payments from
   * the same vault as the provider's.
   */
  async #openRelay(o: Parameters<RelayOpener>[0], filter: ProposalFilter | undefined): Promise<RelayLeg> {
    const { proposals } = await this.discovery.search(
      {
        serviceType: "relay",
        ...(filter?.maxPricePerGiB !== undefined ? { maxPricePerGiB: filter.maxPricePerGiB } : {}),
        ...(filter?.maxPricePerHour !== undefined ? { maxPricePerHour: filter.maxPricePerHour } : {}),
      },
      { limit: 50 },
    );
    o.stages?.mark("relays found (discovery)");
    const relays = orderRelays(proposals, { consumerCountry: this.o.country, providerCountry: o.providerCountry, avoid: o.avoid });
    if (relays.length === 0) throw new SessionError("NO_RELAY", "no relay proposal in discovery meets the price limit");
    const provider = await this.#announcing(o.providerProposal, o.peers);
    const failures: string[] = [];
    for (const found of relays.slice(0, RELAYS_TRIED)) {
      if (o.tcp) {
        try {
          const paid = (service: ConsumerService) => this.#paidRelaySession(found, service, filter);
          const held = o.heldHere ? { peers: o.peers, provider, current: () => this.discovery.get(found.proposal.provider, "relay") } : undefined;
          return await openTcpRelayLeg(found, paid, (s) => this.#paid.get(s)?.promised ?? 0n, held);
        } catch (err) {
          failures.push(`${found.proposal.provider}: ${(err as Error).message}`);
          continue;
        }
      }
      // UDP blocked here: TURN over TLS on the relay's port (443 passes where only web traffic does), plain TCP if TLS fails.
      const service = new RelayConsumerService({
        transports: o.udpBlocked ? ["tls", "tcp", "udp"] : ["udp", "tls", "tcp"],
        ...(o.passage ? { admit: o.passage.admit } : {}), // its allocation owns the way through the kill switch, given back as it ends
        // The TURN servers the relay names in its answer must be at the address its signed proposal gives.
        relayAddresses: (directContactOf(found.proposal)?.candidates ?? []).filter((c) => c.kind !== "punch-only").map((c) => c.address),
        tunnelPort: o.tunnelPort,
        peers: o.peers,
        provider,
        log: this.o.log,
      });
      let session: ConsumerSession | undefined; // destroyed when what follows its connect fails
      try {
        session = await this.sessions.connect({ proposal: found.signed, service, maxPrice: priceLimit(filter), direct: false });
        o.stages?.mark("relay accepted (credential)", session.timings.accepted);
        o.stages?.mark("TURN allocated", session.timings.tunnelUp);
        o.stages?.mark("relay session confirmed", session.timings.confirmed);
        const payments = this.promises ? new ConsumerPayments(session, this.promises, { log: this.o.log }) : undefined;
        payments?.start();
        this.#record({ session, payments, proposal: found, phases: { discovery: 0, negotiation: 0, tunnel: 0, confirm: 0 }, fellOver: [] });
        const [tunnel, opened] = [session.tunnel as RelayTunnel, session];
        return {
          provider: session.provider,
          proposal: found.signed,
          peers: o.peers,
          relayed: tunnel.relayed,
          local: tunnel.local,
          outside: tunnel.outside,
          transport: tunnel.transport,
          permit: (addresses) => tunnel.permit(addresses),
          onDown: (listener) => void opened.ended.then(listener),
          close: (reason) => opened.destroy(reason),
          stats: () => tunnel.stats(),
          capBy: (wireGuard, base) => tunnel.capBy(() => wireGuard.stats(), base, wireGuard.refresh && (() => wireGuard.refresh!())),
          promised: () => payments?.promised ?? 0n,
        };
      } catch (err) {
        failures.push(`${found.proposal.provider}: ${(err as Error).message}`);
        await session?.destroy("the relay could not be used").catch(() => undefined);
      }
    }
    throw new SessionError("NO_RELAY", `no relay could be used (${failures.join("; ")})`);
  }

  /**
   * The provider's signed proposal a relay checks the named peers against: the one the session
   * began with, or discovery's current one when that one is about to expire (a move late in a long
   * session) or does not announce every peer (the provider's network changed since).
   */
  async #announcing(signed: SignedProposal, peers: string[]): Promise<SignedProposal> {
    const { proposal } = parseSignedProposal(signed);
    const announced = announcedAddressesOf(proposal);
    if (proposal.expiresAt - Date.now() > 60_000 && peers.every((p) => announced.includes(p))) return signed;
    const found = await this.discovery.get(proposal.provider, proposal.serviceType).catch(() => null);
    return found?.signed ?? signed;
  }

  /** A paid session with a relay through `service`, recorded and paid like any (a TCP relay's, whose allocation the provider holds). */
  async #paidRelaySession(found: FoundProposal, service: ConsumerService, filter: ProposalFilter | undefined): Promise<ConsumerSession> {
    const session = await this.sessions.connect({ proposal: found.signed, service, maxPrice: priceLimit(filter), direct: false });
    const payments = this.promises ? new ConsumerPayments(session, this.promises, { log: this.o.log }) : undefined;
    payments?.start();
    this.#paid.set(session, payments);
    this.#record({ session, payments, proposal: found, phases: { discovery: 0, negotiation: 0, tunnel: 0, confirm: 0 }, fellOver: [] });
    return session;
  }

  #record(c: Connection): void {
    const history = this.o.history;
    if (!history) return;
    const { session } = c;
    history.started({
      id: session.id,
      role: "consumer",
      peer: session.provider,
      serviceType: c.proposal.proposal.serviceType,
      startedAt: session.timings.started,
    });
    // The path it took (relayed: through which relay), kept with the history; again when the relay changes.
    const recordPath = () => {
      try {
        history.path(session.id, storedPath(session.path));
      } catch (err) {
        this.o.log?.warn({ sessionId: session.id, err: (err as Error).message }, "the session's path was not recorded in the history");
      }
    };
    recordPath();
    session.on("path", recordPath);
    void session.ended.then((reason) => {
      const stats = session.tunnel.stats();
      history.ended(session.id, { endedAt: Date.now(), reason, bytes: stats.bytesIn + stats.bytesOut, promised: c.payments?.promised ?? 0n });
    });
  }

  /** The proposal `connect` would take first for `target` (a reconnect picks first, to know whom it tried). */
  async pick(target: Pick<ConnectTarget, "provider" | "filter" | "service" | "exclude">): Promise<FoundProposal> {
    return target.provider ? this.#find(target) : (await this.#candidates(target))[0];
  }

  /**
   * The proposals matching the filters, best first: the consumer's own evidence of the last 24 h
   * (a provider that worked for it first, one whose last attempt failed last), then discovery's
   * score (unrated providers at the neutral 50), then price.
   */
  async #candidates(target: Pick<ConnectTarget, "provider" | "filter" | "service" | "exclude">): Promise<FoundProposal[]> {
    const serviceType = target.service.type;
    const excluded = new Set((target.exclude ?? []).map((p) => p.toLowerCase()));
    const matching = await this.discovery
      .search({ ...target.filter, serviceType, sort: "quality" }, { limit: 50 })
      .then((page) => page.proposals.filter((p) => !excluded.has(p.proposal.provider.toLowerCase())));
    // A proposal whose tunnel cannot reach its provider (OpenVPN behind a home router) is never picked; the proxy's goes through a relay.
    const proposals = matching.filter((p) => target.service.relayedTcp || !unreachableReason(p.proposal));
    if (proposals.length === 0)
      throw new SessionError(
        matching.length > 0 ? "PROVIDER_UNREACHABLE" : "NO_PROPOSAL",
        matching.length > 0
          ? `${matching.length} ${serviceType} proposal(s) match the filters, but none can be reached: ${unreachableReason(matching[0].proposal)}`
          : `no ${serviceType} proposal matches the filters${excluded.size ? ` (besides ${excluded.size} provider(s) that just failed)` : ""}`,
      );
    return orderCandidates(proposals, this.o.receipts?.evidence(serviceType, Date.now() - 86_400_000) ?? new Map());
  }

  async #find(target: Pick<ConnectTarget, "provider" | "filter" | "service" | "exclude">): Promise<FoundProposal> {
    const serviceType = target.service.type;
    if (target.provider) {
      const found = await this.discovery.get(target.provider, serviceType);
      if (!found) {
        // Discovery lists none (a provider withdraws outside its schedule or at its cap): ask the provider why.
        const why = await this.sessions.availability(target.provider, serviceType);
        if (why && !why.offered && why.refusal) throw new SessionRefusedError(why.refusal, why.message);
        throw new SessionError("NO_PROPOSAL", `provider ${target.provider} has no live ${serviceType} proposal in discovery`);
      }
      return found;
    }
    return (await this.#candidates(target))[0];
  }
}

/** What `status` shows of a connection (JSON-ready: amounts in wei as strings). */
export function connectionStatus(c: Connection) {
  const stats = c.session.tunnel.stats();
  const since = c.session.timings.confirmed;
  return {
    state: c.session.state === "active" ? ("connected" as const) : ("disconnected" as const),
    sessionId: c.session.id,
    provider: c.session.provider,
    serviceType: c.proposal.proposal.serviceType,
    country: c.proposal.proposal.location.country,
    ipType: c.proposal.proposal.location.ipType,
    pricePerHourWei: c.proposal.proposal.price.perHour,
    pricePerGiBWei: c.proposal.proposal.price.perGiB,
    since: new Date(since).toISOString(),
    durationSeconds: Math.round((Date.now() - since) / 1000),
    bytesIn: stats.bytesIn,
    bytesOut: stats.bytesOut,
    ...(c.session.tunnel.listen ? { listen: c.session.tunnel.listen } : {}),
    phasesMs: c.phases,
    path: pathView(c.session.path, c.session.relay),
    promisedWei: (c.payments?.promised ?? 0n).toString(),
    invoices: c.payments?.invoices ?? 0,
    ...(c.fellOver.length ? { fellOver: c.fellOver.map((f) => ({ ...f })) } : {}),
    ...(c.session.endReason ? { endReason: c.session.endReason } : {}),
    // The provider did not take the last promise (its store is full…): its code and words.
    ...(c.payments?.providerRefusal ? { paymentRefused: { ...c.payments.providerRefusal } } : {}),
  };
}
export type ConnectionStatus = ReturnType<typeof connectionStatus>;

/** How the session travels, in the API's words (docs/direct-channel.md): the tunnel's path and the messages' channel. */
function pathView(p: ConsumerSession["path"], relay?: RelayLeg) {
  return {
    tunnel: p.tunnel,
    channel: p.channel,
    ...(p.direct ? { direct: { kind: p.direct.kind, address: p.direct.address, port: p.direct.port, tookMs: p.direct.tookMs } } : {}),
    ...(p.relay ? { relay: { ...p.relay } } : {}),
    ...(relay ? { relayBytes: relay.stats().bytesIn + relay.stats().bytesOut, relayPromisedWei: relay.promised().toString() } : {}),
  };
}

/** A session's path as the history keeps it: the tunnel's path and the relay (the channel changes by the second, and is not kept). */
function storedPath(p: ConsumerSession["path"]): SessionPathRecord {
  return { tunnel: p.tunnel, ...(p.relay ? { relay: { ...p.relay } } : {}) };
}

const NO_LIMIT = (2n ** 255n).toString();
/** The price limit to send with `session.create`, from the filter's limits (none when it has none). */
function priceLimit(filter: ProposalFilter | undefined): { perHour: string; perGiB: string } | undefined {
  if (filter?.maxPricePerHour === undefined && filter?.maxPricePerGiB === undefined) return undefined;
  return { perHour: filter.maxPricePerHour?.toString() ?? NO_LIMIT, perGiB: filter.maxPricePerGiB?.toString() ?? NO_LIMIT };
}

/** Whether a failed attempt is the provider's to answer for (and the next candidate worth trying), not ours. */
function providerFault(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return (
    !["ALREADY_CONNECTED", "ALREADY_CONNECTING", "BAD_REQUEST", "KILL_SWITCH_FAILED", "INTERNAL"].includes(code ?? "INTERNAL") ||
    err instanceof SessionRefusedError
  );
}
