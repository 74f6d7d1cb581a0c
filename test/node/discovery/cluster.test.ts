import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import { Broker } from "../../../node/broker/broker";
import { ProposalAnnouncer } from "../../../node/discovery/announcer";
import { DiscoveryClient } from "../../../node/discovery/client";
import { JetStreamProposalStore } from "../../../node/discovery/jetstream-store";
import { DiscoveryService } from "../../../node/discovery/server";
import { SignatureWorkers } from "../../../node/discovery/signature-workers";
import { stopChild } from "../../../scripts/lib/local-chain";
import { REPLICA_CREDENTIALS, startNatsCluster, type NatsServer } from "../../../scripts/lib/nats-server";
import { until } from "../../../scripts/lib/until";
import { ProviderFleet } from "../../../scripts/lib/proposal-fleet";
import { startReplicaProcess } from "../../support/discovery-replica";
import { makeProposal } from "../../../scripts/lib/proposals";
import { tempDir } from "../../../scripts/lib/tmp";

describe("discovery on a 3-server NATS cluster with two replicas", function () {
  this.timeout(240_000);
  const tmp = tempDir("myst-discovery-cluster-");
  const fleet = new ProviderFleet(80);
  const workers = new SignatureWorkers(1);
  let servers: NatsServer[] = [];
  let replicaChild: ChildProcess | undefined;
  const running: { stop(): Promise<void> }[] = [];

  before(async () => {
    servers = await startNatsCluster(3);
    await workers.start();
  });
  after(async () => {
    for (const r of running.splice(0).reverse()) await r.stop().catch(() => undefined);
    if (replicaChild) await stopChild(replicaChild);
    await workers.stop();
    await Promise.all(servers.map((s) => s.stop()));
    tmp.cleanup();
  });

  async function broker(url: string): Promise<Broker> {
    const b = new Broker({ servers: [url], credentials: REPLICA_CREDENTIALS });
    await b.start();
    running.push(b);
    return b;
  }

  async function inProcessReplica(url: string): Promise<DiscoveryService> {
    // Given one server, the client learns the others from the cluster and reconnects to them.
    const store = new JetStreamProposalStore({ servers: [url], credentials: REPLICA_CREDENTIALS, bucket: "cluster", replicas: 3 });
    const d = new DiscoveryService({ broker: await broker(url), directory: fleet.directory, port: 0, store, signatureWorkers: workers });
    running.push(d);
    await d.start();
    return d;
  }

  // Each proposal lives three pings (15 s): longer than JetStream takes to elect new leaders (~10 s).
  async function announce(keys: typeof fleet.keys, url: string): Promise<ProposalAnnouncer[]> {
    const b = await broker(url);
    return keys.map((key) => {
      const a = new ProposalAnnouncer({
        broker: b,
        key,
        proposal: () => makeProposal(key, { serviceType: "openvpn" }),
        pingMs: 5000,
        retryMinMs: 200,
        retryMaxMs: 1000,
      });
      a.start();
      running.push({ stop: () => a.stop() });
      return a;
    });
  }

  it("loses nothing and fails no query when one NATS server and one replica are killed while providers announce and consumers query", async function () {
    const [s1, s2] = servers;
    const keysFile = path.join(tmp.dir, "keys.json");
    fleet.writeKeys(keysFile);
    const doomed = await startReplicaProcess({ servers: [s1.url], credentials: REPLICA_CREDENTIALS, bucket: "cluster", replicas: 3, keysFile });
    replicaChild = doomed.child;
    const survivor = await inProcessReplica(s1.url);

    await announce(fleet.keys.slice(0, 40), s1.url);
    const urls = [doomed.url, survivor.url];
    const timeoutMs = 5000;
    const client = new DiscoveryClient(urls, fleet.directory.publicKeyOf, timeoutMs);
    let queries = 0;
    const failures: { at: number; error: string }[] = [];
    let querying = true;
    // Three consumers, each searching (and verifying every proposal it gets, in this process,
    // beside the surviving replica) about every 50 ms.
    const consumers = Array.from({ length: 3 }, async () => {
      while (querying) {
        try {
          await client.search({ serviceType: "openvpn" }, { limit: 100 });
          queries++;
        } catch (err) {
          failures.push({ at: Date.now(), error: `${(err as { code?: string }).code}: ${(err as Error).message}` });
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    });
    let killedAt = Number.POSITIVE_INFINITY;
    try {
      await until(async () => (await client.search({ serviceType: "openvpn" }, { limit: 100 })).proposals.length === 40, "the first 40 proposals");

      killedAt = Date.now();
      process.kill(s1.pid, "SIGKILL");
      process.kill(doomed.child.pid!, "SIGKILL");
      const queriesAtKill = queries;
      await announce(fleet.keys.slice(40), s2.url);

      // Every provider, those from before with a ping signed after the kill, is served.
      await until(
        async () => {
          const found = await client.search({ serviceType: "openvpn" }, { limit: 100 });
          const fresh = found.proposals.filter((p) => p.proposal.createdAt > killedAt);
          return found.proposals.length === 80 && fresh.length === 80;
        },
        "all 80 providers, re-announced after the kill",
        60_000,
      );
      expect(queries).to.be.greaterThan(queriesAtKill);

      // The bucket kept everything (two of three servers hold it): a new replica loads it all.
      const late = await inProcessReplica(s2.url);
      const ready = (await (await fetch(`${late.url}/ready`)).json()) as { proposals: number };
      expect(ready.proposals).to.equal(80);
    } finally {
      querying = false;
      await Promise.all(consumers);
    }
    // No query failed before the kill, and none for longer than the client's failover after it:
    // a search that started as the replica died may have waited out one timeout per replica.
    const failover = timeoutMs * urls.length;
    expect(failures.filter((f) => f.at < killedAt || f.at > killedAt + failover)).to.deep.equal([]);
    expect(fs.existsSync(keysFile)).to.equal(true);
  });
});
