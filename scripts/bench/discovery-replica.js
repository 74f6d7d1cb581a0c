// The replica of `npm run bench -- discovery` as it ships: the compiled modules in dist/ (the bench
// builds them first), in plain Node, no ts-node. Its directory is the bench's identities from a file
// (a registry cache already warm), so the benchmark measures discovery's own work; everything else
// is what `myst discovery` builds (node/api/launch.ts). Prints its URL, how long start() took
// (connect, load and verify the bucket, ready) and how many proposals it holds, once it is ready.
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const dist = path.join(__dirname, "..", "..", "dist", "node");
const { Broker } = require(path.join(dist, "broker", "broker"));
const { loadConfig } = require(path.join(dist, "config", "config"));
const { JetStreamProposalStore } = require(path.join(dist, "discovery", "jetstream-store"));
const { loadReplicaKey } = require(path.join(dist, "discovery", "record-mark"));
const { DiscoveryService } = require(path.join(dist, "discovery", "server"));

async function main() {
  const [natsUrl, keysFile, bucket, replicaKeyFile] = process.argv.slice(2);
  const keys = new Map(Object.entries(JSON.parse(fs.readFileSync(keysFile, "utf8"))).map(([a, k]) => [a.toLowerCase(), Buffer.from(k, "hex")]));
  const directory = { publicKeyOf: async (id) => keys.get(id.toLowerCase()) ?? null, knownPublicKeyOf: (id) => keys.get(id.toLowerCase()) };
  // The replica's credential, as `myst discovery` takes it (MYST_BROKER_USER, MYST_BROKER_PASSWORD_FILE).
  const credentials = loadConfig({ dataDir: os.tmpdir() }).brokerCredentials;
  const broker = new Broker({ servers: [natsUrl], credentials });
  await broker.start();
  const store = new JetStreamProposalStore({ servers: [natsUrl], credentials, bucket, ttlMs: 3_600_000 });
  const replicaKey = replicaKeyFile ? loadReplicaKey(replicaKeyFile) : undefined;
  const service = new DiscoveryService({ broker, directory, port: 0, store, replicaKey, maxServiceTypesPerProvider: 16 });
  const profile = await profiler(process.env.MYST_BENCH_START_PROFILE);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await service.start();
  const readyMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await profile.stop();
  process.stdout.write(`${JSON.stringify({ url: service.url, readyMs, cpuMs: (cpu.user + cpu.system) / 1000, proposals: service.index.size })}\n`);
  process.on("SIGTERM", async () => {
    await service.stop();
    await broker.stop();
    process.exit(0);
  });
}

/**
 * `file`: a CPU profile of start() alone is written there (.cpuprofile, for Chrome's DevTools or
 * `node --cpu-prof`'s readers); the profiler runs only while start() does.
 */
async function profiler(file) {
  if (!file) return { stop: async () => undefined };
  const inspector = require("node:inspector");
  const session = new inspector.Session();
  session.connect();
  const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, r) => (err ? reject(err) : resolve(r))));
  await post("Profiler.enable");
  await post("Profiler.setSamplingInterval", { interval: 500 });
  await post("Profiler.start");
  return {
    stop: async () => {
      const { profile } = await post("Profiler.stop");
      fs.writeFileSync(file, JSON.stringify(profile));
      session.disconnect();
    },
  };
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
