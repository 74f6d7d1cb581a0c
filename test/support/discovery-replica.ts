import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { Broker } from "../../node/broker/broker";
import type { BrokerCredentials } from "../../node/config/broker-credentials";
import { JetStreamProposalStore } from "../../node/discovery/jetstream-store";
import { DiscoveryService } from "../../node/discovery/server";
import { directoryFromKeysFile } from "../../scripts/lib/proposal-fleet";

/** What a replica process is told, as its one argument (JSON). */
export interface ReplicaArgs {
  servers: string[];
  /** The replica's broker credential (the servers' `REPLICA_CREDENTIALS`: its passwords are the parent process's). */
  credentials?: BrokerCredentials;
  bucket: string;
  replicas: number;
  keysFile: string;
}

/** A discovery replica in its own process (so a test can SIGKILL it), ready when this resolves. */
export async function startReplicaProcess(args: ReplicaArgs): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [require.resolve("ts-node/dist/bin.js"), "--transpile-only", __filename, JSON.stringify(args)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = "";
    child.stdout!.on("data", (d) => {
      buf += d;
      if (buf.includes("\n")) resolve(JSON.parse(buf.split("\n")[0]).url);
    });
    child.once("exit", (code) => reject(new Error(`discovery replica exited with ${code}`)));
  });
  return { url, child };
}

async function main(args: ReplicaArgs) {
  const broker = new Broker({ servers: args.servers, name: "myst-discovery-test", credentials: args.credentials });
  await broker.start();
  const store = new JetStreamProposalStore({ servers: args.servers, credentials: args.credentials, bucket: args.bucket, replicas: args.replicas });
  const service = new DiscoveryService({ broker, directory: directoryFromKeysFile(args.keysFile), port: 0, store });
  await service.start();
  process.stdout.write(JSON.stringify({ url: service.url }) + "\n");
  process.once("SIGTERM", async () => {
    await service.stop();
    await broker.stop();
    process.exit(0);
  });
}

if (require.main === module || process.argv[1] === path.resolve(__filename)) {
  main(JSON.parse(process.argv[2]) as ReplicaArgs).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
