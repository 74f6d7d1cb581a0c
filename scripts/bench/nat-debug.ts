import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/**
 * `BENCH_NAT_DEBUG_DIR=<dir>`: while a connect is still running after 3.5 s and after 7 s (a
 * handshake that has not come: the 10 s wait fails later), the state of every namespace on the
 * path is written to <dir>: conntrack's UDP entries, the UDP sockets, the punch table and the
 * WireGuard devices; and when a connect fails, both daemons' logs. For tracing a failed connect
 * end to end (docs/direct-channel.md, "A handshake that never came").
 */
export const DEBUG_DIR = (): string | undefined => process.env.BENCH_NAT_DEBUG_DIR || undefined;

const run = (argv: string[]): string => {
  try {
    return execFileSync(argv[0], argv.slice(1), { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    return `(${argv.join(" ")}: ${(err as Error).message.split("\n")[0]})`;
  }
};

function snapshot(namespaces: { label: string; netns: string; host?: boolean }[]): string {
  const out: string[] = [];
  for (const { label, netns, host } of namespaces) {
    out.push(`==== ${label} (${netns})`, run(["ip", "netns", "exec", netns, "conntrack", "-L", "-p", "udp"]));
    if (host) {
      out.push(run(["ip", "netns", "exec", netns, "ss", "-uanpe"]));
      out.push(run(["ip", "netns", "exec", netns, "nft", "list", "table", "ip", "myst_punch"]));
      // Not `dump`: it prints the devices' private keys, which have no place in a debug directory.
      out.push(run(["ip", "netns", "exec", netns, "wg", "show", "all"]));
    }
  }
  return out.join("\n");
}

/** Starts the timed snapshots for connect number `n` of `cell`; the returned function stops them (and keeps the logs if it failed). */
export function watchConnect(
  cell: string,
  n: number,
  namespaces: { label: string; netns: string; host?: boolean }[],
  logs: () => { consumer: string; provider: string },
): (failed: boolean) => void {
  const dir = DEBUG_DIR();
  if (!dir) return () => undefined;
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, `${cell.replace(/[^a-z0-9]+/gi, "-")}-${n}`);
  const timers = [3500, 7000].map((ms) =>
    setTimeout(() => fs.writeFileSync(`${base}-at${ms}.txt`, `${new Date().toISOString()}\n${snapshot(namespaces)}`), ms),
  );
  return (failed) => {
    for (const t of timers) clearTimeout(t);
    if (!failed) {
      for (const ms of [3500, 7000]) fs.rmSync(`${base}-at${ms}.txt`, { force: true });
      return;
    }
    const l = logs();
    fs.writeFileSync(`${base}-consumer.log`, l.consumer);
    fs.writeFileSync(`${base}-provider.log`, l.provider);
  };
}
