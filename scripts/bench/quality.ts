import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PerformanceObserver, performance } from "node:perf_hooks";
import v8 from "node:v8";
import vm from "node:vm";
import { Registry } from "prom-client";
import { buildDiscoveryApp } from "../../node/discovery/http-api";
import { ProposalIndex } from "../../node/discovery/index";
import { QualityBook } from "../../node/discovery/quality";
import { rankedKeeperOf } from "../../node/discovery/ranked-keeper";
import { JetStreamReceiptStore, type ReceiptStore, type StoredReceipt } from "../../node/discovery/receipt-store";
import { silentLogger } from "../../node/log/logger";
import { signProposal } from "../../node/proposal/proposal";
import { promiseCheckOf } from "../../node/quality/score";
import { makeProposal } from "../lib/proposals";
import { REPLICA_CREDENTIALS, startNatsServer } from "../lib/nats-server";
import { CHAIN, qualityFixture, signedReceipts, VAULT } from "./quality-fixture";
import { nowMs, round, summarize, writeResults } from "./stats";

const PROPOSALS = Number(process.env.MYST_BENCH_QUALITY_PROPOSALS ?? 10_000);
const RECEIPTS = Number(process.env.MYST_BENCH_QUALITY_RECEIPTS ?? 20_000);
/** "file" (default): raw receipts appended to a file, handed straight back; "jetstream": a real nats-server's stream. */
const STORE = process.env.MYST_BENCH_QUALITY_STORE === "jetstream" ? "jetstream" : "file";

/**
 * Heap and array buffers in use after a full collection (the flag set at run time: `npm run bench`
 * starts node without it), then another after a pause: array buffers a collection found dead are
 * freed by a sweeper after it, so one collection alone counted some freed ones (up to ~9 bytes a row
 * of 1M, varying from run to run).
 */
