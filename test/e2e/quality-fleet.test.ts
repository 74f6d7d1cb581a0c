import { expect } from "chai";
import path from "node:path";
import { parseEther } from "ethers";
import { connect as natsConnect } from "nats";
import { Broker } from "../../node/broker/broker";
import { ConsumerVaultClient } from "../../node/chain/vault";
import { ConsumerNode } from "../../node/daemon/consumer-node";
import { ProviderNode } from "../../node/daemon/provider-node";
import { JetStreamProposalStore } from "../../node/discovery/jetstream-store";
import { JetStreamReceiptStore } from "../../node/discovery/receipt-store";
import { DiscoveryService } from "../../node/discovery/server";
import type { IdentityKey } from "../../node/identity/key";
import { recomputeQuality } from "../../node/ops/status/quality";
import { Prober } from "../../node/ops/prober/prober";
import { encodeReceipt, type Receipt, STAGE_WORDS, type Stage, signReceipt } from "../../node/quality/receipt";
import { promiseCheckOf } from "../../node/quality/score";
import { type NoopBehaviour, NoopConsumerService, NoopProviderService } from "../../node/services/noop/noop";
import { openDatabase } from "../../node/store/database";
import { IssuedPromiseStore } from "../../node/store/issued-promise-store";
import { OwnReceipts } from "../../node/store/own-receipts";
import { REPLICA_CREDENTIALS } from "../../scripts/lib/nats-server";
import { providerPayments, TestNetwork } from "../../scripts/lib/test-network";
import { tempDir } from "../../scripts/lib/tmp";
import { until } from "../../scripts/lib/until";
import { toAddress } from "../../node/values/address";

const E = parseEther;
const MBPS = 20;

/**
 * A fleet of 12 noop providers, 4 broken in different ways, one discovery replica on JetStream (its
 * index and its receipts), fresh consumers connecting by filter on a real chain (vault deposits, real
 * promises). The noop data path (services/noop) gives each provider a real byte stream on loopback, so
 * the consumer's stage checks (tunnel handshake, first byte, throughput) measure something real.
 */
