import type { TunnelCheck } from "../session/service";
import { spawner } from "./spawner";
import { inNetns } from "./system";

/**
 * What a tunnel's stage checks ask (docs/quality.md "Stage checks through a tunnel"), from the
 * consumer's settings: `name` a name the provider's resolver must answer with an address (default
 * none: the resolver must answer at all, which dnsmasq does for a plain name without asking
 * upstream), `url` an http URL with an IP address for host that answers `?bytes=N` with N bytes
 * (default none: first byte and throughput are not checked). Neither is a third party the node
 * contacts unless told to; with neither set a tunnel runs no checks.
 */
export interface TunnelCheckSettings {
  name?: string;
  url?: string;
}

export interface TunnelCheckSpec extends TunnelCheckSettings {
  /** The provider's resolver, on its tunnel address (IPv4). */
  resolver: string;
  maxBytes: number;
  timeoutMs: number;
}

/** What the check program prints: the raw findings, judged by `judge`. */
interface Findings {
  /** The plain name asked of the resolver: "answer" (any DNS answer), "refused" (an ICMP error came back), "none". */
  ping: "answer" | "refused" | "none";
  /** The configured name: "address" (resolved), "answer" (an answer without one: SERVFAIL, NXDOMAIN…), "refused", "none"; absent: no name. */
  name?: "address" | "answer" | "refused" | "none";
  /** ms to the first byte of the fetch; null: none came; absent: no URL. */
  firstByteMs?: number | null;
  bytes: number;
  ms: number;
}

/**
 * The check program, run by node in the tunnel's namespace (or in this one): the DNS questions and
 * the fetch go out at once, each within the time given, and the findings come back as one JSON line.
 * A program of its own because a socket of this process cannot enter another namespace.
 */
const PROGRAM = `
const spec = JSON.parse(process.argv[1]);
const dns = require("node:dns").promises;
const http = require("node:http");
function ask(name) {
  const r = new dns.Resolver({ timeout: Math.min(spec.timeoutMs, 2000), tries: 1 });
  r.setServers([spec.resolver]);
  return r.resolve4(name).then(
    (a) => (a.length > 0 ? "address" : "answer"),
    (e) => (e.code === "ETIMEOUT" || e.code === "ECANCELLED" ? "none" : e.code === "ECONNREFUSED" ? "refused" : "answer"),
  );
}
function fetchBytes() {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let first = null, bytes = 0, done = false;
    const url = new URL(spec.url);
    url.searchParams.set("bytes", String(spec.maxBytes));
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ firstByteMs: first === null ? null : first - t0, bytes, ms: first === null ? 0 : Date.now() - first });
    };
    const timer = setTimeout(finish, spec.timeoutMs);
    const req = http.get(url, { agent: false }, (res) => {
      res.on("data", (d) => { first ??= Date.now(); bytes += d.length; if (bytes >= spec.maxBytes) finish(); });
      res.on("end", finish);
      res.on("error", finish);
    });
    req.on("error", finish);
  });
}
Promise.all([ask("myst-ping"), spec.name ? ask(spec.name) : undefined, spec.url ? fetchBytes() : undefined]).then(([ping, name, data]) => {
  process.stdout.write(JSON.stringify({ ping, ...(name ? { name } : {}), ...(data ?? { bytes: 0, ms: 0 }) }) + "\\n");
});
`;

/**
 * The consumer's stage checks through a tunnel that routes its namespace: DNS (the provider's
 * resolver answers, and resolves `name` when one is set), the first byte and a short throughput
 * test (`url`). A tunnel through which nothing at all comes back (no DNS answer, no ICMP error, no
 * byte) fails at "first-byte", not at DNS: the provider carries nothing, which is what it must be
 * told; DNS fails only where the tunnel carries something and names still do not resolve.
 */
export async function checkThroughTunnel(spec: TunnelCheckSpec, netns?: string): Promise<TunnelCheck> {
  const argv = inNetns(netns, [process.execPath, "-e", PROGRAM, JSON.stringify(spec)]);
  // Generous: starting node in a namespace takes a while on a loaded machine.
  const out = await spawner.run(argv, "", spec.timeoutMs + 15_000);
  return judge(JSON.parse(out.trim().split("\n").pop() ?? "{}") as Findings);
}

/** The findings as stage results (exported for the unit tests). */
export function judge(f: Findings): TunnelCheck {
  const data: Omit<TunnelCheck, "dns"> =
    f.firstByteMs === undefined ? { firstByteMs: null, bytes: 0, ms: 0, dataChecked: false } : { firstByteMs: f.firstByteMs, bytes: f.bytes, ms: f.ms };
  const carries = f.ping !== "none" || (f.name !== undefined && f.name !== "none") || (f.firstByteMs ?? null) !== null;
  if (!carries) return { firstByteMs: null, bytes: 0, ms: 0 };
  const dns = f.name !== undefined ? f.name === "address" : f.ping === "answer";
  return { dns, ...data };
}