async function memoryUsed(): Promise<number> {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  gc();
  await new Promise((r) => setTimeout(r, 200));
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/**
 * The replica's raw store stand-in for the in-process run: each receipt appended to a file (the
 * disk, as JetStream's file storage) and handed straight to the book, nothing kept in memory.
 */
class AppendFileStore implements ReceiptStore {
  readonly shared = false;
  #fd = -1;
  #listener?: (r: StoredReceipt) => void;
  constructor(private readonly file: string) {}
  async start(): Promise<void> {
    this.#fd = fs.openSync(this.file, "w");
  }
  async follow(onReceipt: (r: StoredReceipt) => void): Promise<void> {
    this.#listener = onReceipt;
  }
  async append(_provider: string, _consumer: string, _id: string, data: Uint8Array): Promise<"stored"> {
    fs.writeSync(this.#fd, data);
    fs.writeSync(this.#fd, "\n");
    this.#listener?.({ data, storedAt: Date.now() });
    return "stored";
  }
  async read(): Promise<StoredReceipt[]> {
    return [];
  }
  async stop(): Promise<void> {
    if (this.#fd >= 0) fs.closeSync(this.#fd);
    fs.rmSync(this.file, { force: true });
  }
}

/** Garbage-collection pauses seen while `run` measures queries: which samples a pause fell into. */
function gcWatch(): { stop(): { start: number; duration: number }[] } {
  const pauses: { start: number; duration: number }[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) pauses.push({ start: e.startTime, duration: e.duration });
  });
  obs.observe({ entryTypes: ["gc"] });
  return {
    stop: () => {
      for (const e of obs.takeRecords()) pauses.push({ start: e.startTime, duration: e.duration });
      obs.disconnect();
      return pauses;
    },
  };
}

/**
 * Receipts in a discovery replica (docs/quality.md), in process: ingest (strict decode, signature
 * check against a known key, replay and rate checks, the store, then the replica's own check of what
 * the store hands back and its scoring row) and queries through the replica's HTTP app (Fastify
 * inject). Scores are kept as receipts arrive; a query reads them. Each query sample is matched with
 * the collector's pauses to see where the tail comes from.
 */
export async function benchQuality(): Promise<void> {
  const load0 = os.loadavg()[0];
  console.log(`keys and receipts for ${PROPOSALS} proposals, ${RECEIPTS} receipts…`);
  const fx = await qualityFixture(PROPOSALS, RECEIPTS);
  console.log(fx.signed ? `signed in ${Math.round(fx.signMs / 1000)} s to ${fx.file}` : `signed receipts read from ${fx.file}`);
  const keys = new Map([...fx.providers, ...fx.consumers].map((k) => [k.address.toLowerCase(), k.publicKey]));
  const directory = {
    publicKeyOf: async (id: string) => keys.get(id.toLowerCase()) ?? null,
    knownPublicKeyOf: (id: string) => keys.get(id.toLowerCase()),
  };
  const nats = STORE === "jetstream" ? await startNatsServer() : undefined;
  const memEmpty = await memoryUsed();
  const index = new ProposalIndex(3_600_000);
  for (const [i, p] of fx.providers.entries()) {
    const proposal = makeProposal(p, { location: { country: i % 2 ? "DE" : "FR" } });
    index.upsert(signProposal(p, proposal), proposal);
  }
  const memIndex = await memoryUsed();
  const store: ReceiptStore = nats
    ? new JetStreamReceiptStore({ servers: [nats.url], credentials: REPLICA_CREDENTIALS })
    : new AppendFileStore(path.join(os.tmpdir(), `myst-bench-quality-store-${process.pid}`));
  const book = new QualityBook({ directory, promiseCheck: promiseCheckOf(CHAIN, VAULT), store, perSignerPerHour: Number.MAX_SAFE_INTEGER });
  await book.start();
  const cpu0 = process.cpuUsage();
  const t0 = nowMs();
  for await (const s of signedReceipts(fx.file)) await book.ingest(s);
  while (book.size < RECEIPTS && nats) await new Promise((r) => setTimeout(r, 100));
  await book.idle();
  const ingestMs = nowMs() - t0;
  const cpu = process.cpuUsage(cpu0);
  const perSecond = Math.round((RECEIPTS * 1000) / ingestMs);
  console.log(`ingest: ${perSecond} receipts/s (${book.size} held)`);
  const memBook = await memoryUsed();
  const perProposal = Math.round((memBook - memEmpty) / PROPOSALS);

  const app = await buildDiscoveryApp(
    {
      ready: true,
      index,
      quality: book,
      postReceipt: (b) => book.ingest(b),
      postProbe: (b) => book.ingest(b, "probe"),
      metrics: new Registry(),
      post: async () => "refreshed",
      health: () => ({ broker: "connected", store: "ok" }),
      queryTimer: () => () => undefined,
    },
    { log: silentLogger },
  );
  // A replica makes its ranked order when its load ends, before it is ready (server.ts): so here.
  const readyT0 = nowMs();
  rankedKeeperOf(index, book).update();
  const readyOrderMs = round(nowMs() - readyT0);
  const queries: [string, string, number][] = [
    ["sort=quality, limit 100 (the first: the order was made at ready)", "/v1/proposals?sort=quality&limit=100", 1],
    ["sort=quality, limit 100", "/v1/proposals?sort=quality&limit=100", 1000],
    ["country + sort=quality", "/v1/proposals?country=DE&sort=quality&limit=100", 1000],
    ["min_quality=55", "/v1/proposals?min_quality=55&limit=100", 1000],
    ["no sort (key order), limit 100", "/v1/proposals?limit=100", 1000],
  ];
  const rows: string[][] = [
    ["measure", "p50 ms", "p99 ms", "n", "note"],
    [
      "ranked order made when the replica becomes ready (every listed proposal by its kept score)",
      String(readyOrderMs),
      "",
      "1",
      "before the replica is ready, not by a query",
    ],
  ];
  const tails: Record<string, unknown> = {};
  for (const [name, url, n] of queries) {
    const samples: { start: number; ms: number; cpuMs: number }[] = [];
    let results = 0;
    const watch = gcWatch();
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      const c = process.cpuUsage();
      const r = await app.inject({ method: "GET", url });
      const used = process.cpuUsage(c);
      samples.push({ start: s, ms: performance.now() - s, cpuMs: (used.user + used.system) / 1000 });
      results = (JSON.parse(r.body) as { proposals: unknown[] }).proposals.length;
    }
    // Let the observer deliver the last entries.
    await new Promise((r) => setImmediate(r));
    const pauses = watch.stop();
    const hit = samples.filter((x) => pauses.some((p) => p.start < x.start + x.ms && p.start + p.duration > x.start));
    const clean = samples.filter((x) => !hit.includes(x));
    const st = summarize(samples.map((x) => x.ms));
    const cleanSt = clean.length ? summarize(clean.map((x) => x.ms)) : undefined;
    const gcMs = round(
      pauses.reduce((a, p) => a + p.duration, 0),
      1,
    );
    const cpuSt = summarize(samples.map((x) => x.cpuMs));
    const note =
      n === 1
        ? `${results} results`
        : `${results} results; CPU time per query p50 ${cpuSt.p50} ms, p99 ${cpuSt.p99} ms; ${pauses.length} GC pauses (${gcMs} ms, max ${round(Math.max(0, ...pauses.map((p) => p.duration)), 1)} ms) fell in ${hit.length} samples; p99 of the other ${clean.length}: ${cleanSt?.p99 ?? "-"} ms`;
    rows.push([name, String(st.p50), String(st.p99), String(n), note]);
    tails[name] = {
      p50: st.p50,
      p99: st.p99,
      cpuP50: cpuSt.p50,
      cpuP99: cpuSt.p99,
      gcPauses: pauses.length,
      gcMs,
      samplesHitByGc: hit.length,
      p99WithoutGc: cleanSt?.p99 ?? null,
    };
  }
  // The ranked order is made again (at most once a second) when scores change: its cost, measured apart.
  const rebuild: number[] = [];
  for (let i = 0; i < 5; i++) {
    const s = nowMs();
    index.rankedOrder((p, t) => {
      const r = book.rated(p, t);
      return { rank: r?.rank ?? 50, score: r?.score ?? null };
    });
    rebuild.push(nowMs() - s);
  }
  const rb = summarize(rebuild);
  // What it costs when 1,000 proposals' scores changed since the last order: they are moved, not all sorted.
  const rate = (p: string, t: string) => {
    const r = book.rated(p, t);
    return { rank: r?.rank ?? 50, score: r?.score ?? null };
  };
  const base = index.rankedOrder(rate);
  const moved = fx.providers.slice(0, 1000).map((p) => `${p.address.toLowerCase()}/noop`);
  const rerank: number[] = [];
  for (let i = 0; i < 5; i++) {
    const s = nowMs();
    index.rerankedOrder(base, moved, rate);
    rerank.push(nowMs() - s);
  }
  const rr = summarize(rerank);
  rows.push([
    "ranked order made again (every listed proposal sorted by its kept score)",
    String(rb.p50),
    String(round(Math.max(...rebuild))),
    "5",
    "max shown as p99; made when the replica becomes ready, then only when over 50,000 scores or listings changed at once",
  ]);
  rows.push([
    "ranked order with 1,000 changed scores moved (on a timer, off the query path: ranked-keeper.ts)",
    String(rr.p50),
    String(round(Math.max(...rerank))),
    "5",
    "max shown as p99; a change shows in sort=quality within 100 ms plus this",
  ]);
  await app.close();
  rows.push([
    `receipt ingest (receipts/s, ${RECEIPTS} receipts about ${PROPOSALS} proposals, one thread; signature checks included)`,
    String(perSecond),
    "",
    String(RECEIPTS),
    `CPU ${round((cpu.user + cpu.system) / RECEIPTS, 1)} µs/receipt (${Math.round((RECEIPTS * 1e6) / (cpu.user + cpu.system))} per CPU-second); store: ${STORE === "jetstream" ? "JetStream (nats-server, file storage)" : "an append-only file"}`,
  ]);
  rows.push([
    "memory per proposal above an empty replica (bytes: heap + array buffers after a full GC)",
    String(perProposal),
    "",
    String(PROPOSALS),
    `index and ${book.size} receipts' scoring rows and scores`,
  ]);
  rows.push(["  of which the index (bytes per proposal)", String(Math.round((memIndex - memEmpty) / PROPOSALS)), "", String(PROPOSALS), "no receipts"]);
  rows.push([
    "  of which receipts (bytes per receipt held)",
    String(Math.round((memBook - memIndex) / Math.max(1, book.size))),
    "",
    String(book.size),
    "a scoring row each, the replay table, per-proposal scores; the raw receipts are in the store",
  ]);
  rows.push([
    "machine load average (1 min) at start and end",
    String(round(load0, 2)),
    String(round(os.loadavg()[0], 2)),
    "",
    "other processes compete for the same cores",
  ]);
  writeResults(
    "quality",
    {
      proposals: PROPOSALS,
      receipts: RECEIPTS,
      store: STORE,
      ingestPerSecond: perSecond,
      bytesPerProposal: perProposal,
      readyOrderMs,
      tails,
      signMs: fx.signMs,
      rows,
    },
    rows,
  );
  await book.stop();
  await nats?.stop();
}
