import { promises as dns } from "node:dns";
import http from "node:http";
import type { TunnelCheck } from "../session/service";
import { RunningClock } from "./running-clock";
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

/**
 * Whether the in-process checks run without being asked (docs/quality.md "On by default"): only if they cost at most
 * 2 ms at the p50 of connect → first byte (`npm run bench -- tunnel`).
 */
const IN_PROCESS_BY_DEFAULT = false;

/** What the checks find (the check program prints them): the raw findings, judged by `judge`. */
export interface Findings {
  /** The plain name asked of the resolver: "answer" (any DNS answer), "refused" (an ICMP error came back), "none". */
  ping: "address" | "answer" | "refused" | "none";
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
      // At least a millisecond: a body read in one go (it waited in the socket while this program was not
      // running, or the link is that fast) came in 0 ms of the clock, which is a rate, not none.
      resolve({ firstByteMs: first === null ? null : first - t0, bytes, ms: first === null ? 0 : Math.max(1, Date.now() - first) });
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
 *
 * In this process when the tunnel routes this process's own namespace (`netns` none: no program
 * to start, so the checks cost one round trip through the tunnel); in a program started in the
 * tunnel's namespace otherwise (a socket of this process cannot enter another namespace).
 */
export async function checkThroughTunnel(spec: TunnelCheckSpec, netns?: string): Promise<TunnelCheck> {
  return judge(netns === undefined ? await findInProcess(spec) : await findInProgram(spec, netns));
}

/**
 * The stage checks a consumer's tunnel runs, or none: `resolver` is the provider's (on its tunnel
 * address, IPv4), absent when the tunnel does not route everything (a confined `myst run`) or the
 * provider names none. They run only when the settings ask for them (`name` or `url`), unless
 * `IN_PROCESS_BY_DEFAULT` turns on the in-process ones (off: they cost more than the 2 ms bar on
 * connect, docs/quality.md). In the node's own namespace (`netns` none) they run in-process (DNS: the
 * answer is also the first byte through the tunnel; with `url`, first byte and throughput); in
 * another namespace in a program started there.
 */
export function stageChecks(
  settings: TunnelCheckSettings | undefined,
  resolver: string | undefined,
  netns: string | undefined,
): ((o: { maxBytes: number; timeoutMs: number }) => Promise<TunnelCheck>) | undefined {
  if (!resolver) return undefined;
  if (!(netns === undefined && IN_PROCESS_BY_DEFAULT) && !settings?.name && !settings?.url) return undefined;
  return (o) => checkThroughTunnel({ ...settings, resolver, ...o }, netns);
}

/** The checks in a program of their own, in namespace `netns` (exported for the unit tests, which run it in this one). */
export async function findInProgram(spec: TunnelCheckSpec, netns?: string): Promise<Findings> {
  const argv = inNetns(netns, [process.execPath, "-e", PROGRAM, JSON.stringify(spec)]);
  // Generous: starting node in a namespace takes a while on a loaded machine.
  const out = await spawner.run(argv, "", spec.timeoutMs + 15_000);
  return JSON.parse(out.trim().split("\n").pop() ?? "{}") as Findings;
}

/**
 * The checks in this process, the same questions as PROGRAM's, timed on its running time
 * (running-clock.ts): a stall of this node's event loop is not the provider's.
 */
export async function findInProcess(spec: TunnelCheckSpec): Promise<Findings> {
  const clock = new RunningClock().start();
  try {
    const [ping, name, data] = await Promise.all([
      ask(spec, "myst-ping", clock),
      spec.name ? ask(spec, spec.name, clock) : undefined,
      spec.url ? fetchBytes(spec, spec.url, clock) : undefined,
    ]);
    return { ping, ...(name ? { name } : {}), ...(data ?? { bytes: 0, ms: 0 }) };
  } finally {
    clock.stop();
  }
}

/** One question to the provider's resolver: "address", "answer" (any other answer), "refused" (an ICMP error), "none". */
function ask(spec: TunnelCheckSpec, name: string, clock: RunningClock): Promise<NonNullable<Findings["name"]>> {
  const timeoutMs = Math.min(spec.timeoutMs, 2000);
  // The resolver's own timeout is on the wall clock: the deadline is the running clock's, this only a bound.
  const resolver = new dns.Resolver({ timeout: timeoutMs * 3, tries: 1 });
  resolver.setServers([spec.resolver]);
  return new Promise((resolve) => {
    const cancel = clock.after(timeoutMs, () => {
      resolver.cancel();
      resolve("none");
    });
    resolver.resolve4(name).then(
      (a) => {
        cancel();
        resolve(a.length > 0 ? "address" : "answer");
      },
      (e: NodeJS.ErrnoException) => {
        cancel();
        resolve(e.code === "ETIMEOUT" || e.code === "ECANCELLED" ? "none" : e.code === "ECONNREFUSED" ? "refused" : "answer");
      },
    );
  });
}

/** `url?bytes=maxBytes`: ms (running time) to the first byte, then the bytes and their time, within the deadline. */
function fetchBytes(spec: TunnelCheckSpec, target: string, clock: RunningClock): Promise<Pick<Findings, "firstByteMs" | "bytes" | "ms">> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let first: number | null = null;
    let firstByteMs: number | null = null;
    let bytes = 0;
    let done = false;
    const url = new URL(target);
    url.searchParams.set("bytes", String(spec.maxBytes));
    const finish = () => {
      if (done) return;
      done = true;
      cancel();
      req.destroy();
      resolve({ firstByteMs, bytes, ms: first === null ? 0 : Math.max(1, clock.running(first)) });
    };
    const cancel = clock.after(spec.timeoutMs, finish);
    const req = http.get(url, { agent: false }, (res) => {
      res.on("data", (d: Buffer) => {
        if (first === null) {
          first = Date.now();
          firstByteMs = clock.running(t0, first);
        }
        bytes += d.length;
        if (bytes >= spec.maxBytes) finish();
      });
      res.on("end", finish);
      res.on("error", finish);
    });
    req.on("error", finish);
  });
}

/** The findings as stage results (exported for the unit tests). */
export function judge(f: Findings): TunnelCheck {
  const data: Omit<TunnelCheck, "dns"> =
    f.firstByteMs === undefined ? { firstByteMs: null, bytes: 0, ms: 0, dataChecked: false } : { firstByteMs: f.firstByteMs, bytes: f.bytes, ms: f.ms };
  const carries = f.ping !== "none" || (f.name !== undefined && f.name !== "none") || (f.firstByteMs ?? null) !== null;
  if (!carries) return { firstByteMs: null, bytes: 0, ms: 0 };
  const dns = f.name !== undefined ? f.name === "address" : f.ping === "answer" || f.ping === "address";
  return { dns, ...data };
}
