// The NAT benchmark (`npm run bench -- nat`, bench/nat.md): connect → first byte and the path taken per NAT cell, and
// tunnel throughput on a punched path against the same pair with a public provider, in one run.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { stopChild, freePort, startLocalChain, type LocalChain } from "../lib/local-chain";
import { buildCli, cliEnv, depositWithCli, myst, mystBackground, registerWithCli, startCliDiscovery } from "../lib/myst-cli";
import { startNatsServer, type NatsServer } from "../lib/nats-server";
import { missingE2EPrerequisites } from "../lib/prereqs";
import { tempDir } from "../lib/tmp";
import { masqueradeRules } from "../lib/home-routers";
import { onConsumerMachine, topologyUp, type NatKind, type Topology } from "../lib/topology";
import { until } from "../lib/until";
import { watchConnect } from "./nat-debug";
import { connectTimeline, TIMELINE, timelineP50 } from "./nat-timeline";
import { IPERF, CURL, iperfServer } from "./tunnel-measure";
import { nowMs, round, summarize, writeResults } from "./stats";
import {
  type BenchProviderKind,
  FORWARDED_BASELINE,
  NAT_BENCH_CASES,
  type NatBenchCase,
  type NatCellResult,
  selectedNatCases,
  TRACKING_BASELINE,
} from "./nat-cells";

export { NAT_BENCH_CASES, type NatBenchCase, type NatCellResult, selectedNatCases } from "./nat-cells";

/** CPU time (user + system, ms) process `pid` used so far: /proc/<pid>/stat, in USER_HZ ticks (100 a second on Linux). */
function cpuMs(pid: number | undefined): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const [utime, stime] = stat
    .slice(stat.lastIndexOf(")") + 2)
    .split(" ")
    .slice(11, 13)
    .map(Number);
  return (utime + stime) * 10;
}

/**
 * `BENCH_NAT_SHAPE_MBIT`: every consumer's uplink (what its tunnel sends, iperf3's direction) is shaped with htb
 * to this rate (this kernel has no netem or tbf), so a path is limited by a link rather than by the CPU the
 * routers' namespaces share with the tunnel. The report is then bench/nat-shaped.md. Default: unshaped.
 */
const SHAPE_MBIT = () => (process.env.BENCH_NAT_SHAPE_MBIT ? Number(process.env.BENCH_NAT_SHAPE_MBIT) : undefined);

function shapeUplink(netns: string, mbit: number): void {
  if (!Number.isFinite(mbit) || mbit <= 0) throw new Error(`BENCH_NAT_SHAPE_MBIT is not a rate in Mbit/s: ${mbit}`);
  const tc = (...args: string[]) => execFileSync("/usr/sbin/ip", ["netns", "exec", netns, "/usr/sbin/tc", ...args], { encoding: "utf8" });
  tc("qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10", "r2q", "1000");
  tc("class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb", "rate", `${mbit}mbit`, "ceil", `${mbit}mbit`);
}

const SECONDS = () => Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTS = () => Number(process.env.BENCH_CONNECTS ?? 10);

/** `curl` in `netns`: how many bytes came, or null. */
function curlIn(netns: string, url: string): string | null {
  try {
    return execFileSync("/usr/sbin/ip", ["netns", "exec", netns, CURL, "-s", "-o", "/dev/null", "-w", "%{size_download}", "--max-time", "5", url], {
      encoding: "utf8",
    }).trim();
  } catch {
    return null;
  }
}

function iperfIn(netns: string, to: string, seconds: number, attempt = 1): number {
  let out: string;
  try {
    out = execFileSync("/usr/sbin/ip", ["netns", "exec", netns, IPERF, "-c", to, "-t", String(seconds), "-J"], {
      encoding: "utf8",
      timeout: (seconds + 20) * 1000,
    });
  } catch (err) {
    out = String((err as { stdout?: string }).stdout ?? "{}");
  }
  const bps = JSON.parse(out || "{}").end?.sum_received?.bits_per_second;
  if (typeof bps === "number") return bps / 1e6;
  if (attempt < 2) return iperfIn(netns, to, seconds, attempt + 1);
  throw new Error(`iperf3 from ${netns} to ${to} failed`);
}

