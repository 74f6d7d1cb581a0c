// The relay benchmark (`npm run bench -- relay`, bench/relay.md): one pair of nodes, direct and through a relay.
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { missingE2EPrerequisites } from "../lib/prereqs";
import { freePort, stopChild, testChain } from "../lib/local-chain";
import { startNatsServer } from "../lib/test-network";
import { tempDir } from "../lib/tmp";
import { fetchFrom, onConsumerMachine, topologyUp } from "../lib/topology";
import { until } from "../lib/until";
import { IPERF, iperf, iperfServer } from "./tunnel-measure";
import { nowMs, round, summarize, writeResults } from "./stats";
import { cpuShare, readCpu } from "./cpu-share";
import { buildCli, cliEnv, depositWithCli, myst, mystBackground, registerWithCli, startCliDiscovery } from "../lib/myst-cli";

/**
 * Every node on its own machine: a provider behind an endpoint-independent home router, a consumer
 * behind another (a pair that punches a direct path), a consumer whose network drops all UDP, and a
 * public relay node selling `relay` on port 443. For the same provider: (1) iperf3 through the
 * tunnel (consumer → internet host, BENCH_SECONDS) direct (punched), relayed over UDP (`--via-relay`)
 * and relayed over TLS/443 (the UDP-blocked consumer); (2) `myst connect` → first byte through the
 * tunnel over BENCH_CONNECTS connects of each. BENCH_REVERSE=1 measures downloads (iperf3 -R) instead of uploads. Aims (issue 29): relayed UDP ≥ 0.5× direct; connect
 * p50 ≤ 1.5 s when a relay is needed.
 */
