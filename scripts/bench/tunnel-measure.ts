// What the tunnel benchmark measures with: curl and iperf3 in the test network's namespaces.
import { spawn, type ChildProcess } from "node:child_process";
import type { Topology } from "../lib/topology";

export const IPERF = "/usr/bin/iperf3";
export const CURL = "/usr/bin/curl";

/** `curl url` in the consumer's namespace: the body's size in bytes, or null when nothing came. */
export function curl(t: Topology, url: string): string | null {
  try {
    return t.exec(t.consumers[0], [CURL, "-s", "-o", "/dev/null", "-w", "%{size_download}", "--max-time", "5", url]).trim();
  } catch {
    return null;
  }
}

export function iperf(t: Topology, from: string, to: string, seconds: number, attempt = 1, reverse = false): number {
  let out: string;
  try {
    out = t.exec(from, [IPERF, "-c", to, "-t", String(seconds), "-J", ...(reverse ? ["-R"] : [])], { timeoutMs: (seconds + 20) * 1000 });
  } catch (err) {
    out = String((err as { stdout?: string }).stdout ?? "{}");
  }
  const result = JSON.parse(out || "{}");
  const bps = result.end?.sum_received?.bits_per_second;
  if (typeof bps === "number") return bps / 1e6;
  // iperf3 fails now and then on a loaded machine ("unable to receive control message"): once more.
  if (attempt < 2) return iperf(t, from, to, seconds, attempt + 1, reverse);
  throw new Error(`iperf3 to ${to} from ${from} failed: ${result.error ?? "no result"}`);
}

export function iperfServer(netns: string, address: string): ChildProcess {
  return spawn("/usr/sbin/ip", ["netns", "exec", netns, IPERF, "-s", "-B", address], { stdio: "ignore" });
}
