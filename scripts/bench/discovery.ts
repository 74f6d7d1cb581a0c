import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { connect } from "nats";
import { DISCOVERY_SUBJECTS } from "../../node/discovery/announcements";
import { defaultThreads } from "../../node/discovery/signature-workers";
import { ProviderFleet } from "../lib/proposal-fleet";
import { replicaEnv, startNatsServer } from "../lib/nats-server";
import { startLocalChain, stopChild } from "../lib/local-chain";
import { nowMs, round, summarize, writeResults } from "./stats";

/**
 * Discovery's own ingest work (verify, decide, index; no NATS, no HTTP) in a child process with
 * `threads` signature threads. `oneCpu`: the process (main thread and workers) is confined to one CPU
 * with taskset, so the figure is the pipeline's throughput per core; otherwise it may use every core.
 */
async function ingestInProcess(payloadsFile: string, keysFile: string, threads: number, oneCpu: boolean) {
  const script = [
    require.resolve("ts-node/dist/bin.js"),
    "--transpile-only",
    path.join(__dirname, "discovery-ingest.ts"),
    payloadsFile,
    keysFile,
    String(threads),
  ];
  const [cmd, args] = oneCpu ? ["taskset", ["-c", "0", process.execPath, ...script]] : [process.execPath, script];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    let buf = "";
    child.stdout!.on("data", (d) => (buf += d));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(buf) : reject(new Error(`in-process ingest (${threads} threads) exited ${code}`))));
  });
  type Ingest = { threads: number; proposals: number; seconds: number; perSecond: number; cpuUsPerProposal: number; mainThreadUsPerProposal: number };
  return { ...(JSON.parse(out) as Ingest), oneCpu };
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? round(Number(m[1]) / 1024, 1) : NaN;
}

const ROOT = path.resolve(__dirname, "..", "..");

/** Builds dist/ (tsc, incremental): the replicas measured are the compiled ones that ship. */
function buildDist(): void {
  const r = spawnSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", path.join(ROOT, "tsconfig.build.json")], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed (${r.status})`);
}

/**
 * The node flags `myst discovery` runs with (bin/myst, the installed command, passes them to a
 * discovery replica): read from there, so the bench's replicas run as the shipped one does.
 */
function shippedReplicaFlags(): string[] {
  const flags = /exec node (--[^"]+) "\$main"/.exec(fs.readFileSync(path.join(ROOT, "bin", "myst"), "utf8"))?.[1];
  if (!flags) throw new Error("bin/myst passes no node flags to `myst discovery`");
  return flags.split(" ");
}

/**
 * A replica as it ships (compiled, plain Node: discovery-replica.js, with bin/myst's node flags) on the bench's bucket, with the
 * bench's identities as its directory; `replicaKeyFile`: the replicas' key (the same file: replicas
 * of one service that trust each other's marks).
 */
async function startReplica(
  natsUrl: string,
  keysFile: string,
  bucket: string,
  replicaKeyFile: string,
  /** Where the replica writes a CPU profile of its start() (none: not profiled). */
  startProfile?: string,
): Promise<{ child: ChildProcess; url: string; readyMs: number; cpuMs: number; proposals: number }> {
  const child = spawn(process.execPath, [...shippedReplicaFlags(), path.join(__dirname, "discovery-replica.js"), natsUrl, keysFile, bucket, replicaKeyFile], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...replicaEnv(), MYST_BENCH_START_PROFILE: startProfile ?? "" },
  });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = "";
    child.stdout!.on("data", (d) => {
      buf += d;
      if (buf.includes("\n")) resolve(buf.split("\n")[0]);
    });
    child.once("exit", (code) => reject(new Error(`discovery server exited ${code}`)));
  });
  return { child, ...(JSON.parse(line) as { url: string; readyMs: number; cpuMs: number; proposals: number }) };
}

/**
 * The RSS of `myst discovery` itself (bin/myst, the installed command: node running
 * dist/node/cli/main.js with the CLI, the chain's registry, the broker, the replica) listening on an
 * empty bucket, on a local chain.
 */
