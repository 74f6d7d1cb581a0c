import fs from "node:fs";
import type { Logger } from "../log/logger";
import { program } from "./system";

/**
 * What every supervised tunnel process (openvpn, wireguard-go, dnsmasq) shares: tied to the node's
 * life by a parent-death signal, recorded in a pid file, and a process a dead node left behind
 * stopped before a new one starts.
 */

/** `setpriv --pdeathsig TERM` where util-linux has it; nothing otherwise (the pid file still cleans up). */
export function parentDeathSignal(): string[] {
  try {
    return [program("setpriv", "util-linux"), "--pdeathsig", "TERM"];
  } catch {
    return [];
  }
}

/**
 * Stops the process a pid file names, if it is still ours (`isOurs` looks at its argv). A pid the
 * kernel gave to another program since is left alone.
 */
export async function stopStale(pidFile: string, isOurs: (argv: string[]) => boolean, log: Logger, what: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile, "utf8").trim());
  } catch {
    return;
  }
  fs.rmSync(pidFile, { force: true });
  const ours = () => {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      const state = /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
      return state !== "Z" && isOurs(argv);
    } catch {
      return false;
    }
  };
  if (!Number.isSafeInteger(pid) || pid <= 1 || !ours()) return;
  log.warn({ pid, pidFile }, `stopping ${what} left running by a node that died`);
  process.kill(pid, "SIGTERM");
  // Gone means reaped or a zombie: an exiting process loses its argv before it closes its files,
  // so "no longer ours" would come too early, while it still holds its ports.
  const gone = () => {
    try {
      return /^State:\s+[ZX]/m.test(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    } catch {
      return true;
    }
  };
  const deadline = Date.now() + 5000;
  while (!gone()) {
    if (Date.now() > deadline) {
      process.kill(pid, "SIGKILL");
      await new Promise((r) => setTimeout(r, 100));
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
