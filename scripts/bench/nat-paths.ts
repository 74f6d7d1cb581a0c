// Where a punched path's throughput goes, one difference at a time (`npm run bench -- nat-paths`, bench/nat-paths.md;
// docs/direct-channel.md, "Throughput on a punched path").
//
// One topology, one consumer behind an eim home router, three providers at once, each its own node and identity:
//   p1  public: its own address, on a router (g) that routes to it without NAT (the nat bench's baseline);
//   p2  behind an eim home router (g2: masquerade, LAN bridge, no port forwarded): reached by a hole punch;
//   p3  behind the same kind of home router (g3) that forwards every port to it (a DMZ host, as the demo's provider
//       is public): reached at its forwarded port, with no STUN server set (its proposal names its public address).
// Variants (BENCH_NAT_PATHS, default all but symmetric), each one upload (iperf3, consumer → internet host, BENCH_SECONDS, default
// 10) through a fresh `myst connect <provider>`:
//   public           p1
//   public+bridge    p1, its router's LAN side moved behind a bridge as a home router's is (undone after)
//   punched          p2
//   punched-bridge   p2, its router's LAN bridge replaced by its one port (undone after)
//   punched-brnf     p2, its router's bridge kept but not passed through netfilter (net.bridge.bridge-nf-call-iptables=0
//                    in that namespace; it is 1 there, as br_netfilter is built in: a bridged packet also crosses the
//                    IPv4 hooks at the bridge)
//   forwarded        p3
//   symmetric        only when named (instead of forwarded): p3 behind a symmetric router (`masquerade fully-random`),
//                    reached by the birthday search, its tunnel's packets crossing the provider's myst_punch table
//   symmetric-noraw  the same, myst_punch's two raw-hook chains emptied once the tunnels met (its NAT kept)
// Each round (BENCH_ROUNDS, default 4) runs `public` first, then the others in an order that turns round by round. For
// each run: Mbit/s, TCP retransmits, UDP receive-buffer drops in the provider's and the consumer's namespaces, and the
// whole machine's busy CPU (/proc/stat) per Gbit carried. At the end, per variant: mean Mbit/s and the median of the
// rounds' ratios to `public`. A connect that fails is recorded, the consumer's log so far saved to a file it names
// (MYST_LOG_LEVEL=info for more than warnings), and the round goes on. With BENCH_NAT_PATHS_PERF=<dir>, `perf record -a` samples the whole machine during each
// upload into <dir>/<variant>-<round>.data (`perf report -i … --sort sym` shows where the CPU went; it costs throughput).
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { stopChild, freePort, startLocalChain } from "../lib/local-chain";
import { buildCli, cliEnv, depositWithCli, myst, mystBackground, registerWithCli, startCliDiscovery } from "../lib/myst-cli";
import { startNatsServer } from "../lib/nats-server";
import { missingE2EPrerequisites } from "../lib/prereqs";
import { tempDir } from "../lib/tmp";
import { onConsumerMachine, topologyUp, type Topology } from "../lib/topology";
import { until } from "../lib/until";
import { IPERF, iperfServer } from "./tunnel-measure";
import { round, writeResults } from "./stats";

const VARIANTS = ["public", "public+bridge", "punched", "punched-bridge", "punched-brnf", "forwarded", "symmetric", "symmetric-noraw"] as const;
type Variant = (typeof VARIANTS)[number];
/** Which provider (index into topology.providers) each variant buys from. */
const PROVIDER_OF: Record<Variant, number> = {
  public: 0,
  "public+bridge": 0,
  punched: 1,
  "punched-bridge": 1,
  "punched-brnf": 1,
  forwarded: 2,
  symmetric: 2,
  "symmetric-noraw": 2,
};

export interface PathRun {
  variant: Variant;
  round: number;
  mbps: number;
  retransmits: number;
  /** UDP datagrams dropped for a full receive buffer (/proc/net/snmp Udp RcvbufErrors) during the run. */
  rcvbufDrops: { provider: number; consumer: number };
  /** The whole machine's busy CPU (all cores, ms) per Gbit carried, and the share of it in softirq. */
  cpuMsPerGbit: number;
  softirqShare: number;
  /** The tunnel path `connect` reported. */
  path: string;
  /** Whether the provider's namespace held the myst_punch table (punch-route.ts) while iperf3 ran. */
  punchTable: boolean;
}