/**
 * Runs the cells, one topology per provider kind (nodes on their own machines, behind home routers
 * that forward nothing, as in test/e2e/nat-matrix.test.ts), and writes bench/nat.json and bench/nat.md.
 */
export async function benchNat(cases: NatBenchCase[] = selectedNatCases()): Promise<NatCellResult[]> {
  const missing = missingE2EPrerequisites();
  for (const [bin, name] of [
    [IPERF, "iperf3"],
    [CURL, "curl"],
    ["/usr/bin/turnserver", "coturn"],
    ["/usr/sbin/miniupnpd", "miniupnpd"],
  ])
    if (!fs.existsSync(bin)) missing.push(name);
  if (missing.length) throw new Error(`the NAT benchmark needs: ${missing.join(", ")}`);
  buildCli();
  const connects = CONNECTS();
  const seconds = SECONDS();
  const tag = process.env.BENCH_TAG ?? "bnat";
  const stops: (() => Promise<unknown>)[] = [];
  const results: NatCellResult[] = [];
  try {
    const [chain, nats]: [LocalChain, NatsServer] = await Promise.all([startLocalChain(), startNatsServer()]);
    stops.push(
      () => chain.stop(),
      () => nats.stop(),
    );
    const base = cliEnv(chain, nats.url, await freePort());
    const dirs = new Map<string, ReturnType<typeof tempDir>>();
    const dirOf = (who: string) => {
      if (!dirs.has(who)) dirs.set(who, tempDir(`myst-bench-nat-${who}-`));
      return dirs.get(who)!.dir;
    };
    stops.push(async () => dirs.forEach((d) => d.cleanup()));
    const consumerKinds = [...new Set(cases.map((c) => c.consumer))];
    console.log("identities, the consumers' deposits, discovery…");
    await registerWithCli(chain, { ...base, MYST_DATA_DIR: dirOf("provider") });
    if (cases.some((c) => c.relay)) await registerWithCli(chain, { ...base, MYST_DATA_DIR: dirOf("relay") });
    for (const k of consumerKinds) {
      await registerWithCli(chain, { ...base, MYST_DATA_DIR: dirOf(k) });
      await depositWithCli({ ...base, MYST_DATA_DIR: dirOf(k) }, "5", "1");
    }
    const discovery = await startCliDiscovery(base);
    stops.push(() => discovery.stop());

    for (const providerKind of [...new Set(cases.map((c) => c.provider))]) {
      const cells = cases.filter((c) => c.provider === providerKind);
      results.push(...(await benchTopology(providerKind, cells, { base, tag, dirOf, connects, seconds })));
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err) => console.error(`clean-up: ${(err as Error).message}`));
  }
  report(results, connects, seconds);
  return results;
}