describe("quality: receipts, scores and fallback over a fleet of providers (real chain, NATS + JetStream, noop data paths)", function () {
  this.timeout(120_000);
  const net = new TestNetwork();
  const tmp = tempDir();
  let discovery: DiscoveryService;
  let discoveryBroker: Broker;
  let vault: ConsumerVaultClient;
  const fleet: { key: IdentityKey; node: ProviderNode; service: NoopProviderService; behaviour: NoopBehaviour | "gone" }[] = [];
  const consumers: ConsumerNode[] = [];
  // biome-ignore lint/suspicious/noExplicitAny: the tests read the JSON answers field by field
  type Json = any;
  const get = async (p: string): Promise<Json> => (await fetch(discovery.url + p)).json();
  const post = async (p: string, body: unknown): Promise<{ status: number; body: Json }> => {
    const r = await fetch(discovery.url + p, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  };

  /** Broken providers are the cheapest: with no evidence yet, a consumer tries them first. */
  const BROKEN: (NoopBehaviour | "gone")[] = ["gone", "silent-tunnel", "bad-dns", "cut-after-accept", "slow"];
  /** The stage each broken kind fails at. */
  const STAGE_OF: Record<string, string> = {
    gone: "dialog",
    "silent-tunnel": "tunnel",
    "bad-dns": "dns",
    "cut-after-accept": "first-byte",
    slow: "throughput",
  };
  const WORKING = 8;

  async function provider(i: number, behaviour: NoopBehaviour | "gone") {
    const key = await net.registeredIdentity();
    const service = new NoopProviderService({ data: { mbps: MBPS, behaviour: behaviour === "gone" ? "ok" : behaviour } });
    const db = openDatabase(path.join(tmp.dir, `p${i}.db`));
    const node = new ProviderNode({
      key,
      brokerUrls: [net.nats.url],
      registry: net.registry,
      services: [
        {
          service,
          offer: { country: "DE", ipType: "residential", pricePerHour: E(String(30 + i)), pricePerGiB: 0n, bandwidthMbps: MBPS },
        },
      ],
      keepaliveMs: 1000,
      payments: { ...providerPayments(net.conn, db), invoiceEveryMs: 200, settleOnSessionEnd: false },
    });
    await node.start();
    fleet.push({ key, node, service, behaviour });
  }

  async function freshConsumer(): Promise<{ node: ConsumerNode; key: IdentityKey }> {
    const key = await net.registeredIdentity();
    await net.chain.fund([key.address], { eth: E("1"), myst: E("10") });
    await vault.deposit(key, key.address, E("5"), E("1"));
    const db = openDatabase(path.join(tmp.dir, `c-${key.address}.db`));
    const node = new ConsumerNode({
      key,
      brokerUrls: [net.nats.url],
      discoveryUrls: [discovery.url],
      registry: net.registry,
      conn: net.conn,
      promises: new IssuedPromiseStore(db),
      receipts: new OwnReceipts(db),
    });
    await node.start();
    consumers.push(node);
    return { node, key };
  }

  /** Connects by filter, waits for a promise, disconnects; resolves once discovery holds its receipts. */
  async function session(c: ConsumerNode, maxCandidates?: number) {
    const before = discovery.quality.size;
    const connection = await c.connect({ filter: { serviceType: "noop" }, service: new NoopConsumerService(), maxCandidates });
    await until(() => (connection.payments?.promised ?? 0n) > 0n, "a promise", 10_000);
    await c.current!.session.destroy("done");
    await until(() => discovery.quality.size >= before + 1 + connection.fellOver.length, "the receipts in discovery", 10_000);
    return connection;
  }

  const byBehaviour = (b: string) => fleet.find((f) => f.behaviour === b)!;
  const working = () => fleet.filter((f) => f.behaviour === "ok").map((f) => f.key.address);

  before(async function () {
    await net.start();
    vault = new ConsumerVaultClient(net.conn);
    discoveryBroker = new Broker({ servers: [net.nats.url], credentials: REPLICA_CREDENTIALS });
    await discoveryBroker.start();
    discovery = new DiscoveryService({
      broker: discoveryBroker,
      directory: net.registry,
      port: 0,
      store: new JetStreamProposalStore({ servers: [net.nats.url], credentials: REPLICA_CREDENTIALS, bucket: "quality-fleet", ttlMs: 300_000 }),
      quality: {
        promiseCheck: promiseCheckOf(net.conn.chainId, net.conn.deployment.contracts.ConsumerVault),
        store: new JetStreamReceiptStore({ servers: [net.nats.url], credentials: REPLICA_CREDENTIALS, stream: "quality-fleet-receipts" }),
        // One period for the whole file (a 6 h boundary in the middle of a run would split the probers).
        probeParams: { periodMs: 7 * 86_400_000, minProbers: 3 },
      },
    });
    await discovery.start();
    for (const [i, b] of BROKEN.entries()) await provider(i, b);
    for (let i = 0; i < WORKING; i++) await provider(BROKEN.length + i, "ok");
    await until(async () => (await get("/v1/proposals?service_type=noop")).proposals.length === fleet.length, "the fleet in discovery", 20_000);
    // Gone, but still announced: its broker connection dropped, its proposal lives until the TTL.
    await byBehaviour("gone").node.broker.stop();
  });

  after(async function () {
    for (const c of consumers) await c.stop().catch(() => undefined);
    for (const f of fleet) {
      await f.node.stop().catch(() => undefined);
      await f.service.stop();
    }
    await discovery?.stop();
    await discoveryBroker?.stop();
    await net.stop();
    tmp.cleanup();
  });

  it("a first consumer falls over every broken provider to a working one within one connect, and each broken one is named with its failing stage", async function () {
    const { node } = await freshConsumer();
    // Five broken providers are the cheapest: the sixth candidate is the first working one.
    const connection = await session(node, BROKEN.length + 1);
    expect(working()).to.include(connection.session.provider);
    expect(connection.fellOver.map((f) => [f.provider, f.stage])).to.have.deep.members(BROKEN.map((b) => [byBehaviour(b).key.address, STAGE_OF[b]]));
    // What each broken provider is told (discovery's report, in words).
    const words = async (b: string) => (await get(`/v1/quality/${byBehaviour(b).key.address}`)).reports[0].words.join(" | ");
    expect(await words("gone")).to.match(/^1 consumer in 168 h could not reach you over the broker/);
    expect(await words("silent-tunnel")).to.match(/tunnel never came up/);
    expect(await words("bad-dns")).to.match(/names did not resolve through it/);
    expect(await words("cut-after-accept")).to.match(/never received a first byte: check your NAT \/ firewall/);
    expect(await words("slow")).to.match(/far less bandwidth than you advertise/);
  });

  it("fresh consumers after that reach a working provider on the first pick (quality ranks the broken ones last; new ones stay listed)", async function () {
    const firstPicks: string[] = [];
    for (let i = 0; i < 8; i++) {
      const { node } = await freshConsumer();
      const connection = await session(node);
      expect(connection.fellOver, `consumer ${i}`).to.deep.equal([]);
      firstPicks.push(connection.session.provider);
    }
    for (const p of firstPicks) expect(working()).to.include(p);
    // Ranked: rated working providers above unrated ones (50), the broken ones below; none hidden.
    // (The replica re-ranks at most once a second while receipts arrive: wait for the new order.)
    const ranked = (await until(async () => {
      const list = (await get("/v1/proposals?service_type=noop&sort=quality")).proposals as Json[];
      const scores = list.map((p) => p.quality.score ?? 50);
      return scores.every((s, i) => i === 0 || scores[i - 1] >= s) && list;
    }, "the ranked order")) as Json[];
    expect(ranked).to.have.length(fleet.length);
    for (const b of BROKEN) {
      const item = ranked.find((p) => p.proposal.provider === byBehaviour(b).key.address);
      expect(item.quality.score, b).to.be.lessThan(50);
    }
    const filtered = (await get("/v1/quality/" + byBehaviour("slow").key.address)).reports[0];
    expect(filtered.failures[0]).to.deep.include({ stage: "throughput" });
    const minQ = (await get("/v1/proposals?service_type=noop&min_quality=45")).proposals as Json[];
    expect(minQ.map((p) => p.proposal.provider)).to.have.members(working());
  });

  it("the provider recomputes its own score from the raw signed receipts and gets discovery's number", async function () {
    const slow = byBehaviour("slow").key.address;
    const answer = await get(`/v1/quality/${slow}`);
    const mine = await recomputeQuality(answer, toAddress(slow), net.registry, promiseCheckOf(net.conn.chainId, net.conn.deployment.contracts.ConsumerVault));
    expect(mine.rejected).to.equal(0);
    expect(mine.services[0].score).to.equal(answer.reports[0].score);
    expect(mine.services[0].words[0]).to.match(/far less bandwidth/);
  });

  describe("probers (myst prober: consumers on a timer, the median of at least 3 per period)", function () {
    const probers: { node: ConsumerNode; key: IdentityKey; prober: Prober }[] = [];
    let liar: { node: ConsumerNode; key: IdentityKey; prober: Prober };
    const check = () => promiseCheckOf(net.conn.chainId, net.conn.deployment.contracts.ConsumerVault);
    const quality = async (who: string) => recomputeQuality(await get(`/v1/quality/${who}`), toAddress(who), net.registry, check());
    const ROUND = { serviceTypes: ["noop"], sample: 100, holdMs: 5000, budgetMs: 8000 };

    before(async function () {
      for (let i = 0; i < 4; i++) {
        const { node, key } = await freshConsumer();
        probers.push({ node, key, prober: new Prober({ consumer: node, service: () => new NoopConsumerService(), self: key.address }) });
      }
      liar = probers.pop()!;
    });

    it("three honest probers probe every provider as consumers do (paying), and each broken provider's status names its failing stage", async function () {
      // Each prober pays a working provider first, so every later result carries a promise of its own.
      const first = working()[0];
      const warm = await Promise.all([...probers, liar].map((p) => p.prober.probe(first, "noop", ROUND)));
      for (const w of warm) expect(w.failed, w.error).to.equal(null);
      for (const w of warm) expect(w.promisedWei > 0n).to.equal(true);
      const rounds = await Promise.all(probers.map((p) => p.prober.round(ROUND)));
      for (const r of rounds) expect(r.map((o) => o.provider)).to.have.members(fleet.map((f) => f.key.address.toLowerCase()));
      // What each prober saw of each broken provider: its stage.
      for (const b of BROKEN)
        for (const r of rounds) expect(r.find((o) => o.provider === byBehaviour(b).key.address.toLowerCase())?.failed, b).to.equal(STAGE_OF[b]);
      await discovery.quality.idle();
      // The provider's own status (what `myst status`, `myst quality`, GET /v1/quality and the dashboard show).
      for (const b of BROKEN) {
        const q = await quality(byBehaviour(b).key.address);
        expect(q.rejected, b).to.equal(0);
        const noop = q.services.find((x) => x.serviceType === "noop")!;
        expect(noop.probe.score, b).to.equal(0);
        expect(noop.probe.probers, b).to.have.length(3);
        expect(
          noop.probe.failures.map((f) => f.stage),
          b,
        ).to.deep.equal([STAGE_OF[b]]);
        expect(noop.probe.words[0], b).to.match(/^3 of 3 probers in the 168 h from \S+Z /);
        expect(noop.probe.words[0], b).to.include(STAGE_WORDS[STAGE_OF[b] as Stage].failed);
        expect(noop.score, b).to.equal(noop.discoveryScore);
        expect(noop.history.at(-1)!.probes, b).to.be.greaterThan(0);
      }
    });

    it("a lying prober alone changes no score (3 honest + 1 liar), and forged, replayed and oversized probe results are dropped", async function () {
      // A working provider all three honest probers saw working.
      const agreed = [];
      for (const w of working()) {
        const q = (await quality(w)).services.find((x) => x.serviceType === "noop")!;
        if (q.probe.probers.length === 3 && q.probe.probers.every((p) => p.score === 100)) agreed.push({ w, q });
      }
      expect(agreed.length, "working providers every honest prober saw working").to.be.greaterThan(0);
      // The liar (it paid a provider once: its lies carry a valid promise) says each of them never answered.
      const paid = liar.node.promises!.latest(working()[0].toLowerCase())!;
      const results = await Promise.all(
        agreed.map(({ w }, i) =>
          post(
            "/v1/probes",
            signReceipt(
              liar.key,
              {
                ...lie(liar.key, w, `probe-lie-${i}`),
                promise: { provider: working()[0].toLowerCase(), amount: paid.amount, signature: paid.signature },
              },
              "probe",
            ),
          ),
        ),
      );
      for (const r of results) expect(r.status).to.equal(201);
      await discovery.quality.idle();
      for (const { w, q } of agreed) {
        const after = (await quality(w)).services.find((x) => x.serviceType === "noop")!;
        expect(after.probe.probers, w).to.have.length(4);
        expect(after.probe.score, w).to.equal(100);
        expect(after.score, w).to.equal(q.score);
        expect(after.score, w).to.equal(after.discoveryScore);
      }
      // Forged (signed by another), replayed (the same probe session again) and oversized: dropped.
      const target = agreed[0].w;
      const text = encodeReceipt(lie(liar.key, target, "probe-forged"), "probe");
      const forged = { receipt: text, signature: `0x${Buffer.from(probers[0].key.signProtocol(Buffer.from(text))).toString("hex")}` };
      expect((await post("/v1/probes", forged)).body.code).to.equal("RECEIPT_BAD_SIGNATURE");
      const replay = signReceipt(liar.key, { ...lie(liar.key, target, "probe-lie-0"), connectMs: 7 }, "probe");
      expect((await post("/v1/probes", replay)).body.result).to.equal("duplicate");
      expect((await post("/v1/probes", { receipt: "x".repeat(5000), signature: replay.signature })).status).to.be.oneOf([400, 413]);
      // A receipt is no probe result.
      expect((await post("/v1/probes", signReceipt(liar.key, lie(liar.key, target, "probe-as-receipt")))).body.code).to.equal("RECEIPT_MALFORMED");
    });
  });

  describe("hostile", function () {
    const good = () => fleet.find((f) => f.behaviour === "ok")!;
    const scoreOfGood = async () => (await get(`/v1/quality/${good().key.address}`)).reports[0]?.score ?? null;

    it("1,000 receipts with no payment behind them change nothing (most are refused as a flood, the rest weigh nothing)", async function () {
      const before = await scoreOfGood();
      const liar = await net.registeredIdentity();
      const results: number[] = [];
      for (let i = 0; i < 1000; i += 50) {
        const batch = Array.from({ length: 50 }, (_, j) =>
          post("/v1/receipts", signReceipt(liar, lie(liar, good().key.address, `lie-${i + j}`))).then((r) => r.status),
        );
        results.push(...(await Promise.all(batch)));
      }
      expect(results.filter((s) => s === 201).length).to.be.within(1, 240);
      expect(results.filter((s) => s === 429).length).to.be.greaterThan(700);
      await discovery.quality.idle();
      expect(await scoreOfGood()).to.equal(before);
    });

    it("drops forged, replayed and oversized receipts", async function () {
      const consumer = await net.registeredIdentity();
      const other = await net.registeredIdentity();
      const r = lie(consumer, good().key.address, "replay-1");
      const signed = signReceipt(consumer, r);
      expect((await post("/v1/receipts", signed)).status).to.equal(201);
      expect((await post("/v1/receipts", signed)).body.result).to.equal("duplicate");
      // The same session again, changed and signed afresh: still a replay of that session.
      expect((await post("/v1/receipts", signReceipt(consumer, { ...r, connectMs: 1 }))).body.result).to.equal("duplicate");
      const text = encodeReceipt(lie(consumer, good().key.address, "forged-1"));
      const forged = { receipt: text, signature: `0x${Buffer.from(other.signProtocol(Buffer.from(text))).toString("hex")}` };
      expect((await post("/v1/receipts", forged)).body.code).to.equal("RECEIPT_BAD_SIGNATURE");
      const big = { receipt: "x".repeat(5000), signature: signed.signature };
      expect((await post("/v1/receipts", big)).status).to.be.oneOf([400, 413]);
    });

    it("a provider cannot raise its own score nor remove receipts about itself", async function () {
      const slow = byBehaviour("slow");
      const before = (await get(`/v1/quality/${slow.key.address}`)).reports[0];
      // Praise signed by the provider about itself: weighs nothing.
      const praise = { ...lie(slow.key, slow.key.address, "self-1"), reached: "throughput" as const, failed: null };
      expect((await post("/v1/receipts", signReceipt(slow.key, praise))).status).to.equal(201);
      // A node's broker connection (no credentials) may not touch JetStream: no purge, no delete.
      const nc = await natsConnect({ servers: [net.nats.url] });
      const purge = await nc.request("$JS.API.STREAM.PURGE.quality-fleet-receipts", new Uint8Array(), { timeout: 2000 }).then(
        () => "answered",
        (err: Error) => err.message,
      );
      await nc.close();
      expect(purge).to.match(/permission|timeout|503|no responders/i);
      await discovery.quality.idle();
      const after = (await get(`/v1/quality/${slow.key.address}`)).reports[0];
      expect(after.score).to.equal(before.score);
      expect(after.receipts).to.equal(before.receipts + 1);
      expect(after.failures).to.deep.equal(before.failures);
    });
  });
});

/** A failure report about `provider` with nothing paid behind it. */
function lie(consumer: IdentityKey, provider: string, sessionId: string): Receipt {
  return {
    sessionId,
    consumer: consumer.address.toLowerCase(),
    provider: provider.toLowerCase(),
    serviceType: "noop",
    path: "none",
    reached: null,
    failed: "dialog",
    connectMs: 0,
    bytesIn: 0,
    bytesOut: 0,
    throughputKbps: 0,
    advertisedMbps: MBPS,
    durationMs: 10,
    promisedWei: 0n,
    promise: null,
    at: Date.now(),
  };
}
