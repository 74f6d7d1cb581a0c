import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { MystError } from "../errors/MystError";

/** Where a running daemon says how to reach it, and the token its API wants. */
export const apiTokenFile = (dataDir: string) => path.join(dataDir, "api-token");
export const daemonFile = (dataDir: string) => path.join(dataDir, "daemon.json");

/** What a running daemon writes to `<data-dir>/daemon.json` for the CLI (and scripts) to find it. */
export interface DaemonEndpoint {
  url: string;
  pid: number;
  identity: string;
  startedAt: string;
}

/**
 * The API token: 32 random bytes, made once in `<data-dir>/api-token` (mode 0600, so only the
 * node's user can read it) and kept across restarts so scripts keep working.
 */
export function ensureApiToken(dataDir: string): string {
  const file = apiTokenFile(dataDir);
  const existing = readApiToken(dataDir);
  if (existing) return existing;
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const token = crypto.randomBytes(32).toString("base64url");
  try {
    fs.writeFileSync(file, token + "\n", { mode: 0o600, flag: "wx" });
  } catch (err) {
    // Another daemon made it first: use that one.
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return readApiToken(dataDir)!;
    throw new MystError("API_TOKEN_UNWRITABLE", `cannot write ${file}`, { cause: err });
  }
  return token;
}

export function readApiToken(dataDir: string): string | null {
  const file = apiTokenFile(dataDir);
  let token: string;
  try {
    token = fs.readFileSync(file, "utf8").trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new MystError("API_TOKEN_UNREADABLE", `cannot read ${file}`, { cause: err });
  }
  if (token.length < 32) throw new MystError("API_TOKEN_INVALID", `${file} does not hold a token; delete it and restart the daemon`);
  return token;
}

/** Compares in constant time (hashes first, so the lengths match). */
export function tokenMatches(expected: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  const a = crypto.createHash("sha256").update(expected).digest();
  const b = crypto.createHash("sha256").update(given).digest();
  return crypto.timingSafeEqual(a, b);
}

export function writeDaemonEndpoint(dataDir: string, endpoint: DaemonEndpoint): void {
  const file = daemonFile(dataDir);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(endpoint, null, 2) + "\n", { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** Removes daemon.json if it is this process's. */
export function removeDaemonEndpoint(dataDir: string): void {
  if (readDaemonEndpoint(dataDir)?.pid === process.pid) fs.rmSync(daemonFile(dataDir), { force: true });
}

/** The endpoint of a daemon that is alive for this data dir, or null (none, or a stale file). */
export function readDaemonEndpoint(dataDir: string): DaemonEndpoint | null {
  let endpoint: DaemonEndpoint;
  try {
    endpoint = JSON.parse(fs.readFileSync(daemonFile(dataDir), "utf8"));
  } catch {
    return null;
  }
  if (typeof endpoint?.url !== "string" || !Number.isInteger(endpoint.pid)) return null;
  try {
    process.kill(endpoint.pid, 0);
  } catch (err) {
    // ESRCH: the daemon died without cleaning up. EPERM: alive, another user's.
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return null;
  }
  return endpoint;
}