async function benchTopology(
  providerKind: BenchProviderKind,
  cells: NatBenchCase[],
  o: { base: NodeJS.ProcessEnv; tag: string; dirOf: (who: string) => string; connects: number; seconds: number },
): Promise<NatCellResult[]> {
  const sameRouter = cells.some((c) => c.consumer === "same-router");
  const kinds = cells.map((c) => c.consumer).filter((k): k is NatKind => k !== "same-router");
  const consumerKinds: NatKind[] = [...(sameRouter ? (["public"] as NatKind[]) : []), ...new Set(kinds)];
  console.log(`\nprovider ${providerKind}: consumers ${[...(sameRouter ? ["same-router"] : []), ...new Set(kinds)].join(", ")}`);
  const topology: Topology = await topologyUp({
    tag: o.tag,
    consumers: consumerKinds.length,
    relays: cells.some((c) => c.relay) ? 1 : 0,
    // A forwarded port: the same eim home router, every inbound port forwarded to the provider.
    nat:
      providerKind === "forwarded"
        ? { provider: "eim", forwardedProviders: [1], consumer: consumerKinds }
        : { provider: providerKind, consumer: consumerKinds, sameRouter },
  });
  const nat = topology.nat!;
  const stops: (() => Promise<unknown>)[] = [() => topology.down()];
  const results: NatCellResult[] = [];
  try {
    const shape = SHAPE_MBIT();
    if (shape !== undefined) for (const c of topology.consumers) shapeUplink(c, shape);
    const iperfd = iperfServer(topology.internet, topology.internetAddress);
    stops.push(() => stopChild(iperfd));
    const machine = {
      ...(await onConsumerMachine(topology, o.base)),
      MYST_STUN_SERVERS: nat.stunServers.join(","),
      MYST_LOG_LEVEL: TIMELINE() ? "info" : "warn",
    };
    const providerEnv = { ...machine, MYST_DATA_DIR: o.dirOf("provider"), ...Object.assign({}, ...cells.map((c) => c.providerEnv ?? {})) };
    // The provider's services are started afresh for each topology (its public address differs).
    fs.rmSync(path.join(providerEnv.MYST_DATA_DIR, "services.json"), { force: true });
    const provider = mystBackground(["daemon", "--api-port", "0"], providerEnv, { netns: topology.provider });
    stops.push(() => provider.stop());
    await until(() => provider.output().includes("REST API:") || provider.child.exitCode !== null, "the provider daemon to listen", 60_000);
    if (provider.child.exitCode !== null) throw new Error(`the provider daemon exited: ${provider.output()}`);
    for (const service of new Set(cells.map((c) => c.service ?? "wireguard"))) {
      const r = await myst(
        [
          "service",
          "start",
          service,
          "--public-ip",
          nat.publicAddressOf(topology.provider),
          "--country",
          "DE",
          // No per-session limit: the throughput is the tunnel's, not the shaper's (100 Mbit/s by default).
          "--bandwidth",
          "0",
          ...(service === "wireguard" ? ["--device", `mwp${topology.tag}`] : []),
          "--json",
        ],
        providerEnv,
        120_000,
        { netns: topology.provider },
      );
      if (r.code !== 0) throw new Error(`myst service start ${service}: ${r.stderr}`);
    }

    if (cells.some((c) => c.relay)) stops.push(await startRelay(topology, { ...machine, MYST_DATA_DIR: o.dirOf("relay") }));

    for (const cell of cells) {
      const service = cell.service ?? "wireguard";
      const i = nat.consumers.indexOf(cell.consumer);
      const netns = topology.consumers[i];
      const env = { ...machine, MYST_DATA_DIR: o.dirOf(cell.consumer), ...(cell.consumerEnv ?? {}) };
      const result: NatCellResult = { name: cell.name, provider: providerKind, consumer: cell.consumer, service, paths: {}, unexpectedPaths: 0, failures: [] };
      results.push(result);
      if (cell.routerTracks) routerTable(topology.gateway, "add");
      const consumer = mystBackground(["daemon", "--api-port", "0"], env, { netns });
      try {
        await until(() => consumer.output().includes("REST API:") || consumer.child.exitCode !== null, "the consumer daemon to listen", 60_000);
        if (consumer.child.exitCode !== null) throw new Error(`the consumer daemon exited: ${consumer.output()}`);
        await until(
          async () => {
            const found = async (type: string) => {
              const r = await myst(["proposals", "--service-type", type, "--json"], env, 60_000, { netns });
              return r.code === 0 && JSON.parse(r.stdout).length === 1;
            };
            return (await found(service)) && (!cell.relay || (await found("relay")));
          },
          "the proposal in discovery",
          60_000,
        );
        console.log(`${cell.name}: ${o.connects} connects…`);
        const total: number[] = [];
        const phases: Record<string, number[]> = {};
        const timelines: Record<string, number>[] = [];
        for (let n = 0; n < o.connects; n++) {
          // The CLI's own start-up (a `myst status` against the same node), taken off each connect.
          const s0 = nowMs();
          await myst(["status", "--json"], env, 60_000, { netns });
          const cliStart = nowMs() - s0;
          const t0 = nowMs();
          const t0Epoch = Date.now();
          // BENCH_NAT_NO_KILL_SWITCH=1: the connects without the kill switch (what its arming costs a punched connect).
          const noGuard = process.env.BENCH_NAT_NO_KILL_SWITCH === "1" ? ["--no-kill-switch"] : [];
          const watched = watchConnect(cell.name, n, debugNamespaces(topology, netns), () => ({ consumer: consumer.output(), provider: provider.output() }));
          const r = await myst(["connect", "--service", service, "--country", "DE", ...noGuard, "--json"], env, 120_000, { netns });
          watched(r.code !== 0);
          if (r.code !== 0) {
            result.failures.push(r.stderr.trim().split("\n").pop() ?? `exit ${r.code}`);
            continue;
          }
          const got = curlIn(netns, `${topology.internetUrl}?bytes=1`);
          const t1 = nowMs();
          const connected = JSON.parse(r.stdout);
          if (got !== "1") result.failures.push("connected, but no first byte through the tunnel");
          else total.push(t1 - t0 - cliStart);
          const relayed = connected.path?.relay ? ` over ${connected.path.relay.transport}` : "";
          const taken = `${connected.path?.tunnel ?? "?"}${relayed} / ${connected.path?.channel ?? "?"}`;
          result.paths[taken] = (result.paths[taken] ?? 0) + 1;
          if (cell.expectPath && !cell.expectPath.includes(connected.path?.tunnel)) result.unexpectedPaths++;
          for (const [k, v] of Object.entries(connected.phasesMs ?? {})) if (typeof v === "number") (phases[k] ??= []).push(v);
          if (TIMELINE()) timelines.push(connectTimeline({ consumer: consumer.output(), provider: provider.output() }, t0Epoch));
          const d = await myst(["disconnect", "--json"], env, 60_000, { netns });
          if (d.code !== 0) throw new Error(`myst disconnect: ${d.stderr}`);
        }
        if (total.length) result.connectToFirstByteMs = summarize(total);
        result.phasesMs = Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, summarize(v)]));
        if (timelines.length) {
          result.timelineMs = timelineP50(timelines);
          console.log(`${cell.name}: timeline p50 (ms after connect started)`, result.timelineMs);
        }
        if (cell.throughput) {
          console.log(`${cell.name}: throughput (iperf3 ${o.seconds} s)…`);
          const r = await myst(["connect", "--service", service, "--country", "DE", "--json"], env, 120_000, { netns });
          if (r.code !== 0) result.failures.push(`throughput: ${r.stderr.trim().split("\n").pop()}`);
          else {
            try {
              const cpu = [cpuMs(provider.child.pid), cpuMs(consumer.child.pid)];
              result.throughputMbps = round(iperfIn(netns, topology.internetAddress, o.seconds), 1);
              result.daemonCpuMs = { provider: cpuMs(provider.child.pid) - cpu[0], consumer: cpuMs(consumer.child.pid) - cpu[1] };
              console.log(`${cell.name}: the daemons' CPU while iperf3 ran (ms)`, result.daemonCpuMs);
            } catch (err) {
              result.failures.push(`throughput: ${(err as Error).message}`);
            }
            await myst(["disconnect", "--json"], env, 60_000, { netns });
          }
        }
      } finally {
        await consumer.stop();
        if (cell.routerTracks) routerTable(topology.gateway, "delete");
      }
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err) => console.error(`clean-up: ${(err as Error).message}`));
  }
  return results;
}

