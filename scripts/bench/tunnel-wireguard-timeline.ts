// The tunnel bench's WireGuard connects alone (no throughput, no OpenVPN), with their timeline: kill switch off
// beside on, phase by phase and step by step (tunnel-timeline.ts). For A/B work on the connect path; run as root:
//   BENCH_TAG=<tag> flock /tmp/myst-heavy.lock npx ts-node --transpile-only scripts/bench/tunnel-wireguard-timeline.ts
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { WireGuardSpare } from "../../node/services/wireguard/spare";
import { TestNetwork } from "../lib/test-network";
import { topologyUp } from "../lib/topology";
import { benchMyst, mystWireGuard } from "./tunnel-myst";
import { timelineRows } from "./tunnel-timeline";
import { runScript } from "./stats";

async function main(): Promise<void> {
  const connects = Number(process.env.BENCH_CONNECTS ?? 12);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-wgtl-"));
  const net = await new TestNetwork().start();
  const topology = await topologyUp({ tag: process.env.BENCH_TAG ?? "wgtl", consumers: 1 });
  try {
    const providerKey = await net.registeredIdentity();
    const consumerKey = await net.registeredIdentity();
    const spare = new WireGuardSpare({ runDir: path.join(dir, "spare"), netns: topology.consumers[0] });
    await spare.start();
    const r = await benchMyst(mystWireGuard(topology, spare), { net, topology, dir, providerKey, consumerKey, seconds: 1, connects, rounds: 0 }).finally(() =>
      spare.stop(),
    );
    const phases = Object.keys(r.phases).map((k) => `${k} ${r.phases[k].p50}${r.killSwitch.phasesOn[k] ? ` / ${r.killSwitch.phasesOn[k].p50}` : ""}`);
    console.log(`p50 off / on (ms): ${phases.join(", ")}; cost ${r.killSwitch.on.p50 - r.killSwitch.off.p50}`);
    for (const row of timelineRows("wireguard", r.timeline, "off", "on")) console.log(row.join(" | "));
  } finally {
    await topology.down();
    await net.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
runScript(main);
