import os from "node:os";
import { Broker } from "../../node/broker/broker";
import { loadConfig } from "../../node/config/config";
import { JetStreamProposalStore } from "../../node/discovery/jetstream-store";
import { DiscoveryService } from "../../node/discovery/server";
import { directoryFromKeysFile } from "../lib/proposal-fleet";

/**
 * The discovery side of `npm run bench -- discovery`, in its own process: a replica on the bench's
 * JetStream bucket whose directory is the bench's identities loaded from a file (a registry cache
 * already warm), so the benchmark measures discovery's own work. Prints its URL and how long start()
 * took (connect, load the bucket, ready) once it is ready.
 */
async function main() {
  const [natsUrl, keysFile, bucket] = process.argv.slice(2);
  // The replica's credential, as `myst discovery` takes it (MYST_BROKER_USER, MYST_BROKER_PASSWORD_FILE).
  const credentials = loadConfig({ dataDir: os.tmpdir() }).brokerCredentials;
  const broker = new Broker({ servers: [natsUrl], credentials });
  await broker.start();
  const store = new JetStreamProposalStore({ servers: [natsUrl], credentials, bucket, ttlMs: 3_600_000 });
  const service = new DiscoveryService({ broker, directory: directoryFromKeysFile(keysFile), port: 0, store, maxServiceTypesPerProvider: 16 });
  const t0 = performance.now();
  await service.start();
  const readyMs = performance.now() - t0;
  process.stdout.write(JSON.stringify({ url: service.url, readyMs, proposals: service.index.size }) + "\n");
  process.on("SIGTERM", async () => {
    await service.stop();
    await broker.stop();
    process.exit(0);
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
