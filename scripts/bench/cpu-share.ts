// Where the CPU goes during a measurement: each process of the test network's namespaces, and the machine's softirq.
import { execFileSync } from "node:child_process";
import fs from "node:fs";

const TICKS_PER_SECOND = 100;

interface Reading {
  at: number;
  /** CPU seconds per "<namespace> <program>" (user + system, every process of that name there). */
  byProgram: Map<string, number>;
  /** The machine's softirq seconds (packets forwarded between namespaces, nft): no process owns them. */
  softirq: number;
  /** The machine's idle seconds. */
  idle: number;
}

/** A process's program and CPU seconds (utime + stime), or undefined when it is gone. */
function processCpu(pid: number): { program: string; seconds: number } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = stat.lastIndexOf(")");
    const program = stat.slice(stat.indexOf("(") + 1, close);
    const fields = stat.slice(close + 2).split(" ");
    // Fields 14 and 15 of proc(5) (utime, stime): the 12th and 13th after the name.
    return { program, seconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND };
  } catch {
    return undefined;
  }
}

function machineCpu(): { softirq: number; idle: number } {
  const cpu = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return { idle: cpu[3] / TICKS_PER_SECOND, softirq: cpu[6] / TICKS_PER_SECOND };
}

/** Reads the CPU time of every process in `namespaces` (by `ip netns pids`) and the machine's. */
export function readCpu(namespaces: string[]): Reading {
  const byProgram = new Map<string, number>();
  for (const ns of namespaces) {
    let pids: number[] = [];
    try {
      pids = execFileSync("/usr/sbin/ip", ["netns", "pids", ns], { encoding: "utf8" }).split("\n").filter(Boolean).map(Number);
    } catch {
      continue;
    }
    for (const pid of pids) {
      const p = processCpu(pid);
      if (!p) continue;
      const key = `${ns} ${p.program}`;
      byProgram.set(key, (byProgram.get(key) ?? 0) + p.seconds);
    }
  }
  return { at: Date.now(), byProgram, ...machineCpu() };
}

/**
 * The share of one core each program used between two readings (1 = one core busy), largest
 * first, with the machine's softirq and idle (all cores together, so at most 2 on this machine).
 */
export function cpuShare(before: Reading, after: Reading): Record<string, number> {
  const seconds = (after.at - before.at) / 1000;
  const share = (d: number) => Math.round((d / seconds) * 100) / 100;
  const rows = [...after.byProgram]
    .map(([k, v]) => [k, share(v - (before.byProgram.get(k) ?? 0))] as const)
    .filter(([, s]) => s >= 0.01)
    .sort((a, b) => b[1] - a[1]);
  return { ...Object.fromEntries(rows), "(softirq, all cores)": share(after.softirq - before.softirq), "(idle, all cores)": share(after.idle - before.idle) };
}
