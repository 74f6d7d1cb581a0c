import type { FastifyInstance } from "fastify";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Broker } from "../broker/broker";
import { isMystError } from "../errors/MystError";
import type { PublicKeyDirectory } from "../identity/protocol-signature";
import { silentLogger, type Logger } from "../log/logger";
import { parseSignedProposal, ProposalError, type Proposal, type SignedProposal } from "../proposal/proposal";
import { DISCOVERY_SUBJECTS, verifyUnregister, type SignedUnregister } from "./announcements";
import { buildDiscoveryApp, type DiscoveryHealth } from "./http-api";
import { compileAllSchemas, type JsonApp } from "../http/app";
import { IndexRejection, ProposalIndex, type UpsertResult } from "./index";
import { proposalRecord, type StoredRecord } from "./record";
import { markedRecord, RecordRejected, verifyStoredRecord } from "./record-check";
import { RecordMarker } from "./record-mark";
import { rankedKeeperOf } from "./ranked-keeper";
import { SignatureWorkers } from "./signature-workers";
import { type DiscoveryHandlers, subscribeDiscovery } from "./subscriptions";
import { LocalProposalStore, type ProposalStore, type StoreChange, type StoreReset } from "./store";
import { QualityBook } from "./quality";
import type { QualityReadLimits } from "./quality-reads";
import { LocalReceiptStore, type ReceiptLimits, type ReceiptStore } from "./receipt-store";
import type { PromiseCheck, ScoreParams } from "../quality/score";
import type { ProbeParams } from "../quality/probe-score";

export { DiscoveryBusyError } from "./subscriptions";

export interface DiscoveryServiceOptions {
  broker: Broker;
  directory: PublicKeyDirectory;
  host?: string;
  /** 0 picks a free port. Default 4050. */
  port?: number;
  /**
   * Where the index lives. Default: in this process only (a replica on its own). A shared store
   * (JetStreamProposalStore) makes every replica on it serve the same proposals.
   */
  store?: ProposalStore;
  /** A proposal not pinged for this long disappears: the local store's TTL (a shared store has its own). Default 90 s. */
  ttlMs?: number;
  /**
   * The replicas' key (record-mark.ts): this replica marks what it writes with it, and trusts a value
   * carrying its mark without checking the signature again (a restart, or a replica of the same
   * service, loads in seconds). Without one, every value loaded or watched is verified in full.
   */
  replicaKey?: Uint8Array;
  /** The threads that check signatures; default: a pool with one thread per core, started and stopped with the service. */
  signatureWorkers?: SignatureWorkers;
  /** Announcements being verified and written at once; more are refused with DISCOVERY_BUSY. Default 4096. */
  maxInFlight?: number;
  /** Largest accepted request body. Default 16 KiB. */
  bodyLimit?: number;
  maxProposals?: number;
  /** Service types one provider may have in the index at once; more are refused (PROVIDER_LIMIT). Default 16. */
  maxServiceTypesPerProvider?: number;
  log?: Logger;
  version?: string;
  /**
   * Receipts and scores (docs/quality.md). `promiseCheck` checks a receipt's promise in the vault's
   * EIP-712 domain (without one, no receipt weighs anything); `store`: where receipts live (default in
   * this process; a JetStreamReceiptStore shares them between replicas).
   */
  quality?: {
    promiseCheck?: PromiseCheck;
    store?: ReceiptStore;
    params?: ScoreParams;
    probeParams?: ProbeParams;
    limits?: ReceiptLimits;
    perSignerPerHour?: number;
    /** What `GET /v1/quality/{provider}` may cost: per client address, reads at once, its cache (quality-reads.ts). */
    reads?: QualityReadLimits;
  };
}

/** NATS queue group of the replicas on a shared store: each announcement reaches one of them. */
export const DISCOVERY_QUEUE = "myst-discovery";

/**
 * The discovery service: an index of signed proposals fed by NATS announcements and HTTP posts,
 * queried over HTTP. On a shared store (JetStream) the replicas form a queue group: whichever
 * replica gets an announcement verifies it (signatures on a pool of worker threads) and writes it to
 * the store; every replica loads the store at start, watches it, and reports ready only then.
 */
