// The proxy benchmark's measure of one stream and its floor (docs/proxy.md "The floor"): curl downloads
// in the consumer's namespace, straight, through the proxy and through two plain relays placed where the
// proxy's two ends are, each timed with the CPU per byte it cost (each relay or end process and the
// whole machine, from /proc).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { program } from "../../node/services/system";
import type { Topology } from "../lib/topology";
import { round } from "./stats";
import { CURL } from "./tunnel-measure";

/** CPU seconds a process has used so far (user + system, all its threads), from /proc. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds the whole machine has spent so far (every core, all but idle and iowait), from /proc/stat. */
function machineCpuSeconds(): number {
  const jiffies = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return (jiffies.reduce((a, b) => a + b, 0) - jiffies[3] - jiffies[4]) / 100;
}

/** The CPU `pids` and the whole machine spend per byte (ns) while `run` moves `bytes`; `run`'s result. */
export function cpuPerByte<T>(pids: number[], bytes: number, run: () => T): { processes: number[]; machine: number; result: T } {
  const before = pids.map(cpuSeconds);
  const machine0 = machineCpuSeconds();
  const result = run();
  const perByte = (seconds: number) => round((seconds * 1e9) / bytes, 2);
  return { processes: pids.map((pid, i) => perByte(cpuSeconds(pid) - before[i])), machine: perByte(machineCpuSeconds() - machine0), result };
}

/**
 * `count` downloads of `bytes` each at once with curl in the consumer's namespace (through `proxy` when
 * given; from `url`, the internet host unless given): Mbit/s of the whole. Each must bring exactly
 * `bytes` of body; what curl received in all (headers and body) is added to `received` when given.
 */
export function download(t: Topology, bytes: number, count: number, proxy?: string, url = t.internetUrl, received?: { bytes: number }): number {
  const urls = Array.from({ length: count }, (_, i) => `${url}?bytes=${bytes}&n=${i}`);
  const args = [CURL, "-s", "--parallel", "--parallel-max", String(count), ...(proxy ? ["--proxy", proxy] : []), "-w", "%{size_download} %{size_header}\\n"];
  const t0 = process.hrtime.bigint();
  const r = spawnSync("/usr/sbin/ip", ["netns", "exec", t.consumers[0], ...args, ...urls.flatMap((u) => ["-o", "/dev/null", u])], {
    encoding: "utf8",
    timeout: 300_000,
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const got = r.stdout
    .trim()
    .split("\n")
    .map((line) => line.split(" ").map(Number));
  if (got.length !== count || got.some(([body]) => body !== bytes))
    throw new Error(`download${proxy ? ` through ${proxy}` : ""} incomplete: ${r.stdout} ${r.stderr}`);
  if (received) received.bytes += got.reduce((sum, [body, header]) => sum + body + header, 0);
  return (bytes * count * 8) / seconds / 1e6;
}

/** A process that prints JSON lines: the first one (it is ready), and all it printed so far. */
export interface LineChild {
  child: ChildProcess;
  ready: Promise<unknown>;
  lines(): unknown[];
}

export function linesOf(child: ChildProcess, what: string): LineChild {
  let out = "";
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  child.stdout!.on("data", (d) => (out += d));
  const lines = () =>
    out
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as unknown);
  const ready = new Promise((resolve, reject) => {
    const check = () => {
      if (out.includes("\n")) {
        child.stdout!.off("data", check);
        resolve(lines()[0]);
      }
    };
    child.stdout!.on("data", check);
    child.once("exit", (code) => reject(new Error(`${what} exited ${code}: ${err}`)));
  });
  ready.catch(() => undefined);
  return { child, ready, lines };
}

/**
 * A relay with splice(2) (scripts/bench/splice-relay.py: socket → pipe → socket, no copy through user
 * space, one thread per direction) in `netns`, on `port` to `host`:`targetPort`. Python 3.10+ (os.splice);
 * scripts/install.sh installs Debian's python3. Each relayed connection is a line {up, down} of what it moved.
 */
export function spliceRelay(netns: string, port: number, host: string, targetPort: number): LineChild {
  const script = path.join(__dirname, "splice-relay.py");
  const child = spawn("/usr/sbin/ip", ["netns", "exec", netns, program("python3"), "-I", "-S", "-u", script, String(port), host, String(targetPort)], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  return linesOf(child, `the splice relay in ${netns}`);
}

/**
 * That a splice relay moved, on the connections it ended, exactly what curl received through it (all
 * of it, and not a byte more), and nothing went wrong on any of them. Waits up to 5 s for the lines of
 * `connections` connections (a relay reports a connection once both its directions have ended).
 */
export async function checkSpliced(relay: LineChild, connections: number, received: number, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  let moved = relay.lines().slice(1) as { up?: number; down?: number; error?: string }[];
  while (moved.length < connections && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    moved = relay.lines().slice(1) as typeof moved;
  }
  const failed = moved.find((m) => m.error !== undefined);
  if (failed) throw new Error(`${what}: ${failed.error}`);
  const down = moved.reduce((sum, m) => sum + (m.down ?? 0), 0);
  if (moved.length !== connections || down !== received)
    throw new Error(`${what} moved ${down} bytes on ${moved.length} connections; curl received ${received} on ${connections}`);
}

/** One path of the single-stream measure: its Mbit/s and CPU per byte, the median of each over the runs. */
export interface PathFigures {
  mbps: number;
  /** The whole machine's CPU per byte (ns). */
  machine: number;
  /** Each of the path's own processes (ns per byte), in the order given. */
  processes: number[];
  /** Cores the whole machine kept busy meanwhile (its CPU seconds over the download's seconds; 2 is all of them here). */
  cores: number;
}

/**
 * Each path's download, interleaved run by run (so that a change in the shared machine's load falls on
 * every path alike), each timed with its CPU per byte; the median of each figure over `runs`.
 */
export function interleaved(paths: Record<string, { pids: number[]; bytes: number; run: () => number }>, runs: number): Record<string, PathFigures> {
  const samples: Record<string, PathFigures[]> = {};
  for (let r = 0; r < runs; r++)
    for (const [name, p] of Object.entries(paths)) {
      const { processes, machine, result } = cpuPerByte(p.pids, p.bytes, p.run);
      // ns per byte × bytes per ns (Mbit/s ÷ 8,000): CPU seconds per second.
      (samples[name] ??= []).push({ mbps: result, machine, processes, cores: (machine * result) / 8000 });
    }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return Object.fromEntries(
    Object.entries(samples).map(([name, s]) => [
      name,
      {
        mbps: round(median(s.map((x) => x.mbps)), 1),
        machine: median(s.map((x) => x.machine)),
        processes: s[0].processes.map((_, i) => median(s.map((x) => x.processes[i]))),
        cores: round(median(s.map((x) => x.cores)), 2),
      },
    ]),
  );
}
