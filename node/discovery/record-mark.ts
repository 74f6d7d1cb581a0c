import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { MystError } from "../errors/MystError";
import type { StoredRecord } from "./record";

/** Bytes of a replicas' key. */
const KEY_BYTES = 32;

export class ReplicaKeyError extends MystError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("REPLICA_KEY_UNUSABLE", message, options);
  }
}

/**
 * The replicas' mark on a value they verified (an HMAC-SHA256 with a key only the replicas of one
 * discovery service hold): a replica that loads a value carrying its key's mark knows that a replica
 * it trusts verified the provider's signature and the proposal's schema, and built the header from the
 * signed text; it checks the mark (a few microseconds) instead of the signature (about 0.35 ms of a
 * core) and the schema. The mark covers the key the value is stored under and every field a reader
 * takes from it (the header, the signature, the signed text), so a marked value moved to another key
 * or changed in any field is not vouched for. Times (expired, from the future) are checked on every load.
 *
 * The broker lets only replicas write the bucket, but a permission is a fence, not a proof: a value
 * without a mark, or with another key's mark or a wrong one, is verified in full as before.
 */
export class RecordMarker {
  /** The key's id, written in front of each mark (16 hex digits of its SHA-256): another key's marks are not ours. */
  readonly id: string;
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    if (key.length < 16) throw new ReplicaKeyError(`a replicas' key must be at least 16 bytes (got ${key.length})`);
    this.#key = Buffer.from(key);
    this.id = crypto.createHash("sha256").update(this.#key).digest("hex").slice(0, 16);
  }

  /** `<key id>.<HMAC in base64url>` over the record stored under `key`. */
  mark(key: string, record: StoredRecord): string {
    return `${this.id}.${this.#mac(key, record)}`;
  }

  /** The record with this replica's mark. */
  marked<R extends StoredRecord>(key: string, record: R): R {
    return { ...record, mark: this.mark(key, record) };
  }

  /** Whether the record carries this key's mark, made over this very record under this key. */
  verifies(key: string, record: StoredRecord): boolean {
    const m = record.mark;
    if (m === undefined || m.length !== this.id.length + 44 || !m.startsWith(`${this.id}.`)) return false;
    const given = Buffer.from(m.slice(this.id.length + 1), "base64url");
    const want = Buffer.from(this.#mac(key, record), "base64url");
    return given.length === want.length && crypto.timingSafeEqual(given, want);
  }

  /** Over the key and every field a reader takes from the record (one JSON array: no field can run into the next). */
  #mac(key: string, r: StoredRecord): string {
    const fields =
      r.kind === "withdrawal"
        ? [1, key, "w", r.at, r.signature ?? null, r.text ?? null]
        : [
            1,
            key,
            "p",
            r.createdAt,
            r.expiresAt,
            r.country,
            r.ipType,
            r.perHour,
            r.perGiB,
            r.bandwidthMbps,
            r.accessPolicy,
            r.ipv6 === true,
            r.signature,
            r.text,
          ];
    return crypto.createHmac("sha256", this.#key).update(JSON.stringify(fields)).digest("base64url");
  }
}

/**
 * The replicas' key from `file`; made (random, mode 0600) when the file does not exist, so a replica
 * on its own trusts at least its own marks after a restart. Replicas of one service that should trust
 * each other's marks are given the same file. The file holds the key in hex (64 digits).
 */
export function loadReplicaKey(file: string): Uint8Array {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT")
      throw new ReplicaKeyError(`cannot read the replicas' key ${file}: ${(err as Error).message}`, { cause: err });
    const key = crypto.randomBytes(KEY_BYTES);
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      fs.writeFileSync(file, `${key.toString("hex")}\n`, { mode: 0o600, flag: "wx" });
    } catch (e) {
      // Another replica made it first: use theirs.
      if ((e as NodeJS.ErrnoException).code === "EEXIST") return loadReplicaKey(file);
      throw new ReplicaKeyError(`cannot write the replicas' key ${file}: ${(e as Error).message}`, { cause: e });
    }
    return key;
  }
  const hex = text.trim();
  if (!/^(?:[0-9a-fA-F]{2}){16,}$/.test(hex)) throw new ReplicaKeyError(`${file} does not hold a replicas' key (at least 32 hex digits)`);
  return Buffer.from(hex, "hex");
}
