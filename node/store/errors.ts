import fs from "node:fs";
import path from "node:path";
import { MystError } from "../errors/MystError";
import type { Db } from "./database";
import { diskTrouble, type DiskTrouble } from "../errors/disk-trouble";

export { diskTrouble, type DiskTrouble };

/**
 * What the disk under the node's state did: full, read-only, or another failure. Made here, where
 * SQLite's and the file system's own codes enter (SQLITE_FULL, SQLITE_READONLY, ENOSPC, EROFS);
 * nothing downstream reads their messages. The message names no path: a `STORE_FULL` travels to
 * the consumer whose promise could not be stored; the operator's health and log name the file.
 */
export type StoreErrorCode = "STORE_FULL" | "STORE_READ_ONLY" | "STORE_FAILED" | "DATA_DIR_UNUSABLE";

export class StoreError extends MystError<StoreErrorCode> {}

/** The last write to one database: when it failed and why, until a write succeeds again. */
class StoreCondition {
  failure?: { trouble: DiskTrouble; doing: string; since: number; count: number };
  constructor(readonly file: string) {}
}

const conditions = new WeakMap<Db, StoreCondition>();

/** Follows the writes of `db` (its file) for `storeCheck` (openDatabase calls it). */
export function followWrites(db: Db, file: string): void {
  conditions.set(db, new StoreCondition(file));
}

/**
 * Runs a write to `db`: disk trouble becomes a StoreError with a named code (and is remembered
 * for health until a write succeeds); anything else is thrown as it is.
 */
export function writing<T>(db: Db, doing: string, write: () => T): T {
  const condition = conditions.get(db);
  try {
    const result = write();
    if (condition) condition.failure = undefined;
    return result;
  } catch (err) {
    const trouble = diskTrouble(err);
    if (!trouble) throw err;
    if (condition) {
      const f = condition.failure;
      condition.failure = f && f.trouble.code === trouble.code ? { ...f, count: f.count + 1, doing } : { trouble, doing, since: Date.now(), count: 1 };
    }
    const what = trouble.code === "STORE_FULL" ? "its store is full" : trouble.code === "STORE_READ_ONLY" ? "its store is read-only" : "its store failed";
    throw new StoreError(trouble.code, `the node could not record this (${doing}): ${what} (${trouble.words})`, { cause: err });
  }
}

/** One health check: up or not, in words. */
export interface StoreCheck {
  ok: boolean;
  detail: string;
}

/**
 * Whether the node can write its state: the last write to `db` (a failure stays until a write
 * succeeds), and the data dir's file system now (read-only, no space left). Writes nothing.
 */
export function storeCheck(db: Db): StoreCheck {
  const condition = conditions.get(db);
  if (!condition) return { ok: true, detail: "not followed" };
  const dir = path.dirname(condition.file);
  const f = condition.failure;
  if (f) {
    return {
      ok: false,
      detail: `${condition.file} cannot be written: ${f.trouble.words} (${f.trouble.raw}), ${f.count} write(s) failed since ${new Date(f.since).toISOString()}, the last ${f.doing}; promises are refused until it can (free space or make ${dir} writable)`,
    };
  }
  const now = dataDirNow(dir);
  return now ?? { ok: true, detail: `writable (${condition.file})` };
}

/** The data dir's file system as it is now: read-only or out of space (undefined when neither is seen). */
function dataDirNow(dir: string): StoreCheck | undefined {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (err) {
    const trouble = diskTrouble(err);
    return { ok: false, detail: `${dir} cannot be written: ${trouble?.words ?? (err as Error).message}${trouble ? ` (${trouble.raw})` : ""}` };
  }
  try {
    const s = fs.statfsSync(dir);
    if (s.bavail === 0) return { ok: false, detail: `${dir} cannot be written: the disk is full (0 bytes free)` };
  } catch {
    // statfs is not everywhere: the writes themselves still tell
  }
  return undefined;
}

/**
 * Checks at start that `dir` can hold the node's state: created if missing, and a small file
 * written, flushed and removed. A full or read-only disk is named with the dir, instead of failing
 * later on the first promise (or at start with a bare ENOSPC).
 */
export function ensureDataDir(dir: string): void {
  const probe = path.join(dir, `.write-check-${process.pid}`);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fd = fs.openSync(probe, "w", 0o600);
    try {
      fs.writeSync(fd, Buffer.alloc(4096));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    fs.rmSync(probe, { force: true });
    throw dataDirUnusable(dir, err);
  }
  fs.rmSync(probe, { force: true });
}

/** The one error for a data dir the node cannot use, naming it and the cause (disk trouble or not). */
export function dataDirUnusable(dir: string, err: unknown): StoreError {
  const trouble = diskTrouble(err);
  const cause = trouble ? `${trouble.words} (${trouble.raw})` : (err as Error).message;
  return new StoreError(
    "DATA_DIR_UNUSABLE",
    `the data dir ${dir} cannot be used: ${cause}; free space or make it writable, or choose another with --data-dir`,
    { cause: err },
  );
}