/**
 * A home router's nftables table (home-routers.ts: masquerade of its LAN, the WAN's unsolicited inbound dropped) on
 * the public provider's router, whose LAN it is not: conntrack now tracks every flow there and the NAT hooks see every
 * packet, as on a NAT router, but nothing of the provider's is translated.
 */
function routerTable(netns: string, action: "add" | "delete"): void {
  const script = action === "add" ? masqueradeRules("192.168.88.0/24", false) : "delete table ip myst_nat\n";
  execFileSync("/usr/sbin/ip", ["netns", "exec", netns, "/usr/sbin/nft", "-f", "-"], { input: script, stdio: ["pipe", "ignore", "pipe"] });
}

/** The namespaces a connect's packets cross, for BENCH_NAT_DEBUG_DIR's snapshots (nat-debug.ts). */
function debugNamespaces(topology: Topology, consumer: string): { label: string; netns: string; host?: boolean }[] {
  const nat = topology.nat!;
  return [
    { label: "provider", netns: topology.provider, host: true },
    ...nat.natRoutersOf(topology.provider).map((netns) => ({ label: "provider's router", netns })),
    ...nat.natRoutersOf(consumer).map((netns) => ({ label: "consumer's router", netns })),
    { label: "consumer", netns: consumer, host: true },
  ];
}