async function shippedEmptyRssMb(natsUrl: string, tmp: string): Promise<number> {
  const chain = await startLocalChain();
  // Started as installed: bin/myst execs node in its place, so the child's pid is the replica's.
  const child = spawn(path.join(ROOT, "bin", "myst"), ["discovery", "--port", "0", "--bucket", "bench-empty"], {
    stdio: ["ignore", "pipe", "inherit"],
    env: {
      ...process.env,
      ...replicaEnv(),
      MYST_RPC_URL: chain.rpcUrl,
      MYST_DEPLOYMENT: chain.deploymentFile,
      MYST_BROKER_URLS: natsUrl,
      MYST_DATA_DIR: fs.mkdtempSync(path.join(tmp, "cli-")),
      MYST_LOG_LEVEL: "warn",
    },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let buf = "";
      child.stdout!.on("data", (d) => {
        buf += d;
        if (buf.includes("discovery listening")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`myst discovery exited ${code}`)));
    });
    // Settled: the signature threads started, the first store check ran.
    await new Promise((r) => setTimeout(r, 3000));
    return rssMb(child.pid!);
  } finally {
    await stopChild(child);
    await chain.stop();
  }
}

/**
 * Discovery on JetStream: ingest per core and with every core (signature threads), ingest over
 * NATS into the bucket, query latency of each filter over HTTP at 10k and at the total, RSS of a
 * replica holding the total, and how long a fresh replica takes to load the bucket and be ready.
 * Sizes: BENCH_PROPOSALS (default 100000), BENCH_QUERIES (500), BENCH_INGEST (20000, in process).
 * BENCH_START_PROFILE=<file>: the fresh replica (the replicas' key) writes a CPU profile of its start() there.
 */
