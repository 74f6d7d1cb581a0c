import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DialogsPool } from "../lib/dialogs-pool";
import type { IdentityKey } from "../../node/identity/key";
import { signProposal } from "../../node/proposal/proposal";
import { TunnelControls } from "../../node/services/controls/tunnel-controls";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { OpenVpnProviderService } from "../../node/services/openvpn/provider";
import { ConsumerSessions } from "../../node/session/consumer";
import type { ConsumerSession } from "../../node/session/consumer-session";
import { ProviderSessions } from "../../node/session/provider";
import { TestNetwork } from "../lib/test-network";
import { makeProposal } from "../lib/proposals";
import { missingE2EPrerequisites } from "../lib/prereqs";
import { stopChild } from "../lib/local-chain";
import { topologyUp, type Topology } from "../lib/topology";
import { until } from "../lib/until";
import { round, writeResults } from "./stats";

const IPERF = "/usr/bin/iperf3";
const SECONDS = Number(process.env.BENCH_SHAPING_SECONDS ?? 6);

/** iperf3 from `netns` to the internet host (`reverse`: the host sends, i.e. the consumer downloads); Mbit/s received. */
function iperf(netns: string, host: string, port: number, reverse: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const args = ["netns", "exec", netns, IPERF, "-c", host, "-p", String(port), "-t", String(SECONDS), "-O", "1", "-J", ...(reverse ? ["-R"] : [])];
    const child = spawn("/usr/sbin/ip", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.once("exit", (code) => {
      try {
        resolve(JSON.parse(out).end.sum_received.bits_per_second / 1e6);
      } catch {
        reject(new Error(`iperf3 exited ${code}: ${out.slice(0, 300)}`));
      }
    });
  });
}

interface Step {
  name: string;
  /** Each session's limit / the whole service's, Mbit/s (0: none). */
  sessionMbps: number;
  serviceMbps: number;
  sessions: 1 | 2;
}

const STEPS: Step[] = [
  { name: "unlimited, 1 session", sessionMbps: 0, serviceMbps: 0, sessions: 1 },
  { name: "session limit 5 Mbit/s", sessionMbps: 5, serviceMbps: 0, sessions: 1 },
  { name: "session limit 50 Mbit/s", sessionMbps: 50, serviceMbps: 0, sessions: 1 },
  { name: "session limit 200 Mbit/s", sessionMbps: 200, serviceMbps: 0, sessions: 1 },
  { name: "unlimited, 2 sessions (sum)", sessionMbps: 0, serviceMbps: 0, sessions: 2 },
  { name: "service limit 50 Mbit/s, 2 sessions (sum)", sessionMbps: 0, serviceMbps: 50, sessions: 2 },
];

/**
 * `npm run bench -- shaping`: iperf3 through real OpenVPN sessions limited by the provider's tc
 * shaping (node/services/controls), download and upload, next to the unlimited rate measured in
 * the same run. The aim: the delivered rate within ±10% of the setting.
 */
export async function benchShaping(): Promise<void> {
  const missing = missingE2EPrerequisites();
  if (missing.length) throw new Error(`the shaping benchmark needs ${missing.join(", ")}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-shaping-"));
  const net = await new TestNetwork().start();
  const topology: Topology = await topologyUp({ tag: process.env.BENCH_TAG ?? "bsh", consumers: 2 });
  const servers: ChildProcess[] = [];
  const pool = new DialogsPool(net);
  const rows: Record<string, unknown>[] = [];
  try {
    for (const port of [5201, 5202]) {
      servers.push(
        spawn("/usr/sbin/ip", ["netns", "exec", topology.internet, IPERF, "-s", "-B", topology.internetAddress, "-p", String(port)], { stdio: "ignore" }),
      );
    }
    const providerKey = await net.registeredIdentity();
    const consumerKeys: IdentityKey[] = [await net.registeredIdentity(), await net.registeredIdentity()];
    const { dialogsFor } = pool;
    const providerDialogs = await dialogsFor(providerKey);
    const consumers = await Promise.all(consumerKeys.map(async (k, i) => new ConsumerSessions(await dialogsFor(k, `myst.dialog.bench-shaping-c${i}`))));
    const proposal = makeProposal(providerKey, { serviceType: "openvpn" }, net.nats.url);
    const services = new Map<string, OpenVpnProviderService>();
    const sessions = new ProviderSessions({ dialogs: providerDialogs, services, currentProposal: () => proposal });
    sessions.start();
    for (const step of STEPS) {
      const limited = step.sessionMbps > 0 || step.serviceMbps > 0;
      const service = new OpenVpnProviderService({
        dir: path.join(dir, "provider"),
        directory: net.registry,
        publicAddress: topology.providerAddress,
        netns: topology.provider,
        ...(limited
          ? {
              controls: (device: string) =>
                new TunnelControls({
                  netns: topology.provider,
                  device,
                  sessionMbps: step.sessionMbps,
                  serviceMbps: step.serviceMbps,
                  egress: { allowSmtp: true },
                }),
            }
          : {}),
      });
      await service.start();
      services.set("openvpn", service);
      const live: ConsumerSession[] = [];
      try {
        for (let i = 0; i < step.sessions; i++) {
          const svc = new OpenVpnConsumerService({ key: consumerKeys[i], runDir: path.join(dir, `c${i}`), netns: topology.consumers[i] });
          live.push(await consumers[i].connect({ proposal: signProposal(providerKey, proposal), service: svc }));
        }
        if (limited) {
          const classes = () =>
            topology
              .exec(topology.provider, ["/usr/sbin/tc", "class", "show", "dev", "myst0"])
              .split("\n")
              .filter((l) => / parent 1:1 /.test(l)).length;
          await until(() => classes() >= step.sessions, "each session's traffic class");
        }
        const run = async (reverse: boolean) =>
          round(
            (await Promise.all(live.map((_, i) => iperf(topology.consumers[i], topology.internetAddress, 5201 + i, reverse)))).reduce((a, b) => a + b, 0),
            1,
          );
        const download = await run(true);
        const upload = await run(false);
        const setting = step.serviceMbps || step.sessionMbps;
        const row = {
          step: step.name,
          settingMbps: setting || null,
          downloadMbps: download,
          uploadMbps: upload,
          downloadVsSetting: setting ? round(download / setting, 3) : null,
          uploadVsSetting: setting ? round(upload / setting, 3) : null,
        };
        rows.push(row);
        console.log(JSON.stringify(row));
      } finally {
        await Promise.all(live.map((s) => s.destroy().catch(() => undefined)));
        await service.stop();
      }
    }
  } finally {
    await pool.stop();
    await Promise.all(servers.map((s) => stopChild(s)));
    await topology.down();
    await net.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const within = (r: number | null) => (r === null ? "—" : Math.abs(r - 1) <= 0.1 ? "yes" : "NO");
  writeResults("shaping", { seconds: SECONDS, steps: rows }, [
    ["step", "setting Mbit/s", "download Mbit/s", "upload Mbit/s", "download/setting", "upload/setting", "within ±10%"],
    ...rows.map((r) => [
      String(r.step),
      String(r.settingMbps ?? "—"),
      String(r.downloadMbps),
      String(r.uploadMbps),
      String(r.downloadVsSetting ?? "—"),
      String(r.uploadVsSetting ?? "—"),
      r.settingMbps ? `${within(r.downloadVsSetting as number)} / ${within(r.uploadVsSetting as number)}` : "—",
    ]),
  ]);
}
