// What an OpenVPN disconnect costs, event by event, on both sides: each `session.destroy()` of a myst OpenVPN session
// (consumer and provider in their namespaces, the provider's service in this process), with the consumer's and the
// provider's openvpn lines, the provider's management-interface client events, the provider's `status 3` polled
// every 10 ms (when the client's row leaves it), and when the consumer's openvpn exited, each in ms from the
// destroy's start. Run as root (about 40 s at 6 disconnects):
//   BENCH_TAG=<tag> flock /tmp/myst-heavy.lock npx ts-node --transpile-only scripts/bench/openvpn-exit.ts
// BENCH_DISCONNECTS=<n> (default 6); OPENVPN_SPARE=1: the consumer takes a spare openvpn (as a daemon with `openvpnSpare`).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Dialogs } from "../../node/dialog/dialogs";
import { ConsumerSessions } from "../../node/session/consumer";
import { ProviderSessions } from "../../node/session/provider";
import { signProposal } from "../../node/proposal/proposal";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { ManagementClient } from "../../node/services/openvpn/management";
import { OpenVpnProcess } from "../../node/services/openvpn/process";
import { OpenVpnProviderService } from "../../node/services/openvpn/provider";
import { OpenVpnSpare } from "../../node/services/openvpn/spare";
import { TestNetwork } from "../lib/test-network";
import { topologyUp } from "../lib/topology";
import { makeProposal } from "../lib/proposals";
import { benchBrokerAndDiscovery } from "./tunnel-myst";
import { runScript, summarize } from "./stats";

async function main(): Promise<void> {
  const disconnects = Number(process.env.BENCH_DISCONNECTS ?? 6);
  let t0 = 0;
  let events: string[] = [];
  const at = (what: string) => events.push(`${(performance.now() - t0).toFixed(1).padStart(8)} ms  ${what}`);
  const emitLine = OpenVpnProcess.prototype.emit;
  OpenVpnProcess.prototype.emit = function (this: OpenVpnProcess, event: string, ...args: unknown[]) {
    const side = this.options.configFile.endsWith("server.conf") ? "provider" : "consumer";
    // Not the `status 3` polled below.
    if (event === "line" && !String(args[0]).includes("CMD 'status 3'"))
      at(
        `${side} openvpn: ${String(args[0])
          .replace(/^\S+ \S+ \S+ \S+ \d+ /, "")
          .slice(0, 110)}`,
      );
    if (event === "exit") at(`${side} openvpn exited (${args[0]})`);
    return (emitLine as (e: string, ...a: unknown[]) => boolean).call(this, event, ...args);
  } as typeof OpenVpnProcess.prototype.emit;
  const emitManagement = ManagementClient.prototype.emit;
  ManagementClient.prototype.emit = function (this: ManagementClient, event: string, ...args: unknown[]) {
    if (event === "client") at(`management: >CLIENT:${(args[0] as { kind: string }).kind}`);
    return (emitManagement as (e: string, ...a: unknown[]) => boolean).call(this, event, ...args);
  } as typeof ManagementClient.prototype.emit;

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-ovexit-"));
  const net = await new TestNetwork().start();
  const topology = await topologyUp({ tag: process.env.BENCH_TAG ?? "ovex", consumers: 1 });
  const stops: (() => Promise<unknown>)[] = [];
  try {
    const providerKey = await net.registeredIdentity();
    const consumerKey = await net.registeredIdentity();
    const service = new OpenVpnProviderService({
      dir: path.join(dir, "provider"),
      directory: net.registry,
      publicAddress: topology.providerAddress,
      netns: topology.provider,
    });
    await service.start();
    stops.push(() => service.stop());
    const { broker } = await benchBrokerAndDiscovery(net, stops);
    const pd = new Dialogs({ broker, key: providerKey, directory: net.registry });
    const proposal = makeProposal(providerKey, { serviceType: "openvpn" }, net.nats.url);
    const ps = new ProviderSessions({ dialogs: pd, services: new Map([["openvpn", service]]), currentProposal: () => proposal });
    await pd.start();
    ps.start();
    stops.push(async () => {
      await ps.stop();
      pd.stop();
    });
    const cd = new Dialogs({ broker, key: consumerKey, directory: net.registry, subject: "myst.dialog.bench-ovexit" });
    await cd.start();
    stops.push(async () => cd.stop());
    const spare = process.env.OPENVPN_SPARE === "1" ? new OpenVpnSpare({ runDir: path.join(dir, "spare"), netns: topology.consumers[0] }) : undefined;
    await spare?.start();
    stops.push(async () => spare?.stop());
    const consumer = new OpenVpnConsumerService({
      key: consumerKey,
      runDir: path.join(dir, "consumer"),
      netns: topology.consumers[0],
      ...(spare ? { spare } : {}),
    });
    const sessions = new ConsumerSessions(cd);
    const management = () => (service as unknown as { process?: OpenVpnProcess }).process?.management;
    const destroyed: number[] = [];
    const exited: number[] = [];
    const gone: number[] = [];
    for (let i = 0; i < disconnects; i++) {
      const session = await sessions.connect({ proposal: signProposal(providerKey, proposal), service: consumer });
      await new Promise((r) => setTimeout(r, 300));
      const tunnel = session.tunnel as unknown as { process: OpenVpnProcess };
      events = [];
      t0 = performance.now();
      let exitedAt: number | undefined;
      tunnel.process.once("exit", () => (exitedAt = performance.now() - t0));
      // The provider's client list, every 10 ms, until the session's client is no longer in it.
      let goneAt: number | undefined;
      const polling = (async () => {
        for (let seen = true; seen && performance.now() - t0 < 15_000; ) {
          const rows =
            (await management()
              ?.clients()
              .catch(() => [])) ?? [];
          seen = rows.some((r) => r.username === session.id);
          if (!seen) goneAt = performance.now() - t0;
          else await new Promise((r) => setTimeout(r, 10));
        }
      })();
      await session.destroy();
      const destroyedAt = performance.now() - t0;
      at("session.destroy() resolved");
      await polling;
      at("the client's row gone from the provider's status 3");
      destroyed.push(Math.round(destroyedAt));
      if (exitedAt !== undefined) exited.push(Math.round(exitedAt));
      if (goneAt !== undefined) gone.push(Math.round(goneAt));
      console.log(
        `disconnect ${i + 1}: destroy ${destroyedAt.toFixed(0)} ms, consumer's openvpn exited ${exitedAt?.toFixed(0)} ms, provider's client row gone ${goneAt?.toFixed(0)} ms`,
      );
      if (process.env.OPENVPN_LINES === "1") for (const e of events.sort((a, b) => parseFloat(a) - parseFloat(b))) console.log(`    ${e}`);
    }
    const line = (name: string, xs: number[]) => {
      const s = summarize(xs);
      return `${name}: p50 ${s.p50} ms (min ${Math.min(...xs)}, max ${Math.max(...xs)}, n ${xs.length}; in order: ${xs.join(" ")})`;
    };
    console.log(`${spare ? "with" : "without"} a spare openvpn`);
    console.log(line("session.destroy()", destroyed));
    console.log(line("consumer's openvpn exited", exited));
    console.log(line("provider's client row gone", gone));
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err) => console.error(err));
    await topology.down();
    await net.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
runScript(main);
