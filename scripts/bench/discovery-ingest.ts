import fs from "node:fs";
import { Broker } from "../../node/broker/broker";
import { DiscoveryService } from "../../node/discovery/server";
import { SignatureWorkers } from "../../node/discovery/signature-workers";
import { directoryFromKeysFile } from "../lib/proposal-fleet";
import { nowMs, round, runScript } from "./stats";

/**
 * The in-process ingest of `npm run bench -- discovery`, in its own process so the benchmark can
 * confine it to one CPU (taskset) for the per-core figure: verifies and indexes every announcement
 * of a file (one JSON per line) with `threads` signature threads, up to 1024 in flight, no NATS and
 * no HTTP. Prints `{threads, proposals, seconds, perSecond}`.
 */
async function main() {
  const [payloadsFile, keysFile, threadsArg] = process.argv.slice(2);
  const payloads = fs.readFileSync(payloadsFile, "utf8").split("\n").filter(Boolean);
  const threads = Number(threadsArg);
  const workers = new SignatureWorkers(threads);
  // The broker is never started: ingest() does not use it.
  const service = new DiscoveryService({
    broker: new Broker({ servers: ["nats://127.0.0.1:4222"] }),
    directory: directoryFromKeysFile(keysFile),
    port: 0,
    ttlMs: 3_600_000,
    signatureWorkers: workers,
  });
  await workers.start();
  await workers.warmUp();
  const t0 = nowMs();
  const cpu0 = process.cpuUsage();
  const loop0 = performance.eventLoopUtilization();
  let next = 0;
  await Promise.all(
    Array.from({ length: 1024 }, async () => {
      while (next < payloads.length) await service.ingest(JSON.parse(payloads[next++]), "nats");
    }),
  );
  const seconds = (nowMs() - t0) / 1000;
  // CPU of every thread of the process (getrusage), and the main thread's busy time: what the work
  // costs whatever else the machine runs, and how much of it cannot move to the signature threads.
  const cpu = process.cpuUsage(cpu0);
  const mainBusyMs = performance.eventLoopUtilization(loop0).active;
  await workers.stop();
  if (service.index.size !== payloads.length) throw new Error(`indexed ${service.index.size} of ${payloads.length}`);
  process.stdout.write(
    `${JSON.stringify({
      threads,
      proposals: payloads.length,
      seconds: round(seconds),
      perSecond: Math.round(payloads.length / seconds),
      cpuUsPerProposal: Math.round((cpu.user + cpu.system) / payloads.length),
      mainThreadUsPerProposal: Math.round((mainBusyMs * 1000) / payloads.length),
    })}\n`,
  );
}

runScript(main);