/** A relay node on the topology's public relay host, selling `relay` on 443 with no per-session limit; returns its stop. */
async function startRelay(topology: Topology, env: NodeJS.ProcessEnv): Promise<() => Promise<unknown>> {
  fs.rmSync(path.join(env.MYST_DATA_DIR!, "services.json"), { force: true });
  const relay = mystBackground(["daemon", "--api-port", "0"], env, { netns: topology.relays[0] });
  await until(() => relay.output().includes("REST API:") || relay.child.exitCode !== null, "the relay daemon to listen", 60_000);
  if (relay.child.exitCode !== null) throw new Error(`the relay daemon exited: ${relay.output()}`);
  const args = ["service", "start", "relay", "--public-ip", topology.relayAddressOf(0), "--port", "443", "--country", "DE", "--bandwidth", "0", "--json"];
  const r = await myst(args, env, 120_000, { netns: topology.relays[0] });
  if (r.code !== 0) throw new Error(`myst service start relay: ${r.stderr}`);
  return () => relay.stop();
}

/** Issue 29's aim for a pair that needs a relay: connect → first byte p50 within 1.5 s. */
const RELAYED_CONNECT_AIM_MS = 1500;

function report(results: NatCellResult[], connects: number, seconds: number): void {
  const baseline = results.find((r) => NAT_BENCH_CASES.some((c) => c.name === r.name && c.throughput === "baseline")) ?? results[0];
  const baseP50 = baseline?.connectToFirstByteMs?.p50;
  const rows: string[][] = [
    ["cell", "connect → first byte p50 / p99 (ms)", "node's own phases p50 (ms)", "path taken (tunnel / messages)", "vs the public provider"],
  ];
  for (const r of results) {
    const c = r.connectToFirstByteMs;
    const ph = r.phasesMs ?? {};
    const phaseText = ["discovery", "negotiation", "tunnel", "confirm"]
      .filter((k) => ph[k])
      .map((k) => `${k} ${ph[k].p50}`)
      .join(", ");
    // A relayed cell's aim is its own (issue 29: ≤ 1.5 s from connect to first byte), not the punched ≤ 2×.
    const relayedCell = NAT_BENCH_CASES.find((k) => k.name === r.name)?.expectPath?.includes("relayed");
    const baselineAim = { [TRACKING_BASELINE]: "a second baseline, not punched", [FORWARDED_BASELINE]: "a third baseline, a forwarded port: not punched" }[
      r.name
    ];
    const aim = relayedCell ? `aim ≤ ${RELAYED_CONNECT_AIM_MS} ms` : (baselineAim ?? "aim ≤ 2×");
    const ratio = c && baseP50 && r !== baseline ? `${round(c.p50 / baseP50, 2)}× p50 (${aim})` : r === baseline ? "1× (baseline)" : "";
    const paths = Object.entries(r.paths)
      .map(([p, n]) => `${p} ×${n}`)
      .join("; ");
    const failed = r.failures.length ? `; ${r.failures.length} failed: ${[...new Set(r.failures)].join(" | ")}` : "";
    const unexpected = r.unexpectedPaths ? ` (${r.unexpectedPaths} not the expected path)` : "";
    rows.push([r.name, c ? `${c.p50} / ${c.p99} (n ${c.n})` : "none", phaseText, `${paths}${unexpected}${failed}`, ratio]);
  }
  const through = results.filter((r) => r.throughputMbps !== undefined);
  const base = baseline?.throughputMbps;
  const tracking = through.find((t) => t.name === TRACKING_BASELINE);
  const forwarded = through.find((t) => t.name === FORWARDED_BASELINE);
  for (const r of through) {
    const cell = NAT_BENCH_CASES.find((c) => c.name === r.name);
    const other = cell?.compareWith ? through.find((t) => t.name === cell.compareWith) : undefined;
    const of = (b: NatCellResult | undefined) => (b ? round(r.throughputMbps! / b.throughputMbps!, 3) : undefined);
    const isBaseline = r === baseline || r === tracking || r === forwarded;
    // A relayed cell: aim ≥ 0.5× the same pair's direct path (issue 29); a punched one: ≥ 0.95× the public provider.
    // Beside a punched cell's ratio (never instead of it), the same against the other two baselines: the provider whose
    // router tracks as a NAT router does, and the one behind the same home router reached at a forwarded port.
    const aim = other ? 0.5 : isBaseline ? undefined : cell?.relay ? 0.5 : 0.95;
    r.throughputRatio = other
      ? { vsSamePairDirect: of(other), aim }
      : {
          vsPublicProvider: of(baseline),
          aim,
          ...(isBaseline || cell?.relay ? {} : { vsTrackingRouter: of(tracking), vsForwardedPort: of(forwarded) }),
        };
    const t = r.throughputRatio;
    const besides = [
      t.vsTrackingRouter !== undefined ? `${t.vsTrackingRouter}× the tracking router's` : "",
      t.vsForwardedPort !== undefined ? `${t.vsForwardedPort}× the forwarded port's (the same home router, not punched)` : "",
    ]
      .filter(Boolean)
      .map((b) => `; ${b}`)
      .join("");
    const ratio = other
      ? `${t.vsSamePairDirect}× the same pair direct (aim ≥ 0.5)`
      : r === baseline || !base
        ? "1× (baseline)"
        : `${t.vsPublicProvider}× ${aim ? `(aim ≥ ${aim})` : "(a baseline: no aim)"}${besides}`;
    const cpu = r.daemonCpuMs ? `daemons' CPU during it: provider ${r.daemonCpuMs.provider} ms, consumer ${r.daemonCpuMs.consumer} ms` : "";
    rows.push([`iperf3 through the tunnel, ${r.name} (Mbit/s)`, String(r.throughputMbps), cpu, Object.keys(r.paths)[0] ?? "", ratio]);
  }
  const shape = SHAPE_MBIT();
  writeResults(
    shape === undefined ? "nat" : "nat-shaped",
    {
      connects,
      throughputSeconds: seconds,
      ...(shape === undefined ? {} : { consumerUplinkMbit: shape }),
      load: fs.readFileSync("/proc/loadavg", "utf8").trim(),
      cells: results,
      targets: "a punched connect's p50 ≤ 2× the public provider's; throughput on a punched path ≥ 0.95× the same pair with a public provider",
    },
    rows,
  );
}