function hasPunchTable(netns: string): boolean {
  try {
    execFileSync("/usr/sbin/ip", ["netns", "exec", netns, "/usr/sbin/nft", "list", "table", "ip", "myst_punch"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const run = (netns: string, argv: string[]) => execFileSync("/usr/sbin/ip", ["netns", "exec", netns, ...argv], { encoding: "utf8" });

/** UDP RcvbufErrors so far in `netns`. */
function rcvbufErrors(netns: string): number {
  const lines = run(netns, ["cat", "/proc/net/snmp"])
    .split("\n")
    .filter((l) => l.startsWith("Udp:"));
  const [names, values] = lines.map((l) => l.trim().split(/\s+/));
  return Number(values[names.indexOf("RcvbufErrors")]);
}

/** The machine's CPU jiffies so far: busy (not idle, not iowait) and softirq. */
function cpuJiffies(): { busy: number; softirq: number } {
  const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], softirq: f[6] };
}

function iperfUpload(netns: string, to: string, seconds: number): { mbps: number; retransmits: number } {
  for (let attempt = 1; ; attempt++) {
    let out: string;
    try {
      out = run(netns, [IPERF, "-c", to, "-t", String(seconds), "-J"]);
    } catch (err) {
      out = String((err as { stdout?: string }).stdout ?? "{}");
    }
    const r = JSON.parse(out || "{}");
    const bps = r.end?.sum_received?.bits_per_second;
    if (typeof bps === "number") return { mbps: bps / 1e6, retransmits: r.end?.sum_sent?.retransmits ?? 0 };
    if (attempt >= 2) throw new Error(`iperf3 from ${netns} to ${to} failed: ${r.error ?? "no result"}`);
  }
}

/**
 * The live changes a variant makes to a router, and their undoing. The neighbours are flushed on both sides: the
 * router's LAN address moves to another device, with another link-layer address.
 */
function reshape(t: Topology, variant: Variant, action: "do" | "undo"): void {
  const ip = (netns: string, ...args: string[]) => run(netns, ["/usr/sbin/ip", ...args]);
  if (variant === "public+bridge") {
    const [g, p] = [t.gateway, t.providers[0]];
    if (action === "do") {
      ip(g, "link", "add", "lanbr", "type", "bridge");
      ip(g, "link", "set", "lanbr", "up");
      ip(g, "addr", "flush", "dev", "lan0");
      ip(g, "link", "set", "lan0", "master", "lanbr");
      ip(g, "addr", "add", "198.18.10.1/24", "dev", "lanbr");
      ip(g, "-6", "addr", "add", "2001:db8:4::1/64", "dev", "lanbr", "nodad");
    } else {
      ip(g, "link", "del", "lanbr");
      ip(g, "addr", "add", "198.18.10.1/24", "dev", "lan0");
      ip(g, "-6", "addr", "add", "2001:db8:4::1/64", "dev", "lan0", "nodad");
    }
    ip(p, "neigh", "flush", "all");
    ip(g, "neigh", "flush", "all");
  } else if (variant === "punched-bridge") {
    const [g2, p2] = [`myst-${t.tag}-g2`, t.providers[1]];
    if (action === "do") {
      ip(g2, "link", "set", "port0", "nomaster");
      ip(g2, "addr", "del", "192.168.89.1/24", "dev", "lan0");
      ip(g2, "addr", "add", "192.168.89.1/24", "dev", "port0");
    } else {
      ip(g2, "addr", "del", "192.168.89.1/24", "dev", "port0");
      ip(g2, "link", "set", "port0", "master", "lan0");
      ip(g2, "addr", "add", "192.168.89.1/24", "dev", "lan0");
    }
    ip(p2, "neigh", "flush", "all");
    ip(g2, "neigh", "flush", "all");
  } else if (variant === "punched-brnf") {
    run(`myst-${t.tag}-g2`, ["/usr/sbin/sysctl", "-qw", `net.bridge.bridge-nf-call-iptables=${action === "do" ? 0 : 1}`]);
  }
}

function selectedVariants(list = process.env.BENCH_NAT_PATHS): Variant[] {
  if (!list) return VARIANTS.filter((v) => !v.startsWith("symmetric"));
  const wanted = list.split(",").map((v) => v.trim());
  const unknown = wanted.filter((w) => !(VARIANTS as readonly string[]).includes(w));
  if (unknown.length) throw new Error(`BENCH_NAT_PATHS: no variant ${unknown.join(", ")} (variants: ${VARIANTS.join(", ")})`);
  if (wanted.some((w) => w.startsWith("symmetric")) && wanted.includes("forwarded"))
    throw new Error("BENCH_NAT_PATHS: symmetric and forwarded are the same third provider: name one");
  return ["public", ...(wanted as Variant[]).filter((v) => v !== "public")];
}

export async function benchNatPaths(): Promise<PathRun[]> {
  const variants = selectedVariants();
  const rounds = Number(process.env.BENCH_ROUNDS ?? 4);
  const seconds = Number(process.env.BENCH_SECONDS ?? 10);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`BENCH_ROUNDS is not a positive whole number: ${process.env.BENCH_ROUNDS}`);
  const missing = missingE2EPrerequisites();
  if (!fs.existsSync(IPERF)) missing.push("iperf3");
  if (!fs.existsSync("/usr/bin/turnserver")) missing.push("coturn");
  if (missing.length) throw new Error(`the nat-paths benchmark needs: ${missing.join(", ")}`);
  buildCli();
  const stops: (() => Promise<unknown>)[] = [];
  const runs: PathRun[] = [];
  /** Connects that failed: recorded and reported, the round going on with its next variant. */
  const failures: string[] = [];
  const loadBefore = fs.readFileSync("/proc/loadavg", "utf8").trim();
  try {
    const [chain, nats] = await Promise.all([startLocalChain(), startNatsServer()]);
    stops.push(
      () => chain.stop(),
      () => nats.stop(),
    );
    const base = cliEnv(chain, nats.url, await freePort());
    const dirs = ["p1", "p2", "p3", "c"].map((who) => tempDir(`myst-bench-natpaths-${who}-`));
    stops.push(async () => dirs.forEach((d) => d.cleanup()));
    const providerIds: string[] = [];
    for (const d of dirs.slice(0, 3)) providerIds.push(await registerWithCli(chain, { ...base, MYST_DATA_DIR: d.dir }));
    await registerWithCli(chain, { ...base, MYST_DATA_DIR: dirs[3].dir });
    await depositWithCli({ ...base, MYST_DATA_DIR: dirs[3].dir }, "5", "1");
    const discovery = await startCliDiscovery(base);
    stops.push(() => discovery.stop());

    const tag = process.env.BENCH_TAG ?? "np";
    const t = await topologyUp({
      tag,
      consumers: 1,
      providers: 3,
      nat: variants.some((v) => v.startsWith("symmetric"))
        ? { provider: "public", secondProvider: "eim", thirdProvider: "symmetric", consumer: "eim" }
        : { provider: "public", secondProvider: "eim", thirdProvider: "eim", forwardedProviders: [3], consumer: "eim" },
    });
    stops.push(() => t.down());
    const nat = t.nat!;
    const iperfd = iperfServer(t.internet, t.internetAddress);
    stops.push(() => stopChild(iperfd));
    const machine = {
      ...(await onConsumerMachine(t, base)),
      MYST_STUN_SERVERS: nat.stunServers.join(","),
      MYST_LOG_LEVEL: process.env.MYST_LOG_LEVEL ?? "warn",
    };
    const bridgeNf = run(`myst-${tag}-g2`, ["/usr/sbin/sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]).trim();
    console.log(`net.bridge.bridge-nf-call-iptables in the home routers: ${bridgeNf}`);

    for (const [i, netns] of t.providers.entries()) {
      // The forwarded provider measures nothing: its proposal names its router's address and the forwarded port.
      const env = { ...machine, MYST_DATA_DIR: dirs[i].dir, ...(i === 2 && !variants.some((v) => v.startsWith("symmetric")) ? { MYST_STUN_SERVERS: "" } : {}) };
      const daemon = mystBackground(["daemon", "--api-port", "0"], env, { netns });
      stops.push(() => daemon.stop());
      await until(() => daemon.output().includes("REST API:") || daemon.child.exitCode !== null, `provider ${i + 1}'s daemon to listen`, 60_000);
      if (daemon.child.exitCode !== null) throw new Error(`provider ${i + 1}'s daemon exited: ${daemon.output()}`);
      const args = ["service", "start", "wireguard", "--public-ip", nat.publicAddressOf(netns), "--country", "DE", "--bandwidth", "0"];
      const r = await myst([...args, "--device", `mwp${tag}${i + 1}`, "--json"], env, 120_000, { netns });
      if (r.code !== 0) throw new Error(`provider ${i + 1}: myst service start wireguard: ${r.stderr}`);
    }
    const consumerNs = t.consumers[0];
    const cEnv = { ...machine, MYST_DATA_DIR: dirs[3].dir };
    const consumer = mystBackground(["daemon", "--api-port", "0"], cEnv, { netns: consumerNs });
    stops.push(() => consumer.stop());
    await until(() => consumer.output().includes("REST API:") || consumer.child.exitCode !== null, "the consumer daemon to listen", 60_000);
    await until(
      async () => {
        const r = await myst(["proposals", "--service-type", "wireguard", "--json"], cEnv, 60_000, { netns: consumerNs });
        return r.code === 0 && JSON.parse(r.stdout).length === 3;
      },
      "the three proposals in discovery",
      60_000,
    );

    // A first upload through the public provider, not counted: the first run after the topology came up was the
    // slowest of its round in early runs (344 against 426-474 Mbit/s).
    const warm = await myst(["connect", providerIds[0], "--service", "wireguard", "--json"], cEnv, 120_000, { netns: consumerNs });
    if (warm.code !== 0) throw new Error(`warm-up: myst connect: ${warm.stderr.trim().split("\n").pop()}`);
    iperfUpload(consumerNs, t.internetAddress, 3);
    await myst(["disconnect", "--json"], cEnv, 60_000, { netns: consumerNs });

    for (let n = 0; n < rounds; n++) {
      const others = variants.slice(1);
      const turned = [...others.slice(n % Math.max(others.length, 1)), ...others.slice(0, n % Math.max(others.length, 1))];
      for (const variant of [variants[0], ...turned]) {
        const provider = t.providers[PROVIDER_OF[variant]];
        reshape(t, variant, "do");
        try {
          const r = await myst(["connect", providerIds[PROVIDER_OF[variant]], "--service", "wireguard", "--json"], cEnv, 120_000, { netns: consumerNs });
          if (r.code !== 0) {
            // The consumer's log so far (MYST_LOG_LEVEL=info for more than warnings) kept for a look at why.
            const log = path.join(os.tmpdir(), `myst-bench-natpaths-failed-${Date.now()}.log`);
            fs.writeFileSync(log, consumer.output());
            failures.push(`round ${n + 1}, ${variant}: myst connect: ${r.stderr.trim().split("\n").pop()} (the consumer's log: ${log})`);
            console.log(failures.at(-1));
            continue;
          }
          const taken = JSON.parse(r.stdout).path?.tunnel ?? "?";
          // The met session's raw-hook rules (punch-route.ts: `notrack` for probing ports, an empty set once met) taken
          // out for this upload; the table goes with the session at the disconnect.
          if (variant === "symmetric-noraw" && hasPunchTable(provider))
            execFileSync("/usr/sbin/ip", ["netns", "exec", provider, "/usr/sbin/nft", "-f", "-"], {
              input: "flush chain ip myst_punch raw_out\nflush chain ip myst_punch raw_in\n",
            });
          const drops = [rcvbufErrors(provider), rcvbufErrors(consumerNs)];
          const perfDir = process.env.BENCH_NAT_PATHS_PERF;
          const perfArgs = ["record", "-a", "-F", "499", "-o", `${perfDir}/${variant}-${n + 1}.data`, "--", "sleep", String(Math.max(seconds - 2, 1))];
          const perf = perfDir ? spawn("/usr/bin/perf", perfArgs, { stdio: "ignore" }) : undefined;
          const cpu0 = cpuJiffies();
          const { mbps, retransmits } = iperfUpload(consumerNs, t.internetAddress, seconds);
          if (perf) await new Promise((resolve) => (perf.exitCode !== null ? resolve(null) : perf.once("exit", resolve)));
          const cpu1 = cpuJiffies();
          const busyMs = (cpu1.busy - cpu0.busy) * 10;
          const result: PathRun = {
            variant,
            round: n + 1,
            mbps: round(mbps, 1),
            retransmits,
            rcvbufDrops: { provider: rcvbufErrors(provider) - drops[0], consumer: rcvbufErrors(consumerNs) - drops[1] },
            cpuMsPerGbit: round(busyMs / ((mbps * seconds) / 1000), 0),
            softirqShare: round((cpu1.softirq - cpu0.softirq) / Math.max(cpu1.busy - cpu0.busy, 1), 3),
            path: taken,
            punchTable: hasPunchTable(provider),
          };
          runs.push(result);
          console.log(JSON.stringify(result));
          const d = await myst(["disconnect", "--json"], cEnv, 60_000, { netns: consumerNs });
          if (d.code !== 0) throw new Error(`myst disconnect: ${d.stderr}`);
        } finally {
          reshape(t, variant, "undo");
        }
      }
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err) => console.error(`clean-up: ${(err as Error).message}`));
  }
  report(runs, variants, { rounds, seconds, loadBefore, failures });
  return runs;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function report(runs: PathRun[], variants: Variant[], o: { rounds: number; seconds: number; loadBefore: string; failures: string[] }): void {
  const rows = [
    [
      "variant",
      "Mbit/s mean (runs)",
      "vs public: median of the rounds' ratios (each)",
      "busy CPU ms per Gbit (softirq share)",
      "TCP retransmits",
      "UDP rcvbuf drops provider / consumer",
      "path",
    ],
  ];
  const summary: Record<string, { meanMbps: number; medianRatio: number; ratios: number[]; cpuMsPerGbit: number }> = {};
  for (const v of variants) {
    const mine = runs.filter((r) => r.variant === v);
    if (!mine.length) continue;
    const ratios = mine
      .map((r) => {
        const base = runs.find((b) => b.variant === "public" && b.round === r.round);
        return base ? round(r.mbps / base.mbps, 3) : undefined;
      })
      .filter((x): x is number => x !== undefined);
    summary[v] = {
      meanMbps: round(mean(mine.map((r) => r.mbps)), 1),
      medianRatio: round(median(ratios), 3),
      ratios,
      cpuMsPerGbit: round(mean(mine.map((r) => r.cpuMsPerGbit)), 0),
    };
    rows.push([
      v,
      `${summary[v].meanMbps} (${mine.map((r) => r.mbps).join(", ")})`,
      `${summary[v].medianRatio}× (${ratios.join(", ")})`,
      `${summary[v].cpuMsPerGbit} (${round(mean(mine.map((r) => r.softirqShare)), 2)})`,
      mine.map((r) => r.retransmits).join(", "),
      mine.map((r) => `${r.rcvbufDrops.provider}/${r.rcvbufDrops.consumer}`).join(", "),
      [...new Set(mine.map((r) => `${r.path}${r.punchTable ? " (myst_punch)" : ""}`))].join(", "),
    ]);
  }
  if (o.failures.length) rows.push([`connects that failed: ${o.failures.length}`, o.failures.join("; "), "", "", "", "", ""]);
  writeResults(
    "nat-paths",
    {
      rounds: o.rounds,
      throughputSeconds: o.seconds,
      load: { before: o.loadBefore, after: fs.readFileSync("/proc/loadavg", "utf8").trim() },
      summary,
      runs,
      failures: o.failures,
    },
    rows,
  );
}
