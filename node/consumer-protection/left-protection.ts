import { silentLogger, type Logger } from "../log/logger";
import { otherProcessAlive } from "../lifecycle/process";
import fs from "node:fs";
import { protectionRecordFile, readRecord } from "./protection";
import { undo } from "./undo";

/** What a myst that ended without disconnecting left in force here, as `status` tells it. */
export interface LeftProtection {
  /** The myst that made it (no longer running). */
  pid: number;
  netns?: string;
  /** Whether it blocks all traffic (the kill switch), or only left the resolver pointed at the dead tunnel. */
  killSwitch: boolean;
  message: string;
}

/**
 * What a dead myst's record says is still in force (read only: `myst disconnect` or the next start
 * undoes it). Undefined when there is no record, or the myst that wrote it still runs.
 */
export function leftProtection(dataDir: string): LeftProtection | undefined {
  const record = readRecord(dataDir);
  if (!record || otherProcessAlive(record.pid)) return undefined;
  const where = record.netns ? ` in network namespace ${record.netns}` : "";
  if (record.prepared)
    return {
      pid: record.pid,
      ...(record.netns !== undefined ? { netns: record.netns } : {}),
      killSwitch: false,
      message: `a disarmed kill-switch table${where} (it blocks nothing) left by a myst (pid ${record.pid}) that ended while connecting or while keeping it for its next connection (killSwitchSpare); removed at the next start or by \`myst disconnect\``,
    };
  const message = record.killSwitch
    ? `kill switch on, all traffic blocked${where}: a myst (pid ${record.pid}) ended without disconnecting; run \`myst disconnect\``
    : `the resolver settings${where} still point at a tunnel that is gone: a myst (pid ${record.pid}) ended without disconnecting; run \`myst disconnect\``;
  return { pid: record.pid, ...(record.netns !== undefined ? { netns: record.netns } : {}), killSwitch: record.killSwitch, message };
}

/**
 * At start (connect, daemon, disconnect with nothing running): undoes what a session left behind
 * when its myst died (kill switch, resolver file), and says so. Returns the message, or null when
 * there was nothing to undo (or the myst that owns it still runs).
 */
export async function recoverProtection(dataDir: string, log: Logger = silentLogger, options: { keepFor?: { netns?: string } } = {}): Promise<string | null> {
  const record = readRecord(dataDir);
  if (!record || otherProcessAlive(record.pid)) return null;
  if (options.keepFor && record.netns === options.keepFor.netns && record.killSwitch && !record.prepared) {
    // A connect with the kill switch in the same place: the old rules hold until its own replace them.
    const message = `the kill switch left by a myst (pid ${record.pid}) that ended without disconnecting stays in force until this connection replaces it`;
    log.warn({ netns: record.netns, pid: record.pid }, message);
    return message;
  }
  await undo(record);
  fs.rmSync(protectionRecordFile(dataDir), { force: true });
  const where = record.netns ? ` in network namespace ${record.netns}` : "";
  const message = record.prepared
    ? `removed a disarmed kill-switch table${where} (it blocked nothing) left by a myst (pid ${record.pid}) that ended without removing it`
    : `removed the kill switch${record.resolver ? " and restored the resolver settings" : ""}${where} left by a myst (pid ${record.pid}) that ended without disconnecting: traffic flows by this machine's own route again`;
  log.warn({ netns: record.netns, pid: record.pid }, message);
  return message;
}
