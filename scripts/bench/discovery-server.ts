import fs from "node:fs";
import { Broker } from "../../node/broker/broker";
import { DiscoveryService } from "../../node/discovery/server";

/**
 * The discovery side of `npm run bench -- discovery`, in its own process: a DiscoveryService whose
 * directory is the bench's identities loaded from a file (a registry cache already warm), so the
 * benchmark measures discovery's own work: parse, verify the signature, index, query.
 */
async function main() {
  const [natsUrl, keysFile] = process.argv.slice(2);
  const keys = new Map<string, Uint8Array>(
    Object.entries(JSON.parse(fs.readFileSync(keysFile, "utf8")) as Record<string, string>).map(([a, k]) => [a.toLowerCase(), Buffer.from(k, "hex")]),
  );
  const broker = new Broker({ servers: [natsUrl] });
  await broker.start();
  const service = new DiscoveryService({
    broker,
    directory: { publicKeyOf: async (id) => keys.get(id.toLowerCase()) ?? null },
    port: 0,
    ttlMs: 3_600_000,
  });
  await service.start();
  process.stdout.write(JSON.stringify({ url: service.url }) + "\n");
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
