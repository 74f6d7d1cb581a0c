import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import type { Topology } from "./topology";

export const IP = "/usr/sbin/ip";
const NFT = "/usr/sbin/nft";

export function nft(netns: string, rules: string): void {
  execFileSync(IP, ["netns", "exec", netns, NFT, "-f", "-"], { input: rules, stdio: ["pipe", "ignore", "pipe"] });
}

export function ip(...args: string[]): void {
  execFileSync(IP, args, { stdio: ["ignore", "ignore", "pipe"] });
}

export function inNs(netns: string, argv: string[]): void {
  execFileSync(IP, ["netns", "exec", netns, ...argv], { stdio: ["ignore", "ignore", "pipe"] });
}

/**
 * curl in `netns`, as an application there would fetch `url` (the namespace's resolver and routes;
 * no proxy from the environment). curl, not node's fetch: a node start costs ~0.2 s of CPU, and the
 * suite fetches hundreds of times. Exits non-zero (so `exec` throws) when nothing was fetched.
 */
const curl = (url: string, timeoutMs: number, ...args: string[]) => [
  "/usr/bin/curl",
  "-sSg",
  "--noproxy",
  "*",
  "--max-time",
  String(timeoutMs / 1000),
  ...args,
  url,
];

/** Fetches `url` from inside `netns`: the body, or null when unreachable. */
export function fetchFrom(topology: Topology, netns: string, url: string, timeoutMs = 3000): string | null {
  try {
    return topology.exec(netns, curl(url, timeoutMs), { timeoutMs: timeoutMs + 5000 }).trim();
  } catch {
    return null;
  }
}

/** Downloads `url` from inside `netns` and returns how many bytes arrived (null when unreachable). */
export function downloadFrom(topology: Topology, netns: string, url: string, timeoutMs = 30_000): number | null {
  try {
    return Number(topology.exec(netns, curl(url, timeoutMs, "-o", "/dev/null", "-w", "%{size_download}"), { timeoutMs: timeoutMs + 5000 }).trim());
  } catch {
    return null;
  }
}

/** The consumer's routes, IPv4 and IPv6, as text: to compare before and after a session. */
export function routesOf(topology: Topology, netns: string): string {
  return ["-4", "-6"].map((family) => topology.exec(netns, [IP, family, "route", "show", "table", "all"])).join("");
}

/**
 * Resolves `name` from inside `netns` as an application would (getaddrinfo, so the namespace's
 * /etc/resolv.conf): the addresses, or null when resolution fails. `server`: ask that DNS server
 * directly instead (UDP, as `dig @server` would).
 */
export function resolveFrom(topology: Topology, netns: string, name: string, options: { server?: string; family?: 4 | 6 } = {}): string[] | null {
  const script = options.server
    ? `const r=new (require("dns").promises.Resolver)({timeout:1500,tries:1});r.setServers([${JSON.stringify(options.server)}]);r.${options.family === 6 ? "resolve6" : "resolve4"}(${JSON.stringify(name)}).then(a=>process.stdout.write(a.join(" ")),()=>process.exit(3))`
    : `require("dns").promises.lookup(${JSON.stringify(name)},{all:true${options.family ? `,family:${options.family}` : ""}}).then(a=>process.stdout.write(a.map(x=>x.address).join(" ")),()=>process.exit(3))`;
  try {
    return topology.exec(netns, [process.execPath, "-e", script], { timeoutMs: 20_000 }).trim().split(" ").filter(Boolean);
  } catch {
    return null;
  }
}

/**
 * An application in `netns` that keeps trying to fetch `url` (every 20 ms), so a test can count at
 * the far end whether any packet slips out while something changes. Stop it by its PID (kill).
 */
export function keepFetching(netns: string, url: string): ChildProcess {
  const script = `setInterval(()=>fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(200)}).catch(()=>{}),20)`;
  return spawn(IP, ["netns", "exec", netns, process.execPath, "-e", script], { stdio: "ignore" });
}

/**
 * `env` for a node on the consumer's own machine (run it with `{ netns }`): its chain, broker and
 * discovery, which listen on 127.0.0.1 in the root namespace, published on the topology's services
 * host and reached over its routers, as on the internet — never on the consumer's loopback.
 */
export async function onConsumerMachine(topology: { publish(port: number): Promise<string> }, env: NodeJS.ProcessEnv): Promise<NodeJS.ProcessEnv> {
  const published = new Map<number, string>();
  const moved = async (text: string) => {
    const url = new URL(text);
    if (url.hostname !== "127.0.0.1") throw new Error(`onConsumerMachine: ${text} is not on 127.0.0.1`);
    const port = Number(url.port);
    if (!published.has(port)) published.set(port, await topology.publish(port));
    url.host = published.get(port)!;
    return url.toString().replace(/\/$/, "");
  };
  const brokers = await Promise.all(env.MYST_BROKER_URLS!.split(",").map(moved));
  const discovery = await Promise.all(env.MYST_DISCOVERY_URLS!.split(",").map(moved));
  return { ...env, MYST_RPC_URL: await moved(env.MYST_RPC_URL!), MYST_BROKER_URLS: brokers.join(","), MYST_DISCOVERY_URLS: discovery.join(",") };
}
