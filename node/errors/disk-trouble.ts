/**
 * What a full, read-only or failing disk looks like when its error enters the node (SQLite's and
 * the file system's own codes), in words: shared by the store, which names it in its errors and
 * health, and the CLI's last resort for a start on an unusable data dir.
 */
export interface DiskTrouble {
  code: "STORE_FULL" | "STORE_READ_ONLY" | "STORE_FAILED";
  /** In words, for a person. */
  words: string;
  /** The system's or SQLite's own code (ENOSPC, SQLITE_FULL…), for the operator. */
  raw: string;
}

/** The disk trouble behind a SQLite or file-system error; undefined for anything else (a bug, a constraint). */
export function diskTrouble(err: unknown): DiskTrouble | undefined {
  const raw = (err as { code?: unknown } | null)?.code;
  if (typeof raw !== "string") return undefined;
  if (raw === "SQLITE_FULL" || raw === "ENOSPC" || raw === "EDQUOT") return { code: "STORE_FULL", words: "the disk is full", raw };
  if (raw.startsWith("SQLITE_READONLY") || raw === "EROFS") return { code: "STORE_READ_ONLY", words: "the file system is read-only", raw };
  if (raw === "EACCES" || raw === "EPERM") return { code: "STORE_READ_ONLY", words: "this user may not write there", raw };
  if (raw.startsWith("SQLITE_IOERR") || raw === "EIO") return { code: "STORE_FAILED", words: "the disk reported an I/O error", raw };
  if (raw.startsWith("SQLITE_CANTOPEN")) return { code: "STORE_FAILED", words: "the database file cannot be opened", raw };
  if (raw.startsWith("SQLITE_CORRUPT") || raw === "SQLITE_NOTADB") return { code: "STORE_FAILED", words: "the database file is damaged", raw };
  return undefined;
}
