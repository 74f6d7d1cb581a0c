// The tunnel bench's OpenVPN connects alone (no throughput, no WireGuard, no first sessions), each plain connect
// right after a stock openvpn start, as the bench alternates them; with their timeline (tunnel-timeline.ts). For A/B
// work on OpenVPN's tunnel phase; run as root (about 2 minutes at 12 connects):
//   BENCH_TAG=<tag> flock /tmp/myst-heavy.lock npx ts-node --transpile-only scripts/bench/tunnel-openvpn-timeline.ts
// OPENVPN_LINES=1 also places openvpn's own log lines (consumer's and provider's, as the node receives them) and the
// provider's management-interface client events on the timeline: the bench patches the two classes' `emit` (here only).
// OPENVPN_SPARE=1: the consumer as a daemon with `openvpnSpare` on (one openvpn kept waiting for its config), as the
// tunnel bench measures it; otherwise each connect starts its own openvpn while it negotiates (the default).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import diagnostics_channel from "node:diagnostics_channel";
import { CONNECT_STEPS } from "../../node/log/connect-trace";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { ManagementClient } from "../../node/services/openvpn/management";
import { OpenVpnProcess } from "../../node/services/openvpn/process";
import { OpenVpnProviderService } from "../../node/services/openvpn/provider";
import { OpenVpnSpare } from "../../node/services/openvpn/spare";
import { TestNetwork } from "../lib/test-network";
import { topologyUp } from "../lib/topology";
import { benchMyst } from "./tunnel-myst";
import { stockTunnel } from "./tunnel-stock";
import { timelineRows } from "./tunnel-timeline";
import { openvpnTunnelVsStock } from "./tunnel";
import { runScript, loadLine } from "./stats";

/** openvpn's lines (which side, the line with its numbers and ids blanked) and management events, as point steps. */
function traceOpenVpnLines(): void {
  const channel = diagnostics_channel.channel(CONNECT_STEPS);
  const point = (step: string) => {
    const now = performance.now();
    channel.publish({ step, start: now, end: now });
  };
  const emitLine = OpenVpnProcess.prototype.emit;
  OpenVpnProcess.prototype.emit = function (this: OpenVpnProcess, event: string, ...args: unknown[]) {
    if (event === "line") {
      const side = this.options.configFile.endsWith("server.conf") ? "provider" : "consumer";
      const line = String(args[0])
        .replace(/^\S+ \S+ \S+ \S+ \d+ /, "") // a date, when openvpn prints one
        .replace(/\[AF_INET\][0-9.:]+/g, "ADDR")
        .replace(/[0-9a-f]{16}/g, "ID")
        .replace(/\d+/g, "#")
        .slice(0, 90);
      point(`${side} openvpn: ${line}`);
    }
    return (emitLine as (e: string, ...a: unknown[]) => boolean).call(this, event, ...args);
  } as typeof OpenVpnProcess.prototype.emit;
  const emitManagement = ManagementClient.prototype.emit;
  ManagementClient.prototype.emit = function (this: ManagementClient, event: string, ...args: unknown[]) {
    if (event === "client") point(`management: >CLIENT:${(args[0] as { kind: string }).kind} read`);
    return (emitManagement as (e: string, ...a: unknown[]) => boolean).call(this, event, ...args);
  } as typeof ManagementClient.prototype.emit;
  const commands = ManagementClient.prototype.commands;
  ManagementClient.prototype.commands = function (this: ManagementClient, list: string[]) {
    point(`management: ${list.map((c) => c.split(" ")[0]).join(" + ")} sent`);
    const answered = commands.call(this, list);
    answered.then(() => point(`management: ${list.map((c) => c.split(" ")[0]).join(" + ")} answered`)).catch(() => undefined);
    return answered;
  };
}

async function main(): Promise<void> {
  const connects = Number(process.env.BENCH_CONNECTS ?? 12);
  if (process.env.OPENVPN_LINES === "1") traceOpenVpnLines();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-ovtl-"));
  const net = await new TestNetwork().start();
  const topology = await topologyUp({ tag: process.env.BENCH_TAG ?? "ovtl", consumers: 1 });
  try {
    const providerKey = await net.registeredIdentity();
    const consumerKey = await net.registeredIdentity();
    const stock = await stockTunnel(topology, dir, 1);
    await stock.down();
    const spare = process.env.OPENVPN_SPARE === "1" ? new OpenVpnSpare({ runDir: path.join(dir, "spare"), netns: topology.consumers[0] }) : undefined;
    await spare?.start();
    const r = await benchMyst(
      {
        type: "openvpn",
        provider: (d) =>
          new OpenVpnProviderService({
            dir: path.join(d, "provider"),
            directory: net.registry,
            publicAddress: topology.providerAddress,
            netns: topology.provider,
          }),
        consumer: (d, key = consumerKey) =>
          new OpenVpnConsumerService({ key, runDir: path.join(d, "consumer"), netns: topology.consumers[0], ...(spare ? { spare } : {}) }),
      },
      { net, topology, dir, providerKey, consumerKey, seconds: 1, connects, rounds: 0, stockStart: () => stock.start() },
    ).finally(() => Promise.all([stock.stop(), spare?.stop()]));
    const starts = r.stockStarts ?? [];
    const sorted = [...starts].sort((a, b) => a - b);
    const vs = openvpnTunnelVsStock(r.phases.tunnel.p50, sorted[Math.ceil(sorted.length / 2) - 1], r.tunnelSamples, starts);
    const phases = Object.keys(r.phases).map((k) => `${k} ${r.phases[k].p50}${r.killSwitch.phasesOn[k] ? ` / ${r.killSwitch.phasesOn[k].p50}` : ""}`);
    console.log(`${spare ? "with" : "without"} a spare openvpn; ${process.env.AB_LABEL ?? ""}`);
    console.log(`p50 off / on (ms): ${phases.join(", ")}; kill switch cost ${r.killSwitch.on.p50 - r.killSwitch.off.p50}`);
    console.log(`stock starts (ms, in order): ${starts.join(" ")}; myst tunnel phases: ${r.tunnelSamples.join(" ")}`);
    console.log(
      `tunnel phase p50 ${vs.mystP50} against stock ${vs.stockP50}: ${vs.ratioOfP50s}×; median of the pairs' ratios ${vs.medianPairRatio}× (${vs.pairSpread})`,
    );
    for (const row of timelineRows("openvpn", r.timeline, "off", "on")) console.log(row.join(" | "));
    console.log(`load ${loadLine()}`);
  } finally {
    await topology.down();
    await net.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
runScript(main);
