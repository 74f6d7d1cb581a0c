import { execFileSync } from "node:child_process";
import fs from "node:fs";

/** The PIDs of the wireguard-go processes running in network namespace `netns`. */
export function wireguardGoPidsIn(netns: string): string[] {
  return execFileSync("/usr/sbin/ip", ["netns", "pids", netns], { encoding: "utf8" })
    .split(/\s+/)
    .filter(Boolean)
    .filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "wireguard-go";
      } catch {
        return false;
      }
    });
}
