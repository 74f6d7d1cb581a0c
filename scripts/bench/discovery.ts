import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { connect } from "nats";
import { Broker } from "../../node/broker/broker";
import { DISCOVERY_SUBJECTS } from "../../node/discovery/announcements";
import { DiscoveryService } from "../../node/discovery/server";
import { IdentityKey } from "../../node/identity/key";
import { signProposal, type SignedProposal } from "../../node/proposal/proposal";
import { makeProposal } from "../../test/support/proposals";
import { startNatsServer } from "../lib/nats-server";
import { stopChild } from "../lib/local-chain";
import { nowMs, round, summarize, writeResults } from "./stats";

const COUNTRIES = ["DE", "US", "FR", "GB", "NL", "JP", "BR", "IN", "CA", "SE"];
const IP_TYPES = ["residential", "hosting", "mobile", "business"] as const;

/** Verifies and indexes `payloads` one after another on this thread: discovery's cost per core. */
async function ingestInProcess(keys: IdentityKey[], payloads: Buffer[]) {
  const publicKeys = new Map(keys.map((k) => [k.address.toLowerCase(), k.publicKey]));
  // The broker is never started: ingest() does not use it.
  const service = new DiscoveryService({ broker: new Broker({ servers: ["nats://127.0.0.1:4222"] }), directory: { publicKeyOf: async (id) => publicKeys.get(id.toLowerCase()) ?? null, knownPublicKeyOf: (id) => publicKeys.get(id.toLowerCase()) }, port: 0, ttlMs: 3_600_000 });
  const t0 = nowMs();
  for (const p of payloads) await service.ingest(JSON.parse(p.toString("utf8")), "nats");
  const seconds = (nowMs() - t0) / 1000;
  if (service.index.size !== payloads.length) throw new Error(`indexed ${service.index.size} of ${payloads.length}`);
  return { proposals: payloads.length, seconds: round(seconds), perSecond: Math.round(payloads.length / seconds) };
}

/**
 * Ingest rate of signed announcements over NATS and query latency of filtered queries over HTTP
 * (from this process; discovery runs in its own), at 10,000 and 100,000 live proposals.
 * Baseline for the queries: GET /health on the same server in the same run.
 */
export async function benchDiscovery(): Promise<void> {
  const TOTAL = Number(process.env.BENCH_PROPOSALS ?? 100_000);
  const SERVICES_PER_PROVIDER = 10;
  const QUERIES = Number(process.env.BENCH_QUERIES ?? 500);
  const providers = Math.ceil(TOTAL / SERVICES_PER_PROVIDER);

  console.log(`signing ${TOTAL} proposals of ${providers} providers…`);
  const keys: IdentityKey[] = Array.from({ length: providers }, () => IdentityKey.generate());
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-"));
  const keysFile = path.join(tmp, "keys.json");
  fs.writeFileSync(keysFile, JSON.stringify(Object.fromEntries(keys.map((k) => [k.address, Buffer.from(k.publicKey).toString("hex")]))));
  const payloads: Buffer[] = [];
  for (let i = 0; i < TOTAL; i++) {
    const key = keys[i % providers];
    const s = Math.floor(i / providers);
    const signed: SignedProposal = signProposal(
      key,
      makeProposal(key, {
        serviceType: `svc-${s}`,
        location: { country: COUNTRIES[i % COUNTRIES.length], ipType: IP_TYPES[i % IP_TYPES.length] },
        price: { perHour: String((i % 100) * 1e15), perGiB: String((i % 37) * 1e15) },
        bandwidthMbps: (i % 20) * 50,
      }),
    );
    payloads.push(Buffer.from(JSON.stringify(signed)));
  }

  // Discovery's own work per core: the same service, in this process, without NATS or HTTP.
  const perCore = await ingestInProcess(keys, payloads.slice(0, Math.min(20_000, TOTAL)));

  const nats = await startNatsServer();
  const server = spawn(process.execPath, [require.resolve("ts-node/dist/bin.js"), "--transpile-only", path.join(__dirname, "discovery-server.ts"), nats.url, keysFile], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const url: string = await new Promise((resolve, reject) => {
      let buf = "";
      server.stdout!.on("data", (d) => {
        buf += d;
        const line = buf.split("\n")[0];
        if (buf.includes("\n")) resolve(JSON.parse(line).url);
      });
      server.once("exit", (code) => reject(new Error(`discovery server exited ${code}`)));
    });
    const nc = await connect({ servers: nats.url });
    const health = async () => (await (await fetch(`${url}/health`)).json()) as { proposals: number };

    // Publishes with a window of unacknowledged proposals (acknowledged = counted in the index),
    // so the broker never has to drop messages for a slow subscriber.
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
        if (stalled > 500) throw new Error(`ingest stalled at ${now} of ${to} proposals`);
        indexed = now;
      }
      const seconds = (nowMs() - t0) / 1000;
      return { proposals: to - from, seconds: round(seconds), perSecond: Math.round((to - from) / seconds) };
    }

    const someProvider = keys[7].address;
    const queries: [string, string][] = [
      ["baseline GET /health", "/health"],
      ["no filter, limit 100", "/v1/proposals?limit=100"],
      ["service_type + country", "/v1/proposals?service_type=svc-3&country=DE"],
      ["country + ip_type + max price/h + min bandwidth", "/v1/proposals?country=US&ip_type=residential&max_price_per_hour=50000000000000000&min_bandwidth=200"],
      ["provider_id", `/v1/proposals?provider_id=${someProvider}`],
      ["matches nothing (full scan)", "/v1/proposals?country=ZZ"],
    ];
    async function measureQueries() {
      const out: Record<string, ReturnType<typeof summarize> & { results: number }> = {};
      for (const [name, q] of queries) {
        const samples: number[] = [];
        let results = 0;
        for (let i = 0; i < QUERIES + 20; i++) {
          const t = nowMs();
          const r = await fetch(url + q);
          const body = (await r.json()) as { proposals?: unknown[] };
          if (i >= 20) samples.push(nowMs() - t);
          results = body.proposals?.length ?? 0;
        }
        out[name] = { ...summarize(samples), results };
      }
      return out;
    }

    const small = Math.min(10_000, TOTAL);
    const ingestSmall = await ingest(0, small);
    const at10k = await measureQueries();
    const ingestRest = await ingest(small, TOTAL);
    const at100k = await measureQueries();
    await nc.drain();

    const rows: string[][] = [["measure", "at 10k p50 ms", "at 10k p99 ms", `at ${TOTAL / 1000}k p50 ms`, `at ${TOTAL / 1000}k p99 ms`, `p99 / baseline at ${TOTAL / 1000}k`]];
    const base = at100k["baseline GET /health"].p99;
    for (const [name] of queries) {
      const a = at10k[name];
      const b = at100k[name];
      rows.push([`${name} (${b.results} results)`, String(a.p50), String(a.p99), String(b.p50), String(b.p99), `${round(b.p99 / base, 2)}×`]);
    }
    rows.push(["ingest over NATS (proposals/s, one process)", String(ingestSmall.perSecond), "", String(ingestRest.perSecond), "", ""]);
    rows.push([`ingest in process, one core, no NATS (proposals/s, first ${perCore.proposals})`, String(perCore.perSecond), "", "", "", ""]);
    writeResults("discovery", { ingest: { first10k: ingestSmall, rest: ingestRest, inProcessOneCore: perCore }, queriesAt10k: at10k, queriesAtTotal: at100k, total: TOTAL, targets: "ingest ≥ 2000/s per core; p99 ≤ 10 ms at 100k" }, rows);
  } finally {
    await stopChild(server);
    await nats.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
