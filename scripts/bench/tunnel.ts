// The tunnel benchmark (`npm run bench -- tunnel`, bench/tunnel.md): baselines in tunnel-stock.ts, myst's tunnels in
// tunnel-myst.ts, the tools in tunnel-measure.ts; this file runs them in one test network and writes the report.
import { CURL, IPERF, iperf, iperfServer } from "./tunnel-measure";
import { stockTunnel, stockWireGuard } from "./tunnel-stock";
import { benchMyst, mystWireGuard, type TunnelResult } from "./tunnel-myst";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { WireGuardSpare } from "../../node/services/wireguard/spare";
import { OpenVpnProviderService } from "../../node/services/openvpn/provider";
import { OpenVpnSpare } from "../../node/services/openvpn/spare";
import { TestNetwork } from "../lib/test-network";
import { missingE2EPrerequisites } from "../lib/prereqs";
import { stopChild } from "../lib/local-chain";
import { topologyUp } from "../lib/topology";
import { percentile, round, writeResults } from "./stats";
import { timelineRows } from "./tunnel-timeline";

const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
const roundsOf = (r: TunnelResult) => ({
  stockMbps: r.throughput.stock.map((x) => round(x, 1)),
  mystMbps: r.throughput.myst.map((x) => round(x, 1)),
  ratios: r.throughput.ratios.map((x) => round(x, 3)),
});

/**
 * OpenVPN's tunnel phase against stock's start, both timed alternately (stock start i just before myst connect i):
 * the ratio of their p50s (what the aim is read on) and the median of the pairs' ratios with their spread.
 */
export function openvpnTunnelVsStock(mystP50: number, stockP50: number, myst: number[], stock: number[]) {
  const pairs = myst.slice(0, stock.length).map((m, i) => m / stock[i]);
  return {
    mystP50,
    stockP50,
    ratioOfP50s: round(mystP50 / stockP50, 2),
    medianPairRatio: round(median(pairs), 2),
    pairSpread: pairs.length ? `${round(Math.min(...pairs), 2)}–${round(Math.max(...pairs), 2)}` : "–",
    pairRatios: pairs.map((x) => round(x, 2)),
  };
}

/**
 * (1) Throughput (iperf3, consumer → internet host, BENCH_SECONDS each, default 5) in one run: the bare
 * namespace link; a stock OpenVPN pair with myst's cipher against myst's OpenVPN, and a stock wireguard-go
 * pair with myst's MTU against myst's WireGuard, each in BENCH_ROUNDS rounds (default 5) of one stock run and
 * one myst run back to back, reported as the median of the rounds' ratios with their spread. (2) `connect` → first byte for each myst tunnel type
 * over BENCH_CONNECTS connects, by phase: discovery, negotiation, tunnel up, confirm, first byte; OpenVPN's plain connects
 * each right after one stock openvpn start (alternated: the tunnel phase's aim is read on their p50s, docs/connect-path.md).
 */
