import fs from "node:fs";
import path from "node:path";
import { inNetns, program, run } from "../services/system";
import { hostPrefix, hostRoute } from "./host-routes";
import { nftApply } from "./nft";
import type { ProtectionRecord } from "./record";
import { restoreResolver } from "./resolver";
import { disarmScript, unguardScript } from "./rules";

/**
 * Undoes what `record` names: the host routes it added, the guard table, the resolver file
 * (`resolver: false` leaves that file as it is: this instance never pointed it). With `keepTable`
 * the table is disarmed in one transaction instead of removed (guard-spare.ts), and removed after
 * all should it not take that. Returns whether the table was kept, disarmed.
 */
export async function undo(record: ProtectionRecord, o: { resolver: boolean; keepTable?: boolean } = { resolver: true }): Promise<boolean> {
  const restore = o.resolver ? record.resolver : undefined;
  if (record.netns !== undefined && !fs.existsSync(path.join("/run/netns", record.netns))) {
    // The namespace is gone, and its rules and routes with it; only the resolver file is left.
    if (restore) restoreResolver(restore);
    return false;
  }
  for (const address of record.endpointRoutes ?? []) {
    if (await hostRoute(address, record.netns))
      await run(inNetns(record.netns, [program("ip", "iproute2"), "route", "del", hostPrefix(address)])).catch(() => undefined);
  }
  const kept =
    !!o.keepTable &&
    (await nftApply(disarmScript(), record.netns).then(
      () => true,
      () => false,
    ));
  if (!kept) await nftApply(unguardScript(), record.netns);
  if (restore) restoreResolver(restore);
  return kept;
}
