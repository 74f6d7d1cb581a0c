import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { AckPolicy, connect, DeliverPolicy, nkeys, StringCodec, type NatsConnection } from "nats";
import { loadConfig } from "../../../node/config/config";
import { tempDir } from "../../../scripts/lib/tmp";
import { authOptions, Broker } from "../../../node/broker/broker";
import { DISCOVERY_SUBJECTS } from "../../../node/discovery/announcements";
import { JetStreamProposalStore } from "../../../node/discovery/jetstream-store";
import { DiscoveryService } from "../../../node/discovery/server";
import { parseSignedProposal, type SignedProposal } from "../../../node/proposal/proposal";
import { ProviderFleet } from "../../../scripts/lib/proposal-fleet";
import { REPLICA_CREDENTIALS, startNatsServer, type NatsServer } from "../../../scripts/lib/nats-server";

const sc = StringCodec();

/** The error a promise rejected with (or "fulfilled", so a refusal that did not happen fails the test). */
async function outcome(p: Promise<unknown>): Promise<{ code?: string; message: string } | "fulfilled"> {
  try {
    await p;
    return "fulfilled";
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  }
}

/**
 * A participant with a plain `nats` client, as on the broker of issue 26: everything it may not
 * do to the discovery index is refused by the broker itself, and a replica does not lend it its
 * own rights by answering on a reply subject the participant chose.
 */
