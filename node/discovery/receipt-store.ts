import { connect, DiscardPolicy, type JetStreamClient, type JetStreamManager, type NatsConnection, RetentionPolicy, StorageType, nanos } from "nats";
import { authOptions } from "../broker/broker";
import type { BrokerCredentials } from "../config/broker-credentials";
import { silentLogger, type Logger } from "../log/logger";
import { type EvidenceKind, MAX_SIGNED_RECEIPT_BYTES } from "../quality/receipt";
import { ProposalStoreError } from "./store";

/** A raw signed receipt as the store holds it: the wire bytes, and when the store took it. */
export interface StoredReceipt {
  data: Uint8Array;
  storedAt: number;
}

/**
 * Where discovery keeps the raw signed receipts (port). Replicas append what they verified; every
 * replica loads and follows the whole store, so each computes the same scores. Nothing is ever
 * removed on anyone's request: receipts leave by age, or when one signer's receipts about one
 * provider exceed the per-signer limit (its own oldest go first).
 */
export interface ReceiptStore {
  readonly shared: boolean;
  start(): Promise<void>;
  /** Delivers every stored receipt, resolves once they are delivered, then keeps delivering new ones until stop(). */
  follow(onReceipt: (r: StoredReceipt) => void): Promise<void>;
  /**
   * Appends one receipt (or a prober's probe result: `kind` "probe", kept apart so the per-signer
   * limit counts each kind on its own); "duplicate" when the store already holds its id (a replay).
   */
  append(provider: string, consumer: string, id: string, data: Uint8Array, kind?: EvidenceKind): Promise<"stored" | "duplicate">;
  /** Every stored receipt and probe result about `provider` (lower-case), read back from the store, oldest first. */
  read(provider: string): Promise<StoredReceipt[]>;
  stop(): Promise<void>;
}

export interface ReceiptLimits {
  /** How long a receipt is kept. Default 7 days. */
  maxAgeMs: number;
  /** Receipts one signer may have about one provider; more push out its own oldest. Default 64. */
  perSignerPerProvider: number;
}

export const DEFAULT_RECEIPT_LIMITS: ReceiptLimits = { maxAgeMs: 7 * 86_400_000, perSignerPerProvider: 64 };

/** One replica's receipts, in this process only (a replica without JetStream, and tests). */
export class LocalReceiptStore implements ReceiptStore {
  readonly shared = false;
  readonly #bySubject = new Map<string, { id: string; r: StoredReceipt }[]>();
  readonly #ids = new Set<string>();
  #listener?: (r: StoredReceipt) => void;

  constructor(private readonly limits: ReceiptLimits = DEFAULT_RECEIPT_LIMITS) {}

  async start(): Promise<void> {}

  async follow(onReceipt: (r: StoredReceipt) => void): Promise<void> {
    this.#listener = onReceipt;
  }