export async function benchRelay(): Promise<void> {
  const missing = missingE2EPrerequisites();
  if (!fs.existsSync(IPERF)) missing.push("iperf3");
  if (!fs.existsSync("/usr/bin/turnserver")) missing.push("turnserver (coturn)");
  if (missing.length) throw new Error(`the relay benchmark needs: ${missing.join(", ")}`);
  const seconds = Number(process.env.BENCH_SECONDS ?? 8);
  const connects = Number(process.env.BENCH_CONNECTS ?? 5);
  buildCli();
  const [chain, nats, topology] = await Promise.all([
    testChain(),
    startNatsServer(),
    topologyUp({ tag: process.env.BENCH_TAG ?? "brly", consumers: 2, relays: 1, nat: { provider: "eim", consumer: ["eim", "udp-blocked"] } }),
  ]);
  const dirs = [tempDir("myst-brly-p-"), tempDir("myst-brly-r-"), tempDir("myst-brly-c-"), tempDir("myst-brly-b-")];
  const background: ReturnType<typeof mystBackground>[] = [];
  const children: ChildProcess[] = [];
  try {
    const base = cliEnv(chain, nats.url, await freePort());
    for (const d of dirs) await registerWithCli(chain, { ...base, MYST_DATA_DIR: d.dir });
    for (const d of dirs.slice(2)) await depositWithCli({ ...base, MYST_DATA_DIR: d.dir }, "20", "1");
    background.push(await startCliDiscovery(base));
    const machine = { ...(await onConsumerMachine(topology, base)), MYST_STUN_SERVERS: topology.nat!.stunServers.join(","), MYST_LOG_LEVEL: "warn" };
    const env = (i: number) => ({ ...machine, MYST_DATA_DIR: dirs[i].dir });
    const json = async (i: number, args: string[], netns: string) => {
      const r = await myst([...args, "--json"], env(i), 120_000, { netns });
      if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    };
    const daemon = async (i: number, netns: string, logLevel = "warn") => {
      const d = mystBackground(["daemon", "--api-port", "0", "--invoice-every", "1"], { ...env(i), MYST_LOG_LEVEL: logLevel }, { netns });
      background.push(d);
      await until(() => d.output().includes("REST API:") || d.child.exitCode !== null, "a daemon to listen");
      if (d.child.exitCode !== null) throw new Error(`a daemon exited: ${d.output()}`);
      return d;
    };
    const nat = topology.nat!;
    await daemon(0, topology.provider);
    await json(
      0,
      // No per-session limit (100 Mbit/s by default): the throughput is the path's, not the shaper's.
      [
        "service",
        "start",
        "wireguard",
        "--public-ip",
        nat.publicAddressOf(topology.provider),
        "--country",
        "DE",
        "--bandwidth",
        "0",
        "--device",
        `mwp${topology.tag}`,
      ],
      topology.provider,
    );
    await daemon(1, topology.relays[0]);
    await json(
      1,
      ["service", "start", "relay", "--public-ip", topology.relayAddressOf(0), "--port", "443", "--country", "DE", "--bandwidth", "0"],
      topology.relays[0],
    );
    // The consumers log at info: their `connect stages` lines are the breakdown of each connect.
    const consumers = { 2: await daemon(2, topology.consumers[0], "info"), 3: await daemon(3, topology.consumers[1], "info") };
    children.push(iperfServer(topology.internet, topology.internetAddress));
    await until(async () => (await json(2, ["proposals", "--service-type", "relay"], topology.consumers[0])).length === 1, "the relay in discovery");

    // BENCH_MODES=direct,udp skips the TLS row (its iperf3 and connects).
    const wanted = (process.env.BENCH_MODES ?? "direct,udp,tls").split(",");
    const modes = [
      { key: "direct", name: "direct (punched)", consumer: 2, netns: topology.consumers[0], args: [] as string[] },
      { key: "udp", name: "relayed over UDP", consumer: 2, netns: topology.consumers[0], args: ["--via-relay"] },
      { key: "tls", name: "relayed over TLS/443 (UDP blocked)", consumer: 3, netns: topology.consumers[1], args: [] as string[] },
    ].filter((m) => wanted.includes(m.key));
    // Every namespace whose processes carry the tunnel: the CPU each used during the iperf3 run.
    const carriers = [topology.provider, topology.relays[0], ...topology.consumers];
    const results: {
      name: string;
      path: string;
      mbps: number;
      connect: ReturnType<typeof summarize>;
      stagesMs: Record<string, number>;
      cpu: Record<string, number>;
    }[] = [];
    for (const m of modes) {
      console.log(`${m.name}…`);
      const samples: number[] = [];
      const logFrom = consumers[m.consumer as 2 | 3].output().length;
      let seenPath = "";
      let mbps = 0;
      let cpu: Record<string, number> = {};
      for (let k = 0; k < connects; k++) {
        const started = nowMs();
        const connected = await json(m.consumer, ["connect", "--service", "wireguard", "--country", "DE", ...m.args], m.netns);
        await until(() => fetchFrom(topology, m.netns, topology.internetUrl, 2000) === nat.publicAddressOf(topology.provider), "the first byte", 30_000);
        samples.push(nowMs() - started);
        seenPath = `${connected.path.tunnel}${connected.path.relay ? ` over ${connected.path.relay.transport}` : ""}`;
        if (k === 0) {
          const before = readCpu(carriers);
          // BENCH_REVERSE=1: the internet host sends (a download through the tunnel, iperf3 -R).
          mbps = iperf(topology, m.netns, topology.internetAddress, seconds, 1, process.env.BENCH_REVERSE === "1");
          cpu = cpuShare(before, readCpu(carriers));
          console.log(`  ${round(mbps, 1)} Mbit/s; CPU (cores) during iperf3: ${JSON.stringify(cpu)}`);
        }
        await json(m.consumer, ["disconnect"], m.netns);
      }
      const stagesMs = medianStages(consumers[m.consumer as 2 | 3].output().slice(logFrom));
      console.log(`  stages (median ms since the connect began): ${JSON.stringify(stagesMs)}`);
      results.push({ name: m.name, path: seenPath, mbps, connect: summarize(samples), stagesMs, cpu });
    }
    const direct = results[0].mbps;
    const reverse = process.env.BENCH_REVERSE === "1";
    writeResults(
      "relay",
      {
        seconds,
        connects,
        direction: reverse ? "download" : "upload",
        results,
        ratios: results.map((r) => ({ name: r.name, vsDirect: round(r.mbps / direct, 2) })),
      },
      [
        [
          "path (one provider, behind an endpoint-independent home router)",
          "as measured",
          `iperf3 Mbit/s (${reverse ? "download, -R" : "upload"})`,
          "vs direct",
          "connect → first byte p50 / p99 (ms)",
        ],
        ...results.map((r) => [
          r.name,
          r.path,
          String(round(r.mbps, 1)),
          `${round(r.mbps / direct, 2)}×`,
          `${Math.round(r.connect.p50)} / ${Math.round(r.connect.p99)} (n=${r.connect.n})`,
        ]),
      ],
    );
    fs.appendFileSync(
      path.resolve(__dirname, "..", "..", "bench", "relay.md"),
      `\n## Where a connect's time goes (median ms since the node began it; the daemon's \`connect stages\` log)\n\n${results
        .map(
          (r) =>
            `- ${r.name}: ${Object.entries(r.stagesMs)
              .map(([k, v]) => `${k} ${v}`)
              .join(" → ")}`,
        )
        .join("\n")}\n\n## Where the CPU went during each iperf3 run (share of one core; the namespaces' processes, the machine's softirq and idle)\n\n${results
        .map(
          (r) =>
            `- ${r.name}: ${Object.entries(r.cpu)
              .map(([k, v]) => `${k} ${v}`)
              .join(", ")}`,
        )
        .join("\n")}\n`,
    );
  } finally {
    await Promise.all(children.map((c) => stopChild(c)));
    await Promise.all(background.map((b) => b.stop()));
    await topology.down();
    await Promise.all([chain.stop(), nats.stop()]);
    for (const d of dirs) d.cleanup();
  }
}

/** The median of each stage over the `connect stages` lines in a daemon's JSON log. */
function medianStages(log: string): Record<string, number> {
  const runs: Record<string, number>[] = [];
  for (const line of log.split("\n")) {
    if (!line.includes('"connect stages"')) continue;
    try {
      runs.push(JSON.parse(line).stagesMs);
    } catch {
      // not a whole JSON line
    }
  }
  const out: Record<string, number> = {};
  for (const stage of new Set(runs.flatMap((r) => Object.keys(r)))) {
    const values = runs
      .map((r) => r[stage])
      .filter((v) => v !== undefined)
      .sort((a, b) => a - b);
    out[stage] = values[Math.floor((values.length - 1) / 2)];
  }
  return out;
}
