import { execFileSync } from "node:child_process";
import fs from "node:fs";

/** The PIDs of the processes named `program` (their /proc comm) running in network namespace `netns`. */
export function pidsIn(netns: string, program: string): number[] {
  return execFileSync("/usr/sbin/ip", ["netns", "pids", netns], { encoding: "utf8" })
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim() === program;
      } catch {
        return false; // exited meanwhile
      }
    });
}