export class DiscoveryService {
  readonly index: ProposalIndex;
  readonly quality: QualityBook;
  readonly metrics = new Registry();
  readonly store: ProposalStore;
  readonly #o: DiscoveryServiceOptions;
  readonly #log: Logger;
  readonly #workers: SignatureWorkers;
  readonly #marker?: RecordMarker;
  #app?: FastifyInstance;
  #subs: { unsubscribe(): void }[] = [];
  #sweeper?: NodeJS.Timeout;
  #url?: string;
  #ready = false;
  readonly #readyWaiters: (() => void)[] = [];
  /** Store values being verified, and who waits for none to be (the first load). */
  #verifying = 0;
  readonly #settledWaiters: (() => void)[] = [];
  /** The last time someone else purged the store or deleted its stream. */
  #reset?: StoreReset & { at: number };
  #checkingStore = false;
  /** Counts the times the store's stream was made again (its revisions then start again from 1). */
  #storeEpoch = 0;
  /** Rejected store values logged in the current minute (a flood is counted, not logged line by line). */
  #rejectLog = { minute: 0, logged: 0 };
  readonly #rejectedRecords = new Counter({
    name: "myst_discovery_store_records_rejected_total",
    help: "values of the shared store not indexed, by reason (unverifiable: someone else wrote them)",
    labelNames: ["reason"],
    registers: [this.metrics],
  });
  readonly #checkedRecords = new Counter({
    name: "myst_discovery_store_records_verified_total",
    help: "values of the shared store verified and indexed, by how their signature was vouched for: by the replicas' mark, or checked here",
    labelNames: ["by"],
    registers: [this.metrics],
  });
  readonly #announcements = new Counter({
    name: "myst_discovery_announcements_total",
    help: "announcements by source and result",
    labelNames: ["source", "result"],
    registers: [this.metrics],
  });
  readonly #receipts = new Counter({
    name: "myst_discovery_receipts_total",
    help: "session receipts (and probers' probe results: source probe) by source and result (stored, duplicate, or the rejection's code)",
    labelNames: ["source", "result"],
    registers: [this.metrics],
  });
  readonly #queries = new Histogram({
    name: "myst_discovery_query_seconds",
    help: "query handling time",
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1],
    registers: [this.metrics],
  });

  constructor(options: DiscoveryServiceOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.store = options.store ?? new LocalProposalStore(options.ttlMs ?? 90_000);
    this.#workers = options.signatureWorkers ?? new SignatureWorkers();
    if (options.replicaKey) this.#marker = new RecordMarker(options.replicaKey);
    this.index = new ProposalIndex(options.ttlMs ?? 90_000, options.maxProposals, options.maxServiceTypesPerProvider);
    const q = options.quality ?? {};
    this.quality = new QualityBook({
      directory: options.directory,
      promiseCheck: q.promiseCheck ?? (() => false),
      store: q.store ?? new LocalReceiptStore(q.limits),
      params: q.params,
      probeParams: q.probeParams,
      limits: q.limits,
      perSignerPerHour: q.perSignerPerHour,
      log: this.#log,
    });
    const index = this.index;
    new Gauge({
      name: "myst_discovery_proposals",
      help: "live proposals in the index",
      registers: [this.metrics],
      collect() {
        this.set(index.size);
      },
    });
    const service = this;
    new Gauge({
      name: "myst_discovery_ready",
      help: "1 once the replica has loaded the whole store",
      registers: [this.metrics],
      collect() {
        this.set(service.ready ? 1 : 0);
      },
    });
  }

  /** The base URL, once started. */
  get url(): string {
    if (!this.#url) throw new Error("not started");
    return this.#url;
  }

  /** Whether the whole store is loaded (and announcements are taken). */
  get ready(): boolean {
    return this.#ready;
  }

  /** Resolves once the replica is ready. */
  whenReady(): Promise<void> {
    return this.#ready ? Promise.resolve() : new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /** A signed receipt from a consumer (NATS or HTTP): verified, deduplicated, limited per signer, stored. */
  async #takeReceipt(input: unknown, source: "nats" | "http" | "probe"): Promise<"stored" | "duplicate"> {
    try {
      const result = await this.quality.ingest(input, source === "probe" ? "probe" : "receipt");
      this.#receipts.inc({ source, result });
      return result;
    } catch (err) {
      this.#receipts.inc({ source, result: isMystError(err) ? err.code : "INTERNAL" });
      throw err;
    }
  }

  /** Verifies one signed proposal (from any source) and writes it to the store. */
  async ingest(input: unknown, source: "nats" | "http"): Promise<UpsertResult> {
    try {
      const { signed, proposal } = await this.#verify(input);
      const result = await this.#write(
        () => proposalRecord(signed, proposal),
        (now) => this.index.decide(proposal, signed.proposal, now),
      );
      this.#announcements.inc({ source, result: result! });
      return result!;
    } catch (err) {
      const code = isMystError(err) ? err.code : "INTERNAL";
      this.#announcements.inc({ source, result: code });
      throw err;
    }
  }

  /**
   * Withdraws a provider's proposal for a service type, as its unregister signed at `at` asks; the
   * signed unregister is stored with it, so every replica can check that the provider asked.
   */
  async withdraw(provider: string, serviceType: string, at: number, signed: SignedUnregister): Promise<boolean> {
    // The stored header is marked as this replica's word: it must say what the signed text says.
    const said = JSON.parse(signed.unregister) as { provider?: string; serviceType?: string; at?: number };
    if (said.provider?.toLowerCase() !== provider.toLowerCase() || said.serviceType !== serviceType || said.at !== at)
      throw new ProposalError("UNREGISTER_MALFORMED", "the withdrawal's provider, service type or time is not the signed unregister's");
    let removes = false;
    const result = await this.#write(
      () => ({ kind: "withdrawal", at, signature: signed.signature, text: signed.unregister }),
      (now) => {
        const d = this.index.decideWithdrawal(provider, serviceType, at, now);
        removes = d?.removes ?? false;
        return d;
      },
    );
    return result !== undefined && removes;
  }

  /** Starts answering HTTP at once ("loading"), loads the store, then takes announcements ("ready"). */
  async start(): Promise<void> {
    // The signature threads themselves start with the first signature to check (signature-workers.ts).
    await this.#workers.start();
    const service = this;
    await this.store.start();
    this.index.ttlMs = this.store.ttlMs;
    const app = await buildDiscoveryApp(
      {
        get ready() {
          return service.ready;
        },
        index: this.index,
        quality: this.quality,
        postReceipt: (body) => this.#takeReceipt(body, "http"),
        postProbe: (body) => this.#takeReceipt(body, "probe"),
        metrics: this.metrics,
        post: async (body) => {
          const result = await this.ingest(body, "http");
          // A shared store already gives it to every replica; replicas on their own hear it over NATS.
          if (result !== "refreshed" && !this.store.shared) this.#o.broker.publish(DISCOVERY_SUBJECTS.register, Buffer.from(JSON.stringify(body)));
          return result;
        },
        health: () => this.#health(),
        queryTimer: () => this.#queries.startTimer(),
      },
      { version: this.#o.version, bodyLimit: this.#o.bodyLimit, log: this.#log, qualityReads: this.#o.quality?.reads },
    );
    this.#app = app;
    this.#url = await app.listen({ host: this.#o.host ?? "127.0.0.1", port: this.#o.port ?? 4050 });
    this.#log.info({ url: this.#url }, "discovery listening; loading the index");
    // A replica answers queries for a long time: its routes' schemas are compiled now, not by its first queries (lazy-schemas.ts).
    compileAllSchemas(app as unknown as JsonApp);

    const t0 = Date.now();
    await this.quality.start();
    this.index.beginBulk();
    try {
      await this.store.watch(
        (c) => this.#takeWatched(c),
        (reset) => this.#onReset(reset),
      );
      // Loaded means verified: what the store held is indexed (or refused) before the replica is ready.
      await this.#settled();
    } finally {
      this.index.endBulk();
    }
    // The order sort=quality walks is made with the load, not by the first ranked query (ranked-keeper.ts).
    rankedKeeperOf(this.index, this.quality).update();
    this.#subscribe();
    await this.#o.broker.flush();
    this.#sweeper = setInterval(() => {
      this.index.sweep();
      this.quality.sweep();
      void this.#checkStore();
    }, 1000).unref();
    this.#ready = true;
    for (const w of this.#readyWaiters.splice(0)) w();
    this.#log.info({ url: this.#url, proposals: this.index.size, loadMs: Date.now() - t0 }, "discovery ready");
  }

  async stop(): Promise<void> {
    this.#ready = false;
    clearInterval(this.#sweeper);
    for (const s of this.#subs.splice(0)) s.unsubscribe();
    await this.#app?.close();
    this.#app = undefined;
    await this.store.stop();
    await this.quality.stop();
    await this.#workers.stop();
  }

  /**
   * Takes a value of the store, whoever wrote it: verified first (record-check.ts, signatures on the
   * worker threads), indexed only if it passes; anything else leaves the index as it was, except for
   * the revision (so the provider's next announcement replaces it). A revision already held (this
   * replica's own write coming back) is not verified again.
   */
  /**
   * `#take` for what the store's watch delivers: a value carrying the replicas' mark is checked and
   * indexed at once, without a promise per value (a load of 100k is nearly all such values).
   */
  #takeWatched(c: StoreChange): void {
    if (c.revision === 0 || c.record === null || c.revision <= this.index.revisionOf(c.key) || !this.#marker) return void this.#take(c);
    let checked: ReturnType<typeof markedRecord>;
    try {
      checked = markedRecord(c.key, c.record, { marker: this.#marker });
    } catch (err) {
      return this.#refuse(c, err instanceof RecordRejected ? err.reason : "unverifiable", (err as Error).message);
    }
    if (!checked) return void this.#take(c);
    this.index.apply(c.key, checked.record, c.revision, c.storedAt);
    this.#checkedRecords.inc({ by: "mark" });
  }

  async #take(c: StoreChange): Promise<void> {
    if (c.revision === 0) {
      // Read just now: the store holds nothing for the key (its TTL passed, or it was purged).
      this.index.apply(c.key, null, 0, c.storedAt);
      return;
    }
    if (c.revision <= this.index.revisionOf(c.key)) return;
    if (c.record === null) return this.#refuse(c, "unreadable", c.unreadable ?? "no record");
    this.#verifying++;
    const epoch = this.#storeEpoch;
    try {
      const { record, by } = await verifyStoredRecord(c.key, c.record, {
        directory: this.#o.directory,
        check: (claimed, bytes, signature, directory) => this.#workers.checkSigner(claimed, bytes, signature, directory),
        marker: this.#marker,
      });
      // A stream made again while this was verified counts its revisions afresh: an old one would hide the new.
      if (epoch === this.#storeEpoch) {
        this.index.apply(c.key, record, c.revision, c.storedAt);
        this.#checkedRecords.inc({ by });
      }
    } catch (err) {
      if (epoch !== this.#storeEpoch) return;
      if (err instanceof RecordRejected) this.#refuse(c, err.reason, err.message);
      else this.#refuse(c, "unverifiable", (err as Error).message);
    } finally {
      if (--this.#verifying === 0) for (const w of this.#settledWaiters.splice(0)) w();
    }
  }

  #refuse(c: StoreChange, reason: string, message: string): void {
    this.index.ignore(c.key, c.revision, c.storedAt);
    this.#rejectedRecords.inc({ reason });
    const minute = Math.floor(Date.now() / 60_000);
    if (this.#rejectLog.minute !== minute) this.#rejectLog = { minute, logged: 0 };
    if (++this.#rejectLog.logged <= 20)
      this.#log.warn({ key: c.key, revision: c.revision, reason, message }, "not indexing a store value that fails verification");
    else if (this.#rejectLog.logged === 21)
      this.#log.warn("more store values fail verification this minute; counted in myst_discovery_store_records_rejected_total");
  }

  /** Resolves once no store value is being verified. */
  #settled(): Promise<void> {
    return this.#verifying === 0 ? Promise.resolve() : new Promise((resolve) => this.#settledWaiters.push(resolve));
  }

  /**
   * Whether the store still holds what this replica indexed: a key below the store's first revision
   * that the store no longer has at all (not replaced by a newer value, not aged out) was purged.
   */
  async #checkStore(): Promise<void> {
    if (this.#checkingStore || !this.store.firstRevision) return;
    this.#checkingStore = true;
    try {
      const first = await this.store.firstRevision();
      const key = this.index.heldBelow(first);
      if (!key) return;
      const now = await this.store.read(key);
      if (now.revision === 0) this.#onReset({ reason: "purged", below: first });
      else await this.#take(now);
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, "could not check the store");
    } finally {
      this.#checkingStore = false;
    }
  }

  /** Someone purged the store or deleted its stream: what is listed stays listed, and is written afresh by the next announcements. */
  #onReset(reset: StoreReset): void {
    this.#reset = { ...reset, at: Date.now() };
    if (reset.below === Number.POSITIVE_INFINITY) this.#storeEpoch++;
    this.index.forgetRevisions(reset.below);
    this.#log.warn({ reason: reset.reason }, "the shared store lost its values; refilling from the providers' next announcements");
  }

  /** What `/health` says about the store: "refilling" for one TTL after a purge or a deleted stream (every live provider announces within it). */
  #storeHealth(): { store: "ok" | "refilling"; store_event?: string } {
    const r = this.#reset;
    if (!r || Date.now() > r.at + this.store.ttlMs) return { store: "ok" };
    const what = r.reason === "stream-deleted" ? "the store's stream was deleted and made again" : "the store was purged";
    return { store: "refilling", store_event: `${what} at ${new Date(r.at).toISOString()}; refilling from the providers' announcements` };
  }

  /** parse → signature (worker thread) → registry → times: verifySignedProposal's checks and codes. */
  async #verify(input: unknown): Promise<{ signed: SignedProposal; proposal: Proposal }> {
    const { signed, proposal } = parseSignedProposal(input);
    const signer = await this.#workers.checkSigner(
      proposal.provider,
      Buffer.from(signed.proposal),
      Buffer.from(signed.signature.slice(2), "hex"),
      this.#o.directory,
    );
    if ("fail" in signer && signer.fail === "bad-signature")
      throw new ProposalError("BAD_SIGNATURE", `the proposal is not signed by its provider ${proposal.provider}`);
    if ("fail" in signer) throw new ProposalError("PROVIDER_UNREGISTERED", `provider ${proposal.provider} is not a registered identity`);
    const now = Date.now();
    if (proposal.expiresAt <= now) throw new ProposalError("PROPOSAL_EXPIRED", `the proposal expired at ${new Date(proposal.expiresAt).toISOString()}`);
    if (proposal.createdAt > now + 60_000) throw new ProposalError("PROPOSAL_FROM_FUTURE", "the proposal was created in the future (clock skew?)");
    return { signed, proposal };
  }

  /**
   * Decides against the index, writes against the store's revision, applies what was written. If
   * another replica wrote the key first, reads it from the store and decides again.
   */
  async #write<R extends string>(
    record: () => StoredRecord,
    decide: (now: number) => { key: string; revision: number; result: R } | null,
  ): Promise<R | undefined> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const d = decide(Date.now());
      if (!d) return undefined;
      const value = this.#marker ? this.#marker.marked(d.key, record()) : record();
      const written = await this.store.write(d.key, value, d.revision);
      if (written !== "conflict") {
        this.index.apply(d.key, value, written.revision, written.storedAt);
        return d.result;
      }
      await this.#take(await this.store.read(d.key));
    }
    throw new IndexRejection("STORE_CONFLICT", "the proposal changed in the store too often while writing it; announce again");
  }

  #subscribe(): void {
    const queue = (shared: boolean) => (shared ? DISCOVERY_QUEUE : undefined);
    const handlers: DiscoveryHandlers = {
      announce: (input) => this.ingest(input, "nats"),
      unregister: async (input) => {
        const u = await verifyUnregister(input, this.#o.directory);
        const removed = await this.withdraw(u.provider, u.serviceType, u.at, input as SignedUnregister);
        this.#announcements.inc({ source: "nats", result: removed ? "unregistered" : "unregister-ignored" });
        return removed ? "removed" : "ignored";
      },
      receipt: (input) => this.#takeReceipt(input, "nats"),
      receiptTooLarge: () => this.#receipts.inc({ source: "nats", result: "RECEIPT_TOO_LARGE" }),
    };
    this.#subs.push(
      ...subscribeDiscovery(this.#o.broker, handlers, {
        announcementQueue: queue(this.store.shared),
        receiptQueue: queue(this.quality.shared),
        maxInFlight: this.#o.maxInFlight ?? 4096,
        log: this.#log,
      }),
    );
  }

  /** `/health`'s view of the broker and the store. */
  #health(): Pick<DiscoveryHealth, "broker" | "store" | "store_event"> {
    return { broker: this.#o.broker.status, ...this.#storeHealth() };
  }
}
