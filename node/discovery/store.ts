import { MystError } from "../errors/MystError";
import type { StoredRecord } from "./record";

/** One key's state in the store, as written or as a watcher sees it. */
export interface StoreChange {
  /** The index key, `<provider lower-case>/<service type>`. */
  key: string;
  /** null: the store no longer holds a value for the key (deleted or purged). */
  record: StoredRecord | null;
  revision: number;
  /** When the store took it (its clock), ms since the epoch. */
  storedAt: number;
  /**
   * Set when the store holds something at `revision` that is no record at all (unreadable, too
   * large, or a deletion marker: replicas never delete, they write signed withdrawals); `record`
   * is then null and must not be taken as a deletion.
   */
  unreadable?: string;
}

/** The store lost values it held, by someone else's hand; the replica refills from announcements. */
export interface StoreReset {
  reason: "stream-deleted" | "purged";
  /** Every revision below this one is gone (Infinity: the stream was made again and counts from 1). */
  below: number;
}

export class ProposalStoreError extends MystError {
  constructor(
    readonly code: "STORE_UNAVAILABLE" | "STORE_CONFIG",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/**
 * Where the proposal index lives (port). `shared`: every replica on the same store sees every
 * write, so an announcement needs one replica to verify and write it; a store that is not shared
 * keeps one replica's proposals, and replicas each hear every announcement instead.
 */
export interface ProposalStore {
  readonly shared: boolean;
  /** The store's TTL: a key not written for this long is dropped. Known after start(). */
  readonly ttlMs: number;
  start(): Promise<void>;
  /**
   * Delivers every key the store holds, then resolves (`onChange` keeps being called for later
   * changes, from any replica, until stop()). `onReset`: the store was purged or made again.
   */
  watch(onChange: (change: StoreChange) => void, onReset?: (reset: StoreReset) => void): Promise<void>;
  /** Writes if the key is still at `revision` (0: absent); "conflict" if another write came first. */
  write(key: string, record: StoredRecord, revision: number): Promise<{ revision: number; storedAt: number } | "conflict">;
  /** The key's current state, from the store itself. */
  read(key: string): Promise<StoreChange>;
  /** The oldest revision the store still holds, when it can tell (a purge moves it past values not yet aged out). */
  firstRevision?(): Promise<number>;
  stop(): Promise<void>;
}

/** A store in this process only: one replica's index, as discovery was before JetStream. */
export class LocalProposalStore implements ProposalStore {
  readonly shared: boolean = false;
  readonly #values = new Map<string, { record: StoredRecord; revision: number; storedAt: number }>();
  #revision = 0;

  constructor(readonly ttlMs: number) {}

  async start(): Promise<void> {}

  /** Nothing to load: this store starts empty with the process. */
  async watch(_onChange: (change: StoreChange) => void, _onReset?: (reset: StoreReset) => void): Promise<void> {}

  async write(key: string, record: StoredRecord, revision: number): Promise<{ revision: number; storedAt: number } | "conflict"> {
    const current = this.#values.get(key);
    const now = Date.now();
    const live = current && current.storedAt + this.ttlMs > now ? current : undefined;
    if ((live?.revision ?? 0) !== revision && current?.revision !== revision) return "conflict";
    const stored = { record, revision: ++this.#revision, storedAt: now };
    this.#values.set(key, stored);
    return { revision: stored.revision, storedAt: stored.storedAt };
  }

  async read(key: string): Promise<StoreChange> {
    const v = this.#values.get(key);
    if (!v || v.storedAt + this.ttlMs <= Date.now()) return { key, record: null, revision: 0, storedAt: 0 };
    return { key, ...v };
  }

  async stop(): Promise<void> {
    this.#values.clear();
  }
}
