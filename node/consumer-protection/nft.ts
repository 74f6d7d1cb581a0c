import { execFile } from "node:child_process";
import { inNetns, program } from "../services/openvpn/system";
import { ProtectionError } from "./errors";

/** Runs `nft -f -` with `script` on stdin, in `netns` when given: one atomic transaction. */
export function nftApply(script: string, netns?: string): Promise<void> {
  const argv = inNetns(netns, [program("nft", "nftables"), "-f", "-"]);
  return new Promise((resolve, reject) => {
    const child = execFile(argv[0], argv.slice(1), { timeout: 15_000 }, (err, _stdout, stderr) => {
      if (err) reject(new ProtectionError("FIREWALL_FAILED", `nftables refused the rule set${netns ? ` in ${netns}` : ""}: ${(stderr || err.message).trim().split("\n")[0]}`, { cause: err }));
      else resolve();
    });
    child.stdin!.end(script);
  });
}

/** Whether table inet `table` exists in `netns`. */
export function nftHasTable(table: string, netns?: string): Promise<boolean> {
  const argv = inNetns(netns, [program("nft", "nftables"), "list", "table", "inet", table]);
  return new Promise((resolve) => execFile(argv[0], argv.slice(1), { timeout: 15_000 }, (err) => resolve(!err)));
}
