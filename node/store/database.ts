import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { dataDirUnusable, ensureDataDir, followWrites } from "./errors";

export type Db = Database.Database;

/** The node's database in its data dir: promises, settlements, session history, traffic per day. */
export const databaseFile = (dataDir: string) => path.join(dataDir, "myst.db");

const MIGRATIONS = [
  `CREATE TABLE promises (
     channel_id TEXT NOT NULL,
     consumer TEXT NOT NULL,
     provider TEXT NOT NULL,
     session_id TEXT NOT NULL,
     amount TEXT NOT NULL,
     signature TEXT NOT NULL,
     received_at INTEGER NOT NULL,
     PRIMARY KEY (channel_id, amount)
   );
   CREATE TABLE settlements (
     channel_id TEXT NOT NULL,
     amount TEXT NOT NULL,
     tx_hash TEXT,
     paid TEXT,
     status TEXT NOT NULL,
     error TEXT,
     at INTEGER NOT NULL
   );
   CREATE TABLE sessions (
     id TEXT PRIMARY KEY,
     role TEXT NOT NULL,
     peer TEXT NOT NULL,
     service_type TEXT NOT NULL,
     started_at INTEGER NOT NULL,
     ended_at INTEGER,
     end_reason TEXT,
     bytes INTEGER NOT NULL DEFAULT 0,
     promised TEXT NOT NULL DEFAULT '0'
   );`,
  // Each promise's increase over the channel's previous one: a session's own amount is the sum of
  // its increases (the amount itself is the channel's cumulative figure across sessions).
  // The consumer's side: the latest promise it signed per channel, written before it is sent.
  `ALTER TABLE promises ADD COLUMN increase TEXT NOT NULL DEFAULT '0';
   CREATE TABLE issued_promises (
     channel_id TEXT PRIMARY KEY,
     consumer TEXT NOT NULL,
     provider TEXT NOT NULL,
     amount TEXT NOT NULL,
     signature TEXT NOT NULL,
     issued_at INTEGER NOT NULL
   );`,
  // Consumer vaults: a settlement through a relayer records the relayer's fee (channel_id now
  // holds the (consumer, provider) pair's id, computed the same way).
  "ALTER TABLE settlements ADD COLUMN fee TEXT;",
  // Provider traffic caps: bytes moved per local calendar day, over all sessions and services.
  `CREATE TABLE traffic_days (
     day TEXT PRIMARY KEY,
     bytes INTEGER NOT NULL
   );`,
  // Quality: the session receipts this consumer signed (its own evidence about providers).
  `CREATE TABLE receipts (
     id TEXT PRIMARY KEY,
     provider TEXT NOT NULL,
     service_type TEXT NOT NULL,
     failed TEXT,
     at INTEGER NOT NULL,
     signed TEXT NOT NULL
   );
   CREATE INDEX receipts_by_provider ON receipts (provider, at);`,
  // Relays (issue 29): the path each session took (JSON: session-store.ts's SessionPathRecord), kept with its history.
  "ALTER TABLE sessions ADD COLUMN path TEXT;",
];

/**
 * The node's durable state (SQLite, `<data-dir>/myst.db`): write-ahead log and full fsync, so a
 * promise acknowledged is a promise on disk. Migrations run once, in order.
 */
export function openDatabase(file: string): Db {
  const dir = path.dirname(file);
  ensureDataDir(dir);
  let db: Db;
  try {
    db = open(file);
  } catch (err) {
    throw dataDirUnusable(dir, err);
  }
  followWrites(db, file);
  return db;
}

function open(file: string): Db {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // Private before SQLite opens it: SQLite gives the -wal and -shm files the database's own mode.
  fs.closeSync(fs.openSync(file, "a", 0o600));
  fs.chmodSync(file, 0o600);
  for (const side of [`${file}-wal`, `${file}-shm`]) if (fs.existsSync(side)) fs.chmodSync(side, 0o600);
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  const version = db.pragma("user_version", { simple: true }) as number;
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db;
}