export async function benchTunnel(): Promise<void> {
  const missing = missingE2EPrerequisites();
  if (!fs.existsSync(IPERF)) missing.push("iperf3");
  if (!fs.existsSync(CURL)) missing.push("curl");
  if (!fs.existsSync("/usr/bin/wg")) missing.push("wg (wireguard-tools)");
  if (missing.length) throw new Error(`the tunnel benchmark needs: ${missing.join(", ")}`);
  // Throughput: BENCH_ROUNDS rounds of one stock and one myst iperf3 (BENCH_SECONDS each), alternated.
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  const connects = Number(process.env.BENCH_CONNECTS ?? 12);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-tunnel-"));
  const net = await new TestNetwork().start();
  // BENCH_TAG: another tag when other worktrees may run the benchmark at the same time.
  const topology = await topologyUp({ tag: process.env.BENCH_TAG ?? "bench", consumers: 1 });
  const children: ChildProcess[] = [];
  try {
    const providerKey = await net.registeredIdentity();
    const consumerKey = await net.registeredIdentity();
    children.push(iperfServer(topology.internet, topology.internetAddress), iperfServer(topology.provider, "0.0.0.0"));
    await new Promise((r) => setTimeout(r, 500));

    console.log("bare link…");
    const bare = iperf(topology, topology.consumers[0], topology.providerAddress, seconds);
    console.log("stock openvpn…");
    // One start to warm the stock server up (not counted); its timed starts alternate with myst's connects (below).
    const stock = await stockTunnel(topology, dir, 1);
    await stock.down();

    const common = { net, topology, dir, providerKey, consumerKey, seconds, connects, rounds };
    // As a consumer daemon with `openvpnSpare` on: one openvpn kept waiting for its config, taken by each connect of the
    // bench's consumer (the first sessions' consumers, other nodes, start their own while they negotiate).
    const openvpnSpare = new OpenVpnSpare({ runDir: path.join(dir, "openvpn-spare"), netns: topology.consumers[0] });
    await openvpnSpare.start();
    const openvpn = await benchMyst(
      {
        type: "openvpn",
        provider: (d) =>
          new OpenVpnProviderService({
            dir: path.join(d, "provider"),
            directory: net.registry,
            publicAddress: topology.providerAddress,
            netns: topology.provider,
          }),
        consumer: (d, key) =>
          new OpenVpnConsumerService({
            key: key ?? consumerKey,
            runDir: path.join(d, "consumer"),
            netns: topology.consumers[0],
            ...(key ? {} : { spare: openvpnSpare }),
          }),
      },
      { ...common, firstSessions: true, stock, stockStart: () => stock.start() },
    ).finally(() => Promise.all([stock.stop(), openvpnSpare.stop()]));
    const stockStarts = openvpn.stockStarts ?? [];
    const stockUpMs = median(stockStarts);
    const tunnelVsStock = openvpnTunnelVsStock(openvpn.phases.tunnel.p50, stockUpMs, openvpn.tunnelSamples, stockStarts);
    console.log("stock wireguard-go…");
    const stockWg = await stockWireGuard(topology);
    await stockWg.down();
    // As a consumer daemon with `wireguardSpare` on: one unconfigured wireguard-go kept ready, taken by each connect.
    const spare = new WireGuardSpare({ runDir: path.join(dir, "spare"), netns: topology.consumers[0] });
    await spare.start();
    const wireguard = await benchMyst(mystWireGuard(topology, spare), { ...common, stock: stockWg }).finally(() => Promise.all([spare.stop(), stockWg.stop()]));

    const [stockMbps, openvpnMbps] = [median(openvpn.throughput.stock), median(openvpn.throughput.myst)];
    const [stockWgMbps, wireguardMbps] = [median(wireguard.throughput.stock), median(wireguard.throughput.myst)];
    // The median of the rounds' ratios (each round's stock and myst run back to back), with their spread.
    const ratio = {
      openvpnVsStock: round(median(openvpn.throughput.ratios), 3),
      wireguardVsStock: round(median(wireguard.throughput.ratios), 3),
      wireguardVsOpenvpn: round(wireguardMbps / openvpnMbps, 3),
      openvpnVsBare: round(openvpnMbps / bare, 3),
    };
    const spread = (r: TunnelResult) => `${round(Math.min(...r.throughput.ratios), 2)}–${round(Math.max(...r.throughput.ratios), 2)}`;
    const each = `median of ${rounds} rounds, stock and myst alternated, ${seconds} s each`;
    const cost = (r: TunnelResult) => round(r.killSwitch.on.p50 - r.killSwitch.off.p50, 1);
    const checkCost = (r: TunnelResult) => round(r.stageChecks.on.p50 - r.killSwitch.off.p50, 1);
    const rows = (name: string, r: TunnelResult, stockUpMs: number): string[][] => [
      ...Object.entries(r.phases).map(([k, s]) => [
        `${name} connect phase ${k} (ms) p50 / p99`,
        `${s.p50} / ${s.p99}`,
        k === "tunnel"
          ? `${round(s.p50 / stockUpMs, 2)}× of stock${name === "openvpn" ? " (aim ≤ 1.2×)" : ""}`
          : k === "total" && name === "wireguard"
            ? "aim p50 ≤ 25 ms"
            : "",
      ]),
      [`${name} connect → first byte, kill switch off (ms) p50 / p99`, `${r.killSwitch.off.p50} / ${r.killSwitch.off.p99}`, "1× (baseline)"],
      [
        `${name} connect → first byte, kill switch on${process.env.BENCH_GUARD_SPARE === "0" ? "" : ", its table kept disarmed between connects (killSwitchSpare)"} (ms) p50 / p99`,
        `${r.killSwitch.on.p50} / ${r.killSwitch.on.p99}`,
        `${cost(r) >= 0 ? "+" : ""}${cost(r)} ms p50 (aim ≤ +5)`,
      ],
      ...Object.entries(r.killSwitch.phasesOn).map(([k, s]) => {
        const d = round(s.p50 - r.phases[k].p50, 1);
        return [`  ${name} phase ${k} with kill switch on (ms) p50 / p99`, `${s.p50} / ${s.p99}`, `${d >= 0 ? "+" : ""}${d} ms p50 against off`];
      }),
      [
        `${name} connect → first byte, in-process stage check (DNS through the tunnel) first (ms) p50 / p99`,
        `${r.stageChecks.on.p50} / ${r.stageChecks.on.p99}`,
        `${checkCost(r) >= 0 ? "+" : ""}${checkCost(r)} ms p50 (on by default at ≤ +2); the check itself ${r.stageChecks.checkMs.p50} ms p50`,
      ],
    ];
    writeResults(
      "tunnel",
      {
        throughputMbps: {
          bare: round(bare, 1),
          stockOpenvpn: round(stockMbps, 1),
          mystOpenvpn: round(openvpnMbps, 1),
          stockWireguardGo: round(stockWgMbps, 1),
          mystWireguard: round(wireguardMbps, 1),
        },
        throughputRounds: {
          seconds,
          openvpn: roundsOf(openvpn),
          wireguard: roundsOf(wireguard),
        },
        ratio,
        openvpn: {
          connectPhasesMs: openvpn.phases,
          connectToFirstByteKillSwitchMs: { ...openvpn.killSwitch, costP50: cost(openvpn) },
          connectToFirstByteStageCheckMs: { ...openvpn.stageChecks, costP50: checkCost(openvpn) },
          firstSessionMs: openvpn.firstSession,
          timeline: openvpn.timeline,
        },
        wireguard: {
          connectPhasesMs: wireguard.phases,
          connectToFirstByteKillSwitchMs: { ...wireguard.killSwitch, costP50: cost(wireguard) },
          connectToFirstByteStageCheckMs: { ...wireguard.stageChecks, costP50: checkCost(wireguard) },
          timeline: wireguard.timeline,
        },
        // openvpn: the p50 of the stock starts alternated with myst's connects (openvpnSamples, in order; before session 11
        // they were timed in one block before myst's connects); openvpnWarmupMs: the first start, not counted.
        stockTunnelUpMs: { openvpn: stockUpMs, openvpnSamples: stockStarts, openvpnWarmupMs: stock.samples[0], wireguardGo: stockWg.upMs },
        openvpnTunnelPhaseVsStock: tunnelVsStock,
        loadAverage: os.loadavg().map((l) => round(l, 2)),
        targets:
          "each myst tunnel ≥ 95% of its stock pair; WireGuard connect-to-first-byte p50 ≤ 25 ms (total, without the probe's start-up); OpenVPN's tunnel phase p50 ≤ 1.2× stock openvpn's start-to-up p50; kill switch on costs ≤ +5 ms p50",
      },
      [
        ["measure", "value", "ratio"],
        ["iperf3 bare namespace link (Mbit/s)", String(round(bare, 1)), ""],
        [`iperf3 stock OpenVPN, AES-256-GCM (Mbit/s), ${each}`, String(round(stockMbps, 1)), "1× (baseline)"],
        [
          `iperf3 myst OpenVPN, AES-256-GCM (Mbit/s), ${each}`,
          String(round(openvpnMbps, 1)),
          `${ratio.openvpnVsStock}× of stock OpenVPN, median of the rounds' ratios (rounds ${spread(openvpn)}; aim ≥ 0.95)`,
        ],
        [`iperf3 stock wireguard-go pair, MTU 1420 (Mbit/s), ${each}`, String(round(stockWgMbps, 1)), "1× (baseline)"],
        [
          `iperf3 myst WireGuard (wireguard-go, MTU 1420) (Mbit/s), ${each}`,
          String(round(wireguardMbps, 1)),
          `${ratio.wireguardVsStock}× of stock wireguard-go, median of the rounds' ratios (rounds ${spread(wireguard)}; aim ≥ 0.95); ${ratio.wireguardVsOpenvpn}× of myst OpenVPN`,
        ],
        [
          `stock OpenVPN client start to tunnel up, synchronous auth (ms) p50 of ${stockStarts.length}, each started just before one of myst's connects (alternated)`,
          String(stockUpMs),
          "1× (baseline)",
        ],
        ["stock wireguard-go: `wg set` on the client to first byte (ms)", String(stockWg.upMs), "1× (baseline)"],
        ...rows("openvpn", openvpn, stockUpMs),
        [
          "openvpn tunnel phase / the stock start just before it, per pair: median of the pairs' ratios",
          String(tunnelVsStock.medianPairRatio),
          `pairs ${tunnelVsStock.pairSpread} (the aim row is the ratio of the p50s above, ${tunnelVsStock.ratioOfP50s}×)`,
        ],
        ...(openvpn.firstSession
          ? [
              [
                "openvpn connect → first byte, a provider never used before (payments on) (ms) p50 / p99",
                `${openvpn.firstSession.neverUsed.p50} / ${openvpn.firstSession.neverUsed.p99}`,
                `${round(openvpn.firstSession.neverUsed.p50 / openvpn.firstSession.known.p50, 2)}× of a known provider's (aim 1×: no deposit on the path)`,
              ],
              [
                "openvpn connect → first byte, a known provider (payments on) (ms) p50 / p99",
                `${openvpn.firstSession.known.p50} / ${openvpn.firstSession.known.p99}`,
                "1× (baseline)",
              ],
              ["the deposit the first session no longer waits for (one vault deposit, local chain) (ms) p50", String(openvpn.firstSession.deposit.p50), ""],
            ]
          : []),
        ...rows("wireguard", wireguard, stockWg.upMs),
        ...timelineRows("wireguard", wireguard.timeline, "off", "on"),
        ...timelineRows("openvpn", openvpn.timeline, "off", "on"),
        [
          "load average at the end (1 / 5 / 15 min)",
          os
            .loadavg()
            .map((l) => l.toFixed(2))
            .join(" / "),
          `${os.cpus().length} cores`,
        ],
      ],
    );
  } finally {
    for (const c of children) await stopChild(c);
    await topology.down();
    await net.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
