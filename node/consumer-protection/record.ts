import fs from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import { ProtectionError } from "./errors";
import { nsswitchBeside } from "./nsswitch";
import { resolverFile, type ResolverSnapshot } from "./resolver";

/** The durable record of what protection changed on this machine (written before each change). */
export interface ProtectionRecord {
  version: 1;
  pid: number;
  netns?: string;
  killSwitch: boolean;
  /**
   * Provider endpoints that had no host route before the tunnel: the tunnel adds one via the
   * consumer's gateway (openvpn does), and a tunnel killed outright leaves it behind. And the
   * control endpoints this added a host route for.
   */
  endpointRoutes?: string[];
  resolver?: ResolverSnapshot;
  /** Only a prepared (disarmed) table is in place: it blocks nothing yet. */
  prepared?: boolean;
}

export function protectionRecordFile(dataDir: string): string {
  return path.join(dataDir, "protection.json");
}

/** The protection record in `dataDir`; undefined when there is none. */
export function readRecord(dataDir: string): ProtectionRecord | undefined {
  let text: string;
  try {
    text = fs.readFileSync(protectionRecordFile(dataDir), "utf8");
  } catch {
    return undefined;
  }
  const record = JSON.parse(text) as ProtectionRecord;
  // The record becomes commands and file names: fenced like a peer's words.
  if (record?.version !== 1 || !Number.isInteger(record.pid))
    throw new ProtectionError(
      "BAD_RECORD",
      `${protectionRecordFile(dataDir)} is not a protection record; remove it, then \`nft delete table inet myst_guard\``,
    );
  if (record.netns !== undefined) resolverFile(record.netns);
  if (record.endpointRoutes && !record.endpointRoutes.every((a) => typeof a === "string" && isIP(a) !== 0))
    throw new ProtectionError("BAD_RECORD", `${protectionRecordFile(dataDir)} names an endpoint that is not an address`);
  if (record.resolver && record.resolver.path !== resolverFile(record.netns))
    throw new ProtectionError("BAD_RECORD", `${protectionRecordFile(dataDir)} names a resolver file that is not ${resolverFile(record.netns)}`);
  if (record.resolver?.nsswitch && record.resolver.nsswitch.path !== nsswitchBeside(record.resolver.path))
    throw new ProtectionError("BAD_RECORD", `${protectionRecordFile(dataDir)} names a name-service switch that is not ${nsswitchBeside(record.resolver.path)}`);
  return record;
}

/** The protection record in `dataDir`; undefined when there is none or it is not one. */
export function readRecordIfValid(dataDir: string): ProtectionRecord | undefined {
  try {
    return readRecord(dataDir);
  } catch {
    return undefined;
  }
}
