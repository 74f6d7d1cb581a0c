import { connect, ErrorCode, StorageType, type KV, type KvEntry, type NatsConnection, type NatsError } from "nats";
import { authOptions } from "../broker/broker";
import type { BrokerCredentials } from "../config/broker-credentials";
import { silentLogger, type Logger } from "../log/logger";
import { decodeRecord, encodeRecord, MAX_RECORD_BYTES, type StoredRecord } from "./record";
import { ProposalStoreError, type ProposalStore, type StoreChange, type StoreReset } from "./store";

export interface JetStreamStoreOptions {
  /** NATS server URLs (the cluster's; the client fails over between them). */
  servers: string[];
  /** The replica's own broker credential: only replicas may use JetStream (docs/security.md). */
  credentials?: BrokerCredentials;
  /** Key-value bucket. Default "myst-proposals". */
  bucket?: string;
  /** TTL of a bucket this replica creates; a bucket that exists keeps its own. Default 90 s. */
  ttlMs?: number;
  /** Copies of the bucket in a JetStream cluster (1, 3 or 5; at most the cluster's size). Default 1. */
  replicas?: number;
  /** How long to keep trying to reach JetStream at start (a new cluster elects its leader first). Default 30 s. */
  startTimeoutMs?: number;
  /** Time allowed for one write's acknowledgement. Default 5 s. */
  writeTimeoutMs?: number;
  /** How often the bucket's stream is checked for a deletion or a purge by someone else. Default 1 s. */
  checkMs?: number;
  log?: Logger;
}

/** NATS JetStream's "wrong last sequence": the key moved since the revision we wrote against. */
const WRONG_LAST_SEQUENCE = 10071;
/** NATS JetStream's "stream not found". */
const STREAM_NOT_FOUND = 10059;

/**
 * The proposal index in a NATS JetStream key-value bucket (adapter): one key per provider and
 * service type (`<provider>.<service type>`), history 1, the bucket's max age as the TTL. Writes
 * carry the revision they replace, so replicas never overwrite each other's newer decision.
 *
 * Anyone with rights on the bucket may also delete its stream: the store checks the stream every
 * `checkMs`, makes a deleted one again, and tells the watcher (`onReset`). A purge leaves the stream
 * (the replica notices it by `firstRevision`, see DiscoveryService).
 */
export class JetStreamProposalStore implements ProposalStore {
  readonly shared = true;
  readonly #o: JetStreamStoreOptions;
  readonly #log: Logger;
  #nc?: NatsConnection;
  #kv?: KV;
  #ttlMs: number;
  #stopped = false;
  #watcher?: { stop(): void };
  #monitor?: NodeJS.Timeout;
  #checking = false;
  #onReset?: (reset: StoreReset) => void;
  /** The newest revision the watch delivered. */
  #last = { revision: 0 };

  constructor(options: JetStreamStoreOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.#ttlMs = options.ttlMs ?? 90_000;
  }