  async append(provider: string, consumer: string, id: string, data: Uint8Array, kind: EvidenceKind = "receipt"): Promise<"stored" | "duplicate"> {
    if (this.#ids.has(id)) return "duplicate";
    this.#ids.add(id);
    const subject = receiptSubject(provider, consumer, kind);
    let list = this.#bySubject.get(subject);
    if (!list) this.#bySubject.set(subject, (list = []));
    const r = { data, storedAt: Date.now() };
    list.push({ id, r });
    while (list.length > this.limits.perSignerPerProvider) list.shift();
    this.#listener?.(r);
    return "stored";
  }

  async read(provider: string): Promise<StoredReceipt[]> {
    const prefix = `${RECEIPT_SUBJECT_PREFIX}.${provider}.`;
    const out: StoredReceipt[] = [];
    for (const [subject, list] of this.#bySubject) if (subject.startsWith(prefix)) for (const { r } of list) out.push(r);
    return out.sort((a, b) => a.storedAt - b.storedAt);
  }

  async stop(): Promise<void> {
    this.#listener = undefined;
  }
}

export interface JetStreamReceiptStoreOptions {
  servers: string[];
  credentials?: BrokerCredentials;
  /** Default "myst-receipts". */
  stream?: string;
  limits?: ReceiptLimits;
  replicas?: number;
  log?: Logger;
}

/**
 * Subjects of the receipts stream: `myst.receipts.<provider>.<consumer>`, and a prober's probe results
 * `myst.receipts.<provider>.<prober>.probe`; nodes may not publish there (only replicas, through JetStream).
 */
export const RECEIPT_SUBJECT_PREFIX = "myst.receipts";

/** The stream subject of one signer's receipts (or probe results) about one provider: its own per-signer limit. */
export function receiptSubject(provider: string, signer: string, kind: EvidenceKind): string {
  return `${RECEIPT_SUBJECT_PREFIX}.${provider}.${signer}${kind === "probe" ? ".probe" : ""}`;
}

/**
 * Receipts in a JetStream stream (adapter), one subject per (provider, signer): the stream's
 * `max_msgs_per_subject` is the per-signer limit, its `max_age` the retention, its duplicate window
 * and the receipt's id (`Nats-Msg-Id`) drop replays that arrive together, and the replicas' own
 * view drops later ones (discovery/quality.ts).
 */
export class JetStreamReceiptStore implements ReceiptStore {
  readonly shared = true;
  readonly #o: JetStreamReceiptStoreOptions;
  readonly #log: Logger;
  #nc?: NatsConnection;
  #js?: JetStreamClient;
  #jsm?: JetStreamManager;
  #stopped = false;
  #messages?: { stop(): void };

  constructor(o: JetStreamReceiptStoreOptions) {
    this.#o = o;
    this.#log = o.log ?? silentLogger;
  }

  get stream(): string {
    return this.#o.stream ?? "myst-receipts";
  }

  async start(): Promise<void> {
    const limits = this.#o.limits ?? DEFAULT_RECEIPT_LIMITS;
    try {
      this.#nc = await connect({
        servers: this.#o.servers,
        name: "myst-discovery-receipts",
        reconnect: true,
        maxReconnectAttempts: -1,
        ...authOptions(this.#o.credentials),
      });
      this.#jsm = await this.#nc.jetstreamManager();
      const config = {
        name: this.stream,
        subjects: [`${RECEIPT_SUBJECT_PREFIX}.>`],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        max_age: nanos(limits.maxAgeMs),
        max_msgs_per_subject: limits.perSignerPerProvider,
        max_msg_size: MAX_SIGNED_RECEIPT_BYTES,
        duplicate_window: nanos(Math.min(limits.maxAgeMs, 120_000)),
        num_replicas: this.#o.replicas ?? 1,
      };
      try {
        await this.#jsm.streams.info(this.stream);
        await this.#jsm.streams.update(this.stream, config);
      } catch {
        await this.#jsm.streams.add(config);
      }
      this.#js = this.#nc.jetstream();
    } catch (err) {
      await this.#nc?.close().catch(() => undefined);
      throw new ProposalStoreError("STORE_UNAVAILABLE", `the receipts stream ${this.stream} is unavailable: ${(err as Error).message}`, { cause: err });
    }
  }

  async follow(onReceipt: (r: StoredReceipt) => void): Promise<void> {
    const js = this.#js;
    const jsm = this.#jsm;
    if (!js || !jsm) throw new ProposalStoreError("STORE_UNAVAILABLE", "the receipts store is not started");
    const last = (await jsm.streams.info(this.stream)).state.last_seq;
    let loaded!: () => void;
    const initial = new Promise<void>((resolve) => (loaded = resolve));
    if (last === 0) loaded();
    const consumer = await js.consumers.get(this.stream);
    const messages = await consumer.consume();
    this.#messages = messages;
    void (async () => {
      try {
        for await (const m of messages) {
          onReceipt({ data: m.data, storedAt: Math.floor(m.info.timestampNanos / 1e6) });
          if (m.seq >= last || m.info.pending === 0) loaded();
        }
      } catch (err) {
        if (!this.#stopped) this.#log.warn({ err: (err as Error).message }, "following the receipts stream ended");
      }
      loaded();
    })();
    // A stream whose newest messages aged out meanwhile never delivers `last`: pending 0 says so too.
    await initial;
  }

  async append(provider: string, consumer: string, id: string, data: Uint8Array, kind: EvidenceKind = "receipt"): Promise<"stored" | "duplicate"> {
    if (!this.#js) throw new ProposalStoreError("STORE_UNAVAILABLE", "the receipts store is not started");
    try {
      const ack = await this.#js.publish(receiptSubject(provider, consumer, kind), data, { msgID: id });
      return ack.duplicate ? "duplicate" : "stored";
    } catch (err) {
      throw new ProposalStoreError("STORE_UNAVAILABLE", `could not store a receipt: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Reads one provider's subjects back from the stream's disk (an ordered consumer filtered to
   * `myst.receipts.<provider>.>`): the replicas keep only scoring rows in memory (score-rows.ts).
   */
  async read(provider: string): Promise<StoredReceipt[]> {
    const js = this.#js;
    const jsm = this.#jsm;
    if (!js || !jsm) throw new ProposalStoreError("STORE_UNAVAILABLE", "the receipts store is not started");
    const filter = `${RECEIPT_SUBJECT_PREFIX}.${provider}.>`;
    try {
      const counts = (await jsm.streams.info(this.stream, { subjects_filter: filter })).state.subjects ?? {};
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      if (total === 0) return [];
      const consumer = await js.consumers.get(this.stream, { filterSubjects: filter });
      const messages = await consumer.consume();
      // Receipts that age out meanwhile never arrive: the read ends after 5 s whatever it has.
      const timer = setTimeout(() => messages.stop(), 5000);
      const out: StoredReceipt[] = [];
      for await (const m of messages) {
        out.push({ data: m.data, storedAt: Math.floor(m.info.timestampNanos / 1e6) });
        if (m.info.pending === 0 || out.length >= total) break;
      }
      clearTimeout(timer);
      messages.stop();
      return out;
    } catch (err) {
      throw new ProposalStoreError("STORE_UNAVAILABLE", `could not read the receipts about ${provider}: ${(err as Error).message}`, { cause: err });
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#messages?.stop();
    const nc = this.#nc;
    this.#nc = undefined;
    if (nc && !nc.isClosed()) await nc.close();
  }
}
