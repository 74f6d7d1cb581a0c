import os from "node:os";
import v8 from "node:v8";
import vm from "node:vm";
import { Registry } from "prom-client";
import { PromiseDigests, vaultDomain } from "../../node/chain/eip712";
import { buildDiscoveryApp } from "../../node/discovery/http-api";
import { ProposalIndex } from "../../node/discovery/index";
import { QualityBook } from "../../node/discovery/quality";
import { LocalReceiptStore } from "../../node/discovery/receipt-store";
import { IdentityKey } from "../../node/identity/key";
import { silentLogger } from "../../node/log/logger";
import { signProposal } from "../../node/proposal/proposal";
import { type Receipt, type SignedReceipt, signReceipt, STAGES } from "../../node/quality/receipt";
import { promiseCheckOf } from "../../node/quality/score";
import { makeProposal } from "../lib/proposals";
import { nowMs, round, summarize, writeResults } from "./stats";

const PROPOSALS = Number(process.env.MYST_BENCH_QUALITY_PROPOSALS ?? 10_000);
const RECEIPTS = Number(process.env.MYST_BENCH_QUALITY_RECEIPTS ?? 20_000);
const CONSUMERS = 500;
const VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const CHAIN = 31337n;

/** The heap in use after a full collection (the flag set at run time: `npm run bench` starts node without it). */
function heapUsed(): number {
  v8.setFlagsFromString("--expose-gc");
  (vm.runInNewContext("gc") as () => void)();
  return process.memoryUsage().heapUsed;
}

/**
 * Receipts in a discovery replica (docs/quality.md), in process: ingest (strict decode, signature
 * check against a known key, replay and rate checks, the local store) and the quality-sorted query
 * through the replica's HTTP app (Fastify inject), with every proposal's score computed from its
 * receipts (promise signatures checked) the first time it is ranked, then cached.
 */