export async function benchDiscovery(): Promise<void> {
  const TOTAL = Number(process.env.BENCH_PROPOSALS ?? 100_000);
  const QUERIES = Number(process.env.BENCH_QUERIES ?? 500);
  const INGEST = Math.min(TOTAL, Number(process.env.BENCH_INGEST ?? 20_000));
  const providers = Math.ceil(TOTAL / 10);
  const cores = defaultThreads();
  const loadStart = os.loadavg().map((x) => round(x, 2));

  console.log(`signing ${TOTAL} proposals of ${providers} providers…`);
  const fleet = new ProviderFleet(providers);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-"));
  const keysFile = path.join(tmp, "keys.json");
  fleet.writeKeys(keysFile);
  const payloads = fleet.sign(TOTAL).map((s) => Buffer.from(JSON.stringify(s)));

  const payloadsFile = path.join(tmp, "payloads.jsonl");
  fs.writeFileSync(payloadsFile, payloads.slice(0, INGEST).join("\n") + "\n");
  console.log(`ingest in process: confined to one CPU (1 signature thread), then 1 and ${cores} threads on every CPU…`);
  const oneCore = await ingestInProcess(payloadsFile, keysFile, 1, true);
  const oneThread = await ingestInProcess(payloadsFile, keysFile, 1, false);
  const allCores = await ingestInProcess(payloadsFile, keysFile, cores, false);

  console.log("building dist/ (the replicas measured are the compiled ones)…");
  buildDist();
  const replicaKeyFile = path.join(tmp, "replica.key");
  const strangerKeyFile = path.join(tmp, "stranger.key");
  const nats = await startNatsServer();
  const children: ChildProcess[] = [];
  try {
    console.log("myst discovery (bin/myst) on an empty bucket, on a local chain…");
    const rssShippedEmpty = await shippedEmptyRssMb(nats.url, tmp);
    const first = await startReplica(nats.url, keysFile, "bench", replicaKeyFile);
    children.push(first.child);
    const rssEmpty = rssMb(first.child.pid!);
    const url = first.url;
    const nc = await connect({ servers: nats.url });
    const health = async (u = url) => (await (await fetch(`${u}/health`)).json()) as { proposals: number };

    // Publishes with a window of unacknowledged proposals (acknowledged = counted in the index).
    const WINDOW = 2000;
    async function ingest(from: number, to: number) {
      const t0 = nowMs();
      let indexed = (await health()).proposals;
      let i = from;
      let stalled = 0;
      while (indexed < to) {
        while (i < to && i - indexed < WINDOW) nc.publish(DISCOVERY_SUBJECTS.register, payloads[i++]);
        await nc.flush();
        await new Promise((r) => setTimeout(r, 10));
        const now = (await health()).proposals;
        stalled = now === indexed ? stalled + 1 : 0;
        if (stalled > 1000) throw new Error(`ingest stalled at ${now} of ${to} proposals`);
        indexed = now;
      }
      const seconds = (nowMs() - t0) / 1000;
      return { proposals: to - from, seconds: round(seconds), perSecond: Math.round((to - from) / seconds) };
    }

    const someProvider = fleet.keys[7].address;
    const queries: [string, string][] = [
      ["baseline GET /health", "/health"],
      ["no filter, limit 100", "/v1/proposals?limit=100"],
      ["no filter, limit 100, a page deep in (cursor)", `/v1/proposals?limit=100&cursor=${Buffer.from(`0x8${"0".repeat(39)}/svc-0`).toString("base64url")}`],
      ["service_type", "/v1/proposals?service_type=svc-3"],
      ["country", "/v1/proposals?country=DE"],
      ["ip_type", "/v1/proposals?ip_type=mobile"],
      ["metering=hour", "/v1/proposals?metering=hour"],
      ["max_price_per_hour", "/v1/proposals?max_price_per_hour=5000000000000000"],
      ["max_price_per_gib", "/v1/proposals?max_price_per_gib=1000000000000000"],
      ["min_bandwidth", "/v1/proposals?min_bandwidth=900"],
      ["provider_id", `/v1/proposals?provider_id=${someProvider}`],
      ["service_type + country", "/v1/proposals?service_type=svc-3&country=DE"],
      [
        "country + ip_type + max price/h + min bandwidth",
        "/v1/proposals?country=US&ip_type=residential&max_price_per_hour=50000000000000000&min_bandwidth=200",
      ],
      ["contradictory: max price/h 0 + metering=hour (walks the free-per-hour band, matches nothing)", "/v1/proposals?max_price_per_hour=0&metering=hour"],
      ["matches nothing (country bucket empty)", "/v1/proposals?country=ZZ"],
    ];
    async function measureQueries(u: string) {
      const out: Record<string, ReturnType<typeof summarize> & { results: number }> = {};
      for (const [name, q] of queries) {
        const samples: number[] = [];
        let results = 0;
        for (let i = 0; i < QUERIES + 20; i++) {
          const t = nowMs();
          const r = await fetch(u + q);
          const body = (await r.json()) as { proposals?: unknown[] };
          if (i >= 20) samples.push(nowMs() - t);
          results = body.proposals?.length ?? 0;
        }
        out[name] = { ...summarize(samples), results };
      }
      return out;
    }

    const small = Math.min(10_000, TOTAL);
    console.log(`ingest over NATS into JetStream: ${small}, then ${TOTAL - small} more…`);
    const ingestSmall = await ingest(0, small);
    const at10k = await measureQueries(url);
    const ingestRest = await ingest(small, TOTAL);
    await nc.drain();
    const rssIngesting = rssMb(first.child.pid!);

    console.log("a fresh replica loads the bucket…");
    const t0 = nowMs();
    const fresh = await startReplica(nats.url, keysFile, "bench", replicaKeyFile, process.env.BENCH_START_PROFILE);
    const freshWallMs = nowMs() - t0;
    children.push(fresh.child);
    if (fresh.proposals !== TOTAL) throw new Error(`the fresh replica was ready with ${fresh.proposals} of ${TOTAL}`);
    const rssFresh = rssMb(fresh.child.pid!);
    // Queries at the total on the fresh replica (the ingesting one carries ingest garbage).
    const atTotal = await measureQueries(fresh.url);
    const rssAfterQueries = rssMb(fresh.child.pid!);
    await stopChild(fresh.child);

    console.log("a fresh replica with another key (its marks vouch for nothing: every signature checked) loads the bucket…");
    const stranger = await startReplica(nats.url, keysFile, "bench", strangerKeyFile);
    children.push(stranger.child);
    if (stranger.proposals !== TOTAL) throw new Error(`the replica with another key was ready with ${stranger.proposals} of ${TOTAL}`);
    await stopChild(stranger.child);

    const k = TOTAL >= 1000 ? `${TOTAL / 1000}k` : String(TOTAL);
    const rows: string[][] = [["measure", "at 10k p50 ms", "at 10k p99 ms", `at ${k} p50 ms`, `at ${k} p99 ms`, `results at ${k}`]];
    for (const [name] of queries) {
      const a = at10k[name];
      const b = atTotal[name];
      rows.push([name, String(a.p50), String(a.p99), String(b.p50), String(b.p99), String(b.results)]);
    }
    const memory = {
      rssEmptyMb: rssEmpty,
      rssShippedEmptyMb: rssShippedEmpty,
      rssIngestingReplicaMb: rssIngesting,
      rssFreshReplicaMb: rssFresh,
      rssFreshAfterQueriesMb: rssAfterQueries,
      bytesPerProposalTotalRss: Math.round((rssAfterQueries * 1024 * 1024) / TOTAL),
      bytesPerProposalAboveEmpty: Math.round(((rssAfterQueries - rssEmpty) * 1024 * 1024) / TOTAL),
      /** `myst discovery` empty plus what the index adds: the shipped process holding the total. */
      bytesPerProposalShippedWhole: Math.round(((rssShippedEmpty + rssAfterQueries - rssEmpty) * 1024 * 1024) / TOTAL),
    };
    const ready = {
      proposals: TOTAL,
      startMs: round(fresh.readyMs, 1),
      cpuMs: round(fresh.cpuMs, 1),
      fromSpawnMs: round(freshWallMs, 1),
      anotherKey: { startMs: round(stranger.readyMs, 1), cpuMs: round(stranger.cpuMs, 1) },
    };
    const cpuOf = (r: typeof oneCore) => `CPU ${r.cpuUsPerProposal} µs/proposal, main thread busy ${r.mainThreadUsPerProposal} µs/proposal`;
    rows.push([
      `ingest in process, one CPU: main thread + 1 signature thread under taskset (proposals/s, ${INGEST})`,
      String(oneCore.perSecond),
      "",
      "",
      "",
      cpuOf(oneCore),
    ]);
    rows.push([`ingest in process, 1 signature thread, every CPU (proposals/s, ${INGEST})`, String(oneThread.perSecond), "", "", "", cpuOf(oneThread)]);
    rows.push([
      `ingest in process, ${cores} signature threads, every CPU (proposals/s, ${INGEST}; speed-up over one CPU)`,
      String(allCores.perSecond),
      "",
      `speed-up ${round(allCores.perSecond / oneCore.perSecond, 2)}×`,
      "",
      cpuOf(allCores),
    ]);
    rows.push(["ingest over NATS into JetStream (proposals/s, one replica)", String(ingestSmall.perSecond), "", String(ingestRest.perSecond), "", ""]);
    rows.push([
      `RSS of a replica holding ${k} (MB; empty ${rssEmpty}; node ${shippedReplicaFlags().join(" ")}, as bin/myst runs it)`,
      "",
      "",
      String(rssAfterQueries),
      "",
      `${memory.bytesPerProposalTotalRss} B/proposal (${memory.bytesPerProposalAboveEmpty} above empty)`,
    ]);
    rows.push([
      `RSS of myst discovery (bin/myst: dist/node/cli/main.js, ${shippedReplicaFlags().join(" ")}) on an empty bucket (MB)`,
      "",
      "",
      String(rssShippedEmpty),
      "",
      `with the index of ${k}: ${memory.bytesPerProposalShippedWhole} B/proposal`,
    ]);
    rows.push([
      `fresh replica ready with ${k}, the replicas' key (ms: start(); from spawn)`,
      "",
      "",
      String(ready.startMs),
      String(ready.fromSpawnMs),
      `CPU ${ready.cpuMs} ms in start()`,
    ]);
    rows.push([
      `fresh replica ready with ${k}, another key: every signature checked (ms: start())`,
      "",
      "",
      String(ready.anotherKey.startMs),
      "",
      `CPU ${ready.anotherKey.cpuMs} ms in start()`,
    ]);
    const loadEnd = os.loadavg().map((x) => round(x, 2));
    rows.push([
      "machine load average (1 min) at start and end: other processes compete for the same cores",
      String(loadStart[0]),
      "",
      String(loadEnd[0]),
      "",
      "",
    ]);
    writeResults(
      "discovery",
      {
        ingest: {
          inProcessOneCpu: oneCore,
          inProcessOneThread: oneThread,
          inProcessAllThreads: { ...allCores, speedup: round(allCores.perSecond / oneCore.perSecond, 2) },
          overNats: { first10k: ingestSmall, rest: ingestRest },
        },
        queriesAt10k: at10k,
        queriesAtTotal: atTotal,
        memory,
        freshReplicaReady: ready,
        loadAverage: { start: loadStart, end: loadEnd },
        total: TOTAL,
        targets:
          "speed-up ≥ 1.8× on 2 cores; p99 ≤ 10 ms at 100k for every filter; ≤ 1.5 KB per proposal above empty; whole process ≤ 2 KB per proposal at 100k; empty myst discovery ≤ 120 MB RSS; fresh replica ready ≤ 3 s at 100k",
      },
      rows,
    );
  } finally {
    for (const c of children) await stopChild(c);
    await nats.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
