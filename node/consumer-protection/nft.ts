import { spawner } from "../services/spawner";
import { program } from "../services/system";
import { ProtectionError } from "./errors";

/**
 * `nft` in `netns`: entering only its network namespace (nsenter) is a few ms cheaper than
 * `ip netns exec`, which also remounts /sys and binds /etc/netns files nft does not need.
 */
export function nftIn(netns: string | undefined, args: string[]): string[] {
  if (netns === undefined) return [program("nft", "nftables"), ...args];
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(netns) || netns === "." || netns === "..")
    throw new ProtectionError("BAD_NETNS", `"${netns}" is not a network namespace name`);
  return [program("nsenter", "util-linux"), `--net=/run/netns/${netns}`, program("nft", "nftables"), ...args];
}

/**
 * Runs `nft -f -` with `script` on stdin, in `netns` when given: one atomic transaction. Started by
 * the spawning helper (services/spawner.ts): a fork of the node would stop its event loop.
 */
export async function nftApply(script: string, netns?: string): Promise<void> {
  const argv = nftIn(netns, ["-f", "-"]);
  try {
    await spawner.run(argv, script, 15_000);
  } catch (err) {
    throw new ProtectionError(
      "FIREWALL_FAILED",
      `nftables refused the rule set${netns ? ` in ${netns}` : ""}: ${(err as Error).message.slice(argv.join(" ").length + 2)}`,
      { cause: err },
    );
  }
}

/** Whether table inet `table` exists in `netns`. */
export function nftHasTable(table: string, netns?: string): Promise<boolean> {
  return spawner.run(nftIn(netns, ["list", "table", "inet", table]), "", 15_000).then(
    () => true,
    () => false,
  );
}