export async function benchQuality(): Promise<void> {
  const load0 = os.loadavg()[0];
  const digests = new PromiseDigests(vaultDomain(CHAIN, VAULT));
  const providers = Array.from({ length: PROPOSALS }, () => IdentityKey.generate());
  const consumers = Array.from({ length: CONSUMERS }, () => IdentityKey.generate());
  const keys = new Map([...providers, ...consumers].map((k) => [k.address.toLowerCase(), k.publicKey]));
  const directory = {
    publicKeyOf: async (id: string) => keys.get(id.toLowerCase()) ?? null,
    knownPublicKeyOf: (id: string) => keys.get(id.toLowerCase()),
  };
  const heapEmpty = heapUsed();
  const index = new ProposalIndex(3_600_000);
  for (const [i, p] of providers.entries()) {
    const proposal = makeProposal(p, { location: { country: i % 2 ? "DE" : "FR" } });
    index.upsert(signProposal(p, proposal), proposal);
  }
  const bytesPerProposal = Math.round((heapUsed() - heapEmpty) / PROPOSALS);
  // Each consumer has paid one provider 0.1 MYST: its promise backs its receipts (failures included).
  const MYST = 10n ** 18n;
  const promises = consumers.map((c, i) => {
    const to = providers[i % providers.length].address;
    return {
      provider: to.toLowerCase(),
      amount: MYST / 10n,
      signature: `0x${Buffer.from(c.signDigest(digests.digest(c.address, to, MYST / 10n))).toString("hex")}`,
    };
  });
  console.log(`signing ${RECEIPTS} receipts…`);
  const signed: SignedReceipt[] = [];
  for (let i = 0; i < RECEIPTS; i++) {
    const ci = i % CONSUMERS;
    const provider = providers[(i * 7919) % providers.length].address.toLowerCase();
    const own = promises[ci].provider === provider;
    const fail = i % 5 === 0 ? STAGES[i % STAGES.length] : null;
    const r: Receipt = {
      sessionId: `s${i}`,
      consumer: consumers[ci].address.toLowerCase(),
      provider,
      serviceType: "noop",
      path: "public",
      reached: fail ? (STAGES[STAGES.indexOf(fail) - 1] ?? null) : "throughput",
      failed: fail,
      connectMs: 100 + (i % 900),
      bytesIn: 1 << 20,
      bytesOut: 1 << 16,
      throughputKbps: 20_000 + (i % 80_000),
      advertisedMbps: 100,
      durationMs: 60_000,
      promisedWei: own && !fail ? 10n ** 15n : 0n,
      promise: promises[ci],
      at: Date.now() - (i % 3_600_000),
    };
    signed.push(signReceipt(consumers[ci], r));
  }

  const book = new QualityBook({
    directory,
    promiseCheck: promiseCheckOf(CHAIN, VAULT),
    store: new LocalReceiptStore({ maxAgeMs: 7 * 86_400_000, perSignerPerProvider: 64 }),
    perSignerPerHour: Number.MAX_SAFE_INTEGER,
  });
  await book.start();
  const heapSigned = heapUsed();
  const cpu0 = process.cpuUsage();
  const t0 = nowMs();
  for (const s of signed) await book.ingest(s);
  await book.idle();
  const ingestMs = nowMs() - t0;
  const cpu = process.cpuUsage(cpu0);
  const perSecond = Math.round((RECEIPTS * 1000) / ingestMs);
  console.log(`ingest: ${perSecond} receipts/s (${book.size} held)`);
  const bytesPerReceipt = Math.round((heapUsed() - heapSigned) / Math.max(1, book.size));

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
  const queries: [string, string][] = [
    ["sort=quality, limit 100 (first: scores computed)", "/v1/proposals?sort=quality&limit=100"],
    ["sort=quality, limit 100", "/v1/proposals?sort=quality&limit=100"],
    ["country + sort=quality", "/v1/proposals?country=DE&sort=quality&limit=100"],
    ["min_quality=55", "/v1/proposals?min_quality=55&limit=100"],
    ["no sort (key order), limit 100", "/v1/proposals?limit=100"],
  ];
  const rows: string[][] = [["measure", "p50 ms", "p99 ms", "n", "note"]];
  for (const [name, url] of queries) {
    const n = name.startsWith("sort=quality, limit 100 (first") ? 1 : 200;
    const samples: number[] = [];
    let results = 0;
    for (let i = 0; i < n; i++) {
      const s = nowMs();
      const r = await app.inject({ method: "GET", url });
      samples.push(nowMs() - s);
      results = (JSON.parse(r.body) as { proposals: unknown[] }).proposals.length;
    }
    const st = summarize(samples);
    rows.push([name, String(st.p50), String(st.p99), String(n), `${results} results`]);
  }
  await app.close();
  rows.push([
    `receipt ingest (receipts/s, ${RECEIPTS} receipts about ${PROPOSALS} proposals, one thread; signature checks included)`,
    String(perSecond),
    "",
    String(RECEIPTS),
    `CPU ${round(((cpu.user + cpu.system) / RECEIPTS) * 1) / 1} µs/receipt`,
  ]);
  rows.push([
    "heap per proposal in the index (bytes, after a full GC)",
    String(bytesPerProposal),
    "",
    String(PROPOSALS),
    "the replica's in-memory view, no receipts",
  ]);
  rows.push([
    "heap per receipt held (bytes, after a full GC)",
    String(bytesPerReceipt),
    "",
    String(RECEIPTS),
    "the book keeps every receipt in memory for scoring",
  ]);
  rows.push([
    "machine load average (1 min) at start and end",
    String(round(load0, 2)),
    String(round(os.loadavg()[0], 2)),
    "",
    "other processes compete for the same cores",
  ]);
  writeResults("quality", { proposals: PROPOSALS, receipts: RECEIPTS, ingestPerSecond: perSecond, bytesPerProposal, bytesPerReceipt, rows }, rows);
  await book.stop();
}