describe("the broker's access control around the discovery index", function () {
  this.timeout(120_000);
  const bucket = "acl-proposals";
  const fleet = new ProviderFleet(3);
  let nats: NatsServer;
  let replicaBroker: Broker;
  let replica: DiscoveryService;
  let node: NatsConnection;
  let asReplica: NatsConnection;
  let signed: SignedProposal[];
  const keyOf = (s: SignedProposal) => {
    const p = parseSignedProposal(s).proposal;
    return `${p.provider.toLowerCase()}.${p.serviceType}`;
  };

  before(async () => {
    nats = await startNatsServer();
    replicaBroker = new Broker({ servers: [nats.url], credentials: REPLICA_CREDENTIALS });
    await replicaBroker.start();
    const store = new JetStreamProposalStore({ servers: [nats.url], credentials: REPLICA_CREDENTIALS, bucket, ttlMs: 600_000 });
    replica = new DiscoveryService({ broker: replicaBroker, directory: fleet.directory, port: 0, store });
    await replica.start();
    // The providers announce as nodes do: without credentials.
    const announcer = new Broker({ servers: [nats.url] });
    await announcer.start();
    signed = fleet.sign(3);
    for (const s of signed) {
      const reply = JSON.parse(sc.decode(await announcer.request(DISCOVERY_SUBJECTS.register, sc.encode(JSON.stringify(s)), 10_000)));
      expect(reply.ok, JSON.stringify(reply)).to.equal(true);
    }
    await announcer.stop();
    node = await connect({ servers: nats.url });
    asReplica = await connect({ servers: nats.url, ...authOptions(REPLICA_CREDENTIALS) });
  });
  after(async () => {
    await node?.close();
    await asReplica?.close();
    await replica?.stop();
    await replicaBroker?.stop();
    await nats?.stop();
  });

  /** What the bucket holds (key and value), read with the replica's credential (a node may not even look). */
  async function stored(): Promise<Record<string, string>> {
    const kv = await asReplica.jetstream().views.kv(bucket);
    const out: Record<string, string> = {};
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    for (const k of keys) out[k] = sc.decode((await kv.get(k))?.value ?? new Uint8Array());
    return out;
  }
  const announced = () => Object.fromEntries(signed.map((s) => [keyOf(s), JSON.stringify(s)]));

  describe("a node (no credentials)", function () {
    const refused = (o: Awaited<ReturnType<typeof outcome>>) => {
      expect(o, "the broker let a node do it").to.not.equal("fulfilled");
      expect(o).to.include({ code: "PERMISSIONS_VIOLATION" });
    };

    it("may not put, delete or purge a key in the discovery bucket", async function () {
      const kv = node.jetstream().views.kv(bucket, { bindOnly: true });
      refused(await outcome(kv.then((b) => b.put(keyOf(signed[0]), sc.encode("{}")))));
      refused(await outcome(node.request(`$KV.${bucket}.${keyOf(signed[0])}`, sc.encode("{}"), { timeout: 2000 })));
      refused(await outcome(node.request(`$JS.API.STREAM.MSG.DELETE.KV_${bucket}`, sc.encode(JSON.stringify({ seq: 1 })), { timeout: 2000 })));
      refused(
        await outcome(
          node.request(`$JS.API.STREAM.PURGE.KV_${bucket}`, sc.encode(JSON.stringify({ filter: `$KV.${bucket}.${keyOf(signed[1])}` })), { timeout: 2000 }),
        ),
      );
      expect(Object.keys(await stored()).sort()).to.deep.equal(Object.keys(announced()).sort());
    });

    it("may not purge the bucket's stream, delete it, or create a consumer on it", async function () {
      refused(await outcome(node.jetstreamManager({ timeout: 2000 })));
      refused(await outcome(node.request(`$JS.API.STREAM.PURGE.KV_${bucket}`, sc.encode("{}"), { timeout: 2000 })));
      refused(await outcome(node.request(`$JS.API.STREAM.DELETE.KV_${bucket}`, sc.encode("{}"), { timeout: 2000 })));
      const consumer = { stream_name: `KV_${bucket}`, config: { durable_name: "thief", ack_policy: "none", deliver_policy: "all" } };
      refused(await outcome(node.request(`$JS.API.CONSUMER.CREATE.KV_${bucket}`, sc.encode(JSON.stringify(consumer)), { timeout: 2000 })));
      refused(await outcome(node.request(`$JS.API.CONSUMER.DURABLE.CREATE.KV_${bucket}.thief`, sc.encode(JSON.stringify(consumer)), { timeout: 2000 })));
      expect(Object.keys(await stored()).sort()).to.deep.equal(Object.keys(announced()).sort());
    });

    it("may not listen on the announcement subjects (to steal or answer them)", async function () {
      const sub = node.subscribe(DISCOVERY_SUBJECTS.register, { queue: "myst-discovery" });
      const ended = outcome(
        (async () => {
          for await (const _ of sub) return;
        })(),
      );
      // The server answers a subscription it refuses before the PONG of the next flush.
      await node.flush();
      expect(sub.isClosed(), "the broker let a node subscribe").to.equal(true);
      refused(await ended);
    });
  });

  describe("the replica's credential", function () {
    it("may write, read and create a consumer on the bucket, and purge a scratch stream", async function () {
      const kv = await asReplica.jetstream().views.kv(bucket);
      const revision = await kv.put("scratch.key", sc.encode("{}"));
      expect(revision).to.be.greaterThan(0);
      await kv.purge("scratch.key");
      const jsm = await asReplica.jetstreamManager({ timeout: 5000 });
      const consumer = await jsm.consumers.add(`KV_${bucket}`, { ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, inactive_threshold: 5e9 });
      expect(consumer.stream_name).to.equal(`KV_${bucket}`);
      const scratch = await asReplica.jetstream().views.kv("acl-scratch");
      await scratch.put("a", sc.encode("1"));
      const purged = await jsm.streams.purge("KV_acl-scratch");
      expect(purged.purged).to.equal(1);
      expect(await jsm.streams.delete("KV_acl-scratch")).to.equal(true);
    });
  });

  describe("credentials", function () {
    it("are not taken from a URL: nats.js ignores user:pass@, so that client is a node", async function () {
      const { user, pass } = REPLICA_CREDENTIALS as { user: string; pass: string };
      const url = new URL(nats.url);
      url.username = user;
      url.password = pass;
      const nc = await connect({ servers: url.toString() });
      try {
        const o = await outcome(nc.request(`$JS.API.STREAM.INFO.KV_${bucket}`, sc.encode(""), { timeout: 2000 }));
        expect(o).to.include({ code: "PERMISSIONS_VIOLATION" });
      } finally {
        await nc.close();
      }
    });

    it("a replica without its credential stops at once with STORE_UNAVAILABLE, saying the broker refused JetStream", async function () {
      const store = new JetStreamProposalStore({ servers: [nats.url], bucket, startTimeoutMs: 60_000 });
      const o = await outcome(store.start());
      expect(o).to.include({ code: "STORE_UNAVAILABLE" });
      expect((o as { message: string }).message).to.match(/the broker refused JetStream to this connection .*only discovery replicas may use it/);
    });

    it("a replica logs in with an nkey seed file given as a setting (the credential operating.md recommends)", async function () {
      const user = nkeys.createUser();
      const server = await startNatsServer({ replicaNkeys: [user.getPublicKey()] });
      const tmp = tempDir();
      try {
        const seedFile = path.join(tmp.dir, "replica.nk");
        fs.writeFileSync(seedFile, `${new TextDecoder().decode(user.getSeed())}\n`, { mode: 0o600 });
        const { brokerCredentials } = loadConfig({ dataDir: tmp.dir }, { MYST_BROKER_NKEY_FILE: seedFile });
        expect(brokerCredentials?.kind).to.equal("nkey");
        const store = new JetStreamProposalStore({ servers: [server.url], credentials: brokerCredentials, bucket: "acl-nkey" });
        await store.start();
        await store.stop();
        const withoutIt = new JetStreamProposalStore({ servers: [server.url], bucket: "acl-nkey" });
        expect(await outcome(withoutIt.start())).to.include({ code: "STORE_UNAVAILABLE" });
      } finally {
        tmp.cleanup();
        await server.stop();
      }
    });

    it("a wrong password is refused by name (BROKER_UNAUTHORIZED), not as an unreachable broker", async function () {
      const broker = new Broker({ servers: [nats.url], credentials: { kind: "password", user: "myst-discovery", pass: "wrong" }, connectTimeoutMs: 2000 });
      const o = await outcome(broker.start());
      expect(o).to.not.equal("fulfilled");
      expect(o).to.include({ code: "BROKER_UNAUTHORIZED" });
      expect((o as { message: string }).message).to.match(/refused this node's credentials/);
    });
  });

  describe("a request whose reply subject names the JetStream API (confused deputy)", function () {
    it("neither unlists a provider nor purges the bucket: the replica does not answer on it", async function () {
      const before = await stored();
      expect(Object.keys(before)).to.have.length(3);
      const junk = sc.encode("junk");
      const unlist = `$KV.${bucket}.${keyOf(signed[0])}`;
      const purge = `$JS.API.STREAM.PURGE.KV_${bucket}`;
      for (const subject of [DISCOVERY_SUBJECTS.register, DISCOVERY_SUBJECTS.ping, DISCOVERY_SUBJECTS.unregister]) {
        node.publish(subject, junk, { reply: unlist });
        node.publish(subject, junk, { reply: purge });
        node.publish(subject, sc.encode(JSON.stringify(signed[1])), { reply: purge });
      }
      // The same announcement once more as a request the replica must answer: a provider's
      // announcements are handled in order, so once it is answered the ones before were handled.
      const reply = JSON.parse(sc.decode((await node.request(DISCOVERY_SUBJECTS.ping, sc.encode(JSON.stringify(signed[1])), { timeout: 10_000 })).data));
      expect(reply.ok, JSON.stringify(reply)).to.equal(true);
      await asReplica.flush();
      const after = await stored();
      expect(Object.keys(after).sort()).to.deep.equal(Object.keys(before).sort());
      expect(after[keyOf(signed[0])]).to.equal(before[keyOf(signed[0])]);
      const listed = (await (await fetch(`${replica.url}/v1/proposals?limit=10`)).json()) as { proposals: unknown[] };
      expect(listed.proposals).to.have.length(3);
    });
  });
});