  get bucket(): string {
    return this.#o.bucket ?? "myst-proposals";
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  async start(): Promise<void> {
    try {
      this.#nc = await connect({
        servers: this.#o.servers,
        name: "myst-discovery-store",
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        ...authOptions(this.#o.credentials),
      });
    } catch (err) {
      const refused = (err as NatsError).code === ErrorCode.AuthorizationViolation;
      const why = refused
        ? `the NATS server at ${this.#o.servers.join(", ")} refused the replica's credentials`
        : `no NATS server answered at ${this.#o.servers.join(", ")}`;
      throw new ProposalStoreError("STORE_UNAVAILABLE", why, { cause: err });
    }
    const deadline = Date.now() + (this.#o.startTimeoutMs ?? 30_000);
    for (;;) {
      try {
        await this.#open();
        return;
      } catch (err) {
        if ((err as NatsError).code === ErrorCode.PermissionsViolation) {
          await this.#nc.close();
          throw new ProposalStoreError(
            "STORE_UNAVAILABLE",
            `the broker refused JetStream to this connection (${(err as Error).message}): only discovery replicas may use it; give the replica its broker credential (docs/operating.md)`,
            { cause: err },
          );
        }
        if (Date.now() > deadline) {
          await this.#nc.close();
          throw new ProposalStoreError(
            "STORE_UNAVAILABLE",
            `JetStream bucket ${this.bucket} unavailable (is nats-server running with -js?): ${(err as Error).message}`,
            { cause: err },
          );
        }
        this.#log.info({ err: (err as Error).message }, "waiting for JetStream");
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  /** Binds the bucket, making it (and its stream) when it does not exist. */
  async #open(): Promise<void> {
    const nc = this.#nc;
    if (!nc) throw new ProposalStoreError("STORE_UNAVAILABLE", "the proposal store is not started");
    this.#kv = await nc.jetstream().views.kv(this.bucket, {
      ttl: this.#ttlMs,
      history: 1,
      replicas: this.#o.replicas ?? 1,
      storage: StorageType.File,
      maxValueSize: MAX_RECORD_BYTES,
      timeout: this.#o.writeTimeoutMs ?? 5000,
    });
    const status = await this.#kv.status();
    if (status.ttl > 0) this.#ttlMs = status.ttl;
  }

  async watch(onChange: (change: StoreChange) => void, onReset?: (reset: StoreReset) => void): Promise<void> {
    this.#onReset = onReset;
    // What "loaded" means, fixed before watching: every value the bucket held then. (nats.js's own
    // initializedFn can fire at once when a consumer is created during a leader change.)
    const state = (await this.#retry(() => this.#kvOrThrow().status())).streamInfo.state;
    let received = 0;
    let loaded!: () => void;
    let done = state.messages === 0;
    const initial = new Promise<void>((resolve) => (loaded = resolve));
    const finish = () => {
      if (done) return;
      done = true;
      loaded();
    };
    if (done) loaded();
    const run = async (resumeFrom: number) => {
      const iter = await this.#kvOrThrow().watch(resumeFrom > 0 ? { resumeFromRevision: resumeFrom } : {});
      this.#watcher = iter;
      for await (const e of iter) {
        this.#last = { revision: e.revision };
        received++;
        const change = this.#change(e);
        if (change) onChange(change);
        if (!done && (received >= state.messages || (e.delta === 0 && e.revision >= state.last_seq))) finish();
      }
    };
    const loop = async () => {
      while (!this.#stopped) {
        try {
          await run(this.#last.revision > 0 ? this.#last.revision + 1 : 0);
        } catch (err) {
          if (!this.#stopped) this.#log.warn({ err: (err as Error).message }, "bucket watch ended; watching again");
        }
        if (!this.#stopped) await new Promise((r) => setTimeout(r, 250));
      }
    };
    void loop();
    // The stream is checked while loading too: values counted at the start may be purged (or the
    // stream deleted) before they are delivered, and a replica must not wait for them forever.
    this.#monitor = setInterval(() => void this.#check(finish), this.#o.checkMs ?? 1000);
    this.#monitor.unref();
    await initial;
  }

  /**
   * Whether the stream is still there: a deleted one is made again (and watched from its start);
   * `loading`, while the first load runs, ends it once nothing more can come.
   */
  async #check(loading: () => void): Promise<void> {
    if (this.#checking || this.#stopped || !this.#kv) return;
    this.#checking = true;
    try {
      let state: { messages: number; first_seq: number; last_seq: number };
      try {
        state = (await this.#kv.status()).streamInfo.state;
      } catch (err) {
        if (!streamMissing(err) || this.#stopped) return;
        this.#log.warn({ bucket: this.bucket }, "the bucket's stream was deleted; making it again and refilling from announcements");
        await this.#open();
        this.#last = { revision: 0 };
        this.#watcher?.stop();
        loading();
        this.#onReset?.({ reason: "stream-deleted", below: Number.POSITIVE_INFINITY });
        return;
      }
      if (state.messages === 0 || state.last_seq <= this.#last.revision) loading();
    } catch (err) {
      if (!this.#stopped) this.#log.warn({ err: (err as Error).message }, "could not check the bucket's stream");
    } finally {
      this.#checking = false;
    }
  }

  /** The oldest revision the bucket still holds (every older one was replaced, aged out, or purged). */
  async firstRevision(): Promise<number> {
    return (await this.#kvOrThrow().status()).streamInfo.state.first_seq;
  }

  /** Retries what JetStream times out on while a cluster elects a leader, up to the start timeout. */
  async #retry<T>(f: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + (this.#o.startTimeoutMs ?? 30_000);
    for (;;) {
      try {
        return await f();
      } catch (err) {
        if (Date.now() > deadline || this.#stopped)
          throw new ProposalStoreError("STORE_UNAVAILABLE", `JetStream bucket ${this.bucket} unavailable: ${(err as Error).message}`, { cause: err });
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  async write(key: string, record: StoredRecord, revision: number): Promise<{ revision: number; storedAt: number } | "conflict"> {
    const kv = this.#kvOrThrow();
    const k = bucketKey(key);
    const value = encodeRecord(record);
    try {
      const written = revision === 0 ? await kv.create(k, value) : await kv.update(k, value, revision);
      return { revision: written, storedAt: Date.now() };
    } catch (err) {
      if ((err as NatsError).api_error?.err_code === WRONG_LAST_SEQUENCE) return "conflict";
      void this.#check(() => {});
      throw new ProposalStoreError("STORE_UNAVAILABLE", `could not write ${key} to ${this.bucket}: ${(err as Error).message}`, { cause: err });
    }
  }

  async read(key: string): Promise<StoreChange> {
    const kv = this.#kvOrThrow();
    let e: KvEntry | null;
    try {
      e = await kv.get(bucketKey(key));
    } catch (err) {
      throw new ProposalStoreError("STORE_UNAVAILABLE", `could not read ${key} from ${this.bucket}: ${(err as Error).message}`, { cause: err });
    }
    return (e && this.#change(e)) ?? { key, record: null, revision: 0, storedAt: 0 };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#monitor);
    this.#watcher?.stop();
    const nc = this.#nc;
    this.#nc = undefined;
    if (nc && !nc.isClosed()) await nc.close();
  }

  #change(e: KvEntry): StoreChange | undefined {
    const key = indexKeyOf(e.key);
    if (!key) {
      this.#log.debug({ key: e.key }, "ignoring a bucket key that names no provider and service type");
      return undefined;
    }
    const storedAt = e.created.getTime();
    const base = { key, record: null, revision: e.revision, storedAt };
    if (e.operation !== "PUT") return { ...base, unreadable: "a deletion marker (replicas write signed withdrawals, never deletions)" };
    try {
      return { ...base, record: decodeRecord(e.value) };
    } catch (err) {
      return { ...base, unreadable: (err as Error).message };
    }
  }

  #kvOrThrow(): KV {
    if (!this.#kv || !this.#nc || this.#nc.isClosed()) throw new ProposalStoreError("STORE_UNAVAILABLE", "the proposal store is not started");
    return this.#kv;
  }
}

function streamMissing(err: unknown): boolean {
  const e = err as NatsError;
  return e.api_error?.err_code === STREAM_NOT_FOUND || /stream not found/i.test(e.message ?? "");
}

/** `0xabc…/openvpn` → `0xabc….openvpn` (a KV key is a subject: dots separate tokens). */
function bucketKey(indexKey: string): string {
  return indexKey.replace("/", ".");
}

function indexKeyOf(bucketKey: string): string | undefined {
  const m = /^(0x[0-9a-f]{40})\.([a-z][a-z0-9-]{0,31})$/.exec(bucketKey);
  return m ? `${m[1]}/${m[2]}` : undefined;
}
