import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import path from "node:path";
import { stopChild } from "./local-chain";

/**
 * The e2e and demo network, made of network namespaces (all named myst-<tag>-…):
 *
 *   consumer(s) 198.18.1.2, .3 … ──bridge── 198.18.1.1  provider  198.18.2.1 ── 198.18.2.2 internet host (HTTP "whoami" :8080)
 *                                                     192.168.77.1 ── 192.168.77.2 LAN host (private, HTTP :8080)
 *
 * Consumers have no default route: before a tunnel they reach only the provider's link. The
 * provider's default route goes to the internet host, whose server answers with the caller's IP.
 * Addresses are from 198.18.0.0/15 (benchmarking, never routed) and 192.168.77.0/24, and exist
 * only inside these namespaces.
 */
export interface Topology {
  tag: string;
  consumers: string[];
  provider: string;
  internet: string;
  lan: string;
  providerAddress: string;
  providerUplinkAddress: string;
  internetUrl: string;
  lanUrl: string;
  consumerAddress(i: number): string;
  /** Runs a command in a namespace and returns its stdout. */
  exec(netns: string, argv: string[], options?: { timeoutMs?: number }): string;
  /** Removes everything: processes started here (by PID), then the namespaces. */
  down(): Promise<void>;
}

const IP = "/usr/sbin/ip";

function ip(...args: string[]): void {
  execFileSync(IP, args, { stdio: ["ignore", "ignore", "pipe"] });
}

export async function topologyUp(options: { tag?: string; consumers?: number } = {}): Promise<Topology> {
  const tag = options.tag ?? crypto.randomBytes(2).toString("hex");
  const ns = (name: string) => `myst-${tag}-${name}`;
  const consumers = Array.from({ length: options.consumers ?? 1 }, (_v, i) => ns(`c${i + 1}`));
  const [provider, internet, lan] = [ns("p"), ns("i"), ns("l")];
  const all = [...consumers, provider, internet, lan];
  const children: ChildProcess[] = [];

  const down = async () => {
    await Promise.all(children.map((c) => stopChild(c)));
    for (const n of all) {
      try {
        const pids = execFileSync(IP, ["netns", "pids", n], { encoding: "utf8" }).split(/\s+/).filter(Boolean);
        for (const pid of pids) process.kill(Number(pid), "SIGKILL");
      } catch {
        // namespace already gone
      }
      try {
        ip("netns", "del", n);
      } catch {
        // not there
      }
    }
  };

  try {
    for (const n of all) {
      ip("netns", "add", n);
      ip("-n", n, "link", "set", "lo", "up");
    }
    const veth = (a: string, aName: string, b: string, bName: string) => {
      const id = crypto.randomBytes(3).toString("hex");
      ip("link", "add", `mv${id}a`, "type", "veth", "peer", "name", `mv${id}b`);
      ip("link", "set", `mv${id}a`, "netns", a, "name", aName);
      ip("link", "set", `mv${id}b`, "netns", b, "name", bName);
      ip("-n", a, "link", "set", aName, "up");
      ip("-n", b, "link", "set", bName, "up");
    };
    // Consumers ↔ provider, through a bridge in the provider.
    ip("-n", provider, "link", "add", "br0", "type", "bridge");
    ip("-n", provider, "link", "set", "br0", "up");
    ip("-n", provider, "addr", "add", "198.18.1.1/24", "dev", "br0");
    consumers.forEach((c, i) => {
      veth(c, "eth0", provider, `cons${i + 1}`);
      ip("-n", provider, "link", "set", `cons${i + 1}`, "master", "br0");
      ip("-n", c, "addr", "add", `198.18.1.${i + 2}/24`, "dev", "eth0");
    });
    // Provider ↔ internet host (the provider's uplink and default route).
    veth(provider, "wan0", internet, "eth0");
    ip("-n", provider, "addr", "add", "198.18.2.1/24", "dev", "wan0");
    ip("-n", internet, "addr", "add", "198.18.2.2/24", "dev", "eth0");
    ip("-n", provider, "route", "add", "default", "via", "198.18.2.2");
    // Provider ↔ a host on its private LAN.
    veth(provider, "lan0", lan, "eth0");
    ip("-n", provider, "addr", "add", "192.168.77.1/24", "dev", "lan0");
    ip("-n", lan, "addr", "add", "192.168.77.2/24", "dev", "eth0");
    ip("-n", lan, "route", "add", "default", "via", "192.168.77.1");

    const whoami = path.join(__dirname, "..", "netns", "whoami.js");
    for (const [n, address] of [[internet, "198.18.2.2"], [lan, "192.168.77.2"]]) {
      const child = spawn(IP, ["netns", "exec", n, process.execPath, whoami, address, "8080"], { stdio: ["ignore", "pipe", "inherit"] });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once("data", () => resolve());
        child.once("exit", (code) => reject(new Error(`whoami server in ${n} exited (${code})`)));
      });
    }
  } catch (err) {
    await down();
    throw err;
  }

  return {
    tag,
    consumers,
    provider,
    internet,
    lan,
    providerAddress: "198.18.1.1",
    providerUplinkAddress: "198.18.2.1",
    internetUrl: "http://198.18.2.2:8080/",
    lanUrl: "http://192.168.77.2:8080/",
    consumerAddress: (i) => `198.18.1.${i + 2}`,
    exec: (netns, argv, o = {}) => execFileSync(IP, ["netns", "exec", netns, ...argv], { encoding: "utf8", timeout: o.timeoutMs ?? 10_000, stdio: ["ignore", "pipe", "pipe"] }),
    down,
  };
}

/** Fetches `url` from inside `netns` (node's fetch in a child process): the body, or null when unreachable. */
export function fetchFrom(topology: Topology, netns: string, url: string, timeoutMs = 3000): string | null {
  const script = `fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(${timeoutMs})}).then(r=>r.text()).then(t=>process.stdout.write(t),()=>process.exit(3))`;
  try {
    return topology.exec(netns, [process.execPath, "-e", script], { timeoutMs: timeoutMs + 5000 }).trim();
  } catch {
    return null;
  }
}

/** Downloads `url` from inside `netns` and returns how many bytes arrived (null when unreachable). */
export function downloadFrom(topology: Topology, netns: string, url: string, timeoutMs = 30_000): number | null {
  const script = `fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(${timeoutMs})}).then(r=>r.arrayBuffer()).then(b=>process.stdout.write(String(b.byteLength)),()=>process.exit(3))`;
  try {
    return Number(topology.exec(netns, [process.execPath, "-e", script], { timeoutMs: timeoutMs + 5000 }).trim());
  } catch {
    return null;
  }
}
