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
import { WireGuardConsumerService } from "../../node/services/wireguard/consumer";
import { WireGuardProviderService } from "../../node/services/wireguard/provider";
import type { ProviderService } from "../../node/session/service";
import { openDatabase } from "../../node/store/database";
import { IssuedPromiseStore } from "../../node/store/issued-promise-store";
import { OwnReceipts } from "../../node/store/own-receipts";
import { REPLICA_CREDENTIALS } from "../../scripts/lib/nats-server";
import { providerPayments, TestNetwork } from "../../scripts/lib/test-network";
import { requireE2E } from "../../scripts/lib/prereqs";
import { tempDir } from "../../scripts/lib/tmp";
import { type Topology, topologyUp } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { toAddress } from "../../node/values/address";

const E = parseEther;
const MBPS = 20;
/** WireGuard providers advertise less: their throughput test runs through a real tunnel on a loaded machine. */
const WG_MBPS = 5;

/** How each provider of the fleet behaves: "ok", or one of the six ways to be broken. */
type Kind = "ok" | "gone" | "cut-after-accept" | "slow" | "blackhole" | "bad-dns" | "no-tunnel";
/** The stage each broken kind fails at. */
const STAGE_OF: Record<Exclude<Kind, "ok">, Stage> = {
  gone: "dialog", // gone but still announced: nobody answers the dialog
  "cut-after-accept": "first-byte", // accepts the session, then drops its data path
  slow: "throughput", // a tenth of its advertised bandwidth
  blackhole: "first-byte", // WireGuard: the handshake works, nothing comes back through the tunnel
  "bad-dns": "dns", // WireGuard: carries traffic, its resolver refuses every query
  "no-tunnel": "tunnel", // WireGuard: answers the dialog, never the tunnel's handshake
};
const NOOP_BROKEN: Kind[] = ["gone", "cut-after-accept", "slow"];
const WG_BROKEN: Kind[] = ["blackhole", "bad-dns", "no-tunnel"];
const NOOP_WORKING = 21;
const WG_WORKING = 3;

/**
 * The issue's fleet: 30 providers (24 noop, 6 WireGuard), 6 broken in the six ways the issue lists,
 * one discovery replica on JetStream (its index and its receipts), probers and fresh consumers on a
 * real chain (vault deposits, real promises). The noop data path (services/noop) gives a noop
 * provider a real byte stream on loopback; the WireGuard providers are real wireguard-go services in
 * the topology's provider namespace (one machine, six identities, each its own port, subnet, device
 * and resolver), broken by nftables rules there, and their consumers' tunnels run in consumer
 * namespaces with the stage checks through them (services/tunnel-check.ts).
 */
describe("quality: receipts, scores and fallback over a fleet of 30 providers (real chain, NATS + JetStream, noop data paths, WireGuard in namespaces)", function () {
  this.timeout(240_000);
  const net = new TestNetwork();
  const tmp = tempDir();
  let topology: Topology;
  let discovery: DiscoveryService;
  let discoveryBroker: Broker;
  let vault: ConsumerVaultClient;
  type Member = { key: IdentityKey; node: ProviderNode; service: ProviderService & { stop(): Promise<void> }; kind: Kind; type: "noop" | "wireguard" };
  const fleet: Member[] = [];
  const consumers: ConsumerNode[] = [];
  // biome-ignore lint/suspicious/noExplicitAny: the tests read the JSON answers field by field
  type Json = any;
  const get = async (p: string): Promise<Json> => (await fetch(discovery.url + p)).json();
  const post = async (p: string, body: unknown): Promise<{ status: number; body: Json }> => {
    const r = await fetch(discovery.url + p, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  };

  /** A WireGuard consumer side in consumer namespace `ns`, with the stage checks through its tunnel. */
  const wgConsumer = (ns: string) =>
    new WireGuardConsumerService({
      runDir: path.join(tmp.dir, "wg-run"),
      netns: ns,
      connectTimeoutMs: 5000,
      tunnelCheck: { name: topology.whoamiName, url: topology.internetUrl },
    });

  /** The rules that break WireGuard provider `m` (its own table in the provider's namespace). */
  function breakWireGuard(m: Member, i: number): void {
    const device = (m.service as WireGuardProviderService).device;
    const t = `inet mystq${i}`;
    const rules: Record<string, string[]> = {
      blackhole: [`add rule ${t} qin iifname "${device}" drop`, `add rule ${t} qfwd iifname "${device}" drop`],
      "bad-dns": [`add rule ${t} qin iifname "${device}" udp dport 53 reject`, `add rule ${t} qin iifname "${device}" tcp dport 53 reject with tcp reset`],
      "no-tunnel": [`add rule ${t} qin udp dport ${51900 + i} drop`],
    };
    const script = [
      `add table ${t}`,
      `add chain ${t} qin { type filter hook input priority -5 ; }`,
      `add chain ${t} qfwd { type filter hook forward priority -5 ; }`,
      ...rules[m.kind],
    ].join(" ; ");
    topology.exec(topology.provider, ["/usr/sbin/nft", script]);
  }

  async function provider(i: number, kind: Kind, type: "noop" | "wireguard"): Promise<void> {
    const key = await net.registeredIdentity();
    const wg = type === "wireguard";
    const service = wg
      ? new WireGuardProviderService({
          dir: path.join(tmp.dir, `wg${i}`),
          publicAddress: topology.providerAddress,
          netns: topology.provider,
          port: 51900 + i,
          subnet: `10.${40 + i}.0.0`,
          device: `mq${i}${topology.tag}`.slice(0, 15),
          meterMs: 200,
        })
      : new NoopProviderService({ data: { mbps: MBPS, behaviour: kind === "gone" || kind === "ok" ? "ok" : (kind as NoopBehaviour) } });
    if (wg) await (service as WireGuardProviderService).start();
    const db = openDatabase(path.join(tmp.dir, `p${i}.db`));
    const node = new ProviderNode({
      key,
      brokerUrls: [net.nats.url],
      registry: net.registry,
      services: [
        {
          service,
          offer: { country: "DE", ipType: "residential", pricePerHour: E(String(30 + i)), pricePerGiB: 0n, bandwidthMbps: wg ? WG_MBPS : MBPS },
        },
      ],
      keepaliveMs: 1000,
      // Gone but still announced must stay announced for the whole file, however long a loaded machine makes it
      // (a proposal lives 3 pings): the others ping at the default 30 s.
      ...(kind === "gone" ? { pingMs: 300_000 } : {}),
      payments: { ...providerPayments(net.conn, db), invoiceEveryMs: 200, settleOnSessionEnd: false },
    });
    await node.start();
    const m: Member = { key, node, service, kind, type };
    fleet.push(m);
    if (wg && kind !== "ok") breakWireGuard(m, i);
  }

  /**
   * `n` fresh consumers: new identities registered on chain, funded, each with its own vault deposit,
   * each a ConsumerNode of its own (its own broker connection, store and receipts).
   */
  let funder: Promise<unknown> = Promise.resolve();
  async function freshConsumers(n: number): Promise<{ node: ConsumerNode; key: IdentityKey }[]> {
    // The funder registers (as relayer) and funds: one batch at a time, or its nonces collide.
    const made = funder.then(async () => {
      const keys: IdentityKey[] = [];
      for (let i = 0; i < n; i++) keys.push(await net.registeredIdentity());
      await net.chain.fund(
        keys.map((k) => k.address),
        { eth: E("1"), myst: E("10") },
      );
      return keys;
    });
    funder = made.catch(() => undefined);
    const keys = await made;
    await Promise.all(keys.map((key) => vault.deposit(key, key.address, E("5"), E("1"))));
    return Promise.all(
      keys.map(async (key) => {
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
      }),
    );
  }

  /** Connects by filter, waits for a promise, disconnects; resolves once the connection's receipts are written. */
  async function session(c: ConsumerNode, type: "noop" | "wireguard", o: { ns?: string; maxCandidates?: number } = {}) {
    const service = type === "wireguard" ? wgConsumer(o.ns!) : new NoopConsumerService();
    const connection = await c.connect({ filter: { serviceType: type }, service, maxCandidates: o.maxCandidates, budgetMs: 60_000 });
    await until(() => (connection.payments?.promised ?? 0n) > 0n, "a promise", 20_000);
    await c.current!.session.destroy("done");
    await connection.written;
    return connection;
  }

  const byKind = (k: Kind) => fleet.find((f) => f.kind === k)!;
  const working = (type: "noop" | "wireguard") => fleet.filter((f) => f.kind === "ok" && f.type === type).map((f) => f.key.address);
  const BROKEN = [...NOOP_BROKEN, ...WG_BROKEN] as Exclude<Kind, "ok">[];

  before(async function () {
    requireE2E(this);
    await net.start();
    topology = await topologyUp({ consumers: 4 });
    vault = new ConsumerVaultClient(net.conn);
    discoveryBroker = new Broker({ servers: [net.nats.url], credentials: REPLICA_CREDENTIALS });
    await discoveryBroker.start();
    discovery = new DiscoveryService({
      broker: discoveryBroker,
      directory: net.registry,
      port: 0,
      store: new JetStreamProposalStore({ servers: [net.nats.url], credentials: REPLICA_CREDENTIALS, bucket: "quality-fleet", ttlMs: 900_000 }),
      quality: {
        promiseCheck: promiseCheckOf(net.conn.chainId, net.conn.deployment.contracts.ConsumerVault),
        store: new JetStreamReceiptStore({ servers: [net.nats.url], credentials: REPLICA_CREDENTIALS, stream: "quality-fleet-receipts" }),
        // One period for the whole file (a 6 h boundary in the middle of a run would split the probers).
        probeParams: { periodMs: 7 * 86_400_000, minProbers: 3 },
        // Every client of this file (the test, 30 providers, the consumers) asks from 127.0.0.1: one address.
        reads: { perMinute: 1_000_000, burst: 1_000_000 },
      },
    });
    await discovery.start();
    // Broken providers are the cheapest of their type: with no evidence yet, a consumer tries them first.
    const plan: [Kind, "noop" | "wireguard"][] = [
      ...NOOP_BROKEN.map((k) => [k, "noop"] as [Kind, "noop"]),
      ...Array.from({ length: NOOP_WORKING }, () => ["ok", "noop"] as [Kind, "noop"]),
      ...WG_BROKEN.map((k) => [k, "wireguard"] as [Kind, "wireguard"]),
      ...Array.from({ length: WG_WORKING }, () => ["ok", "wireguard"] as [Kind, "wireguard"]),
    ];
    await Promise.all(plan.map(([kind, type], i) => provider(i, kind, type)));
    expect(fleet).to.have.length(30);
    await until(async () => (await get("/v1/proposals?limit=100")).proposals.length === fleet.length, "the fleet in discovery", 30_000);
    // Gone, but still announced: its broker connection dropped, its proposal lives until the TTL.
    await byKind("gone").node.broker.stop();
  });

  after(async function () {
    await Promise.all(consumers.map((c) => c.stop().catch(() => undefined)));
    await Promise.all(
      fleet.map(async (f) => {
        await f.node.stop().catch(() => undefined);
        await f.service.stop().catch(() => undefined);
      }),
    );
    await discovery?.stop();
    await discoveryBroker?.stop();
    await topology?.down();
    await net.stop();
    tmp.cleanup();
  });

  it("first consumers fall over every broken provider to a working one within one connect, and each broken one is named with its failing stage", async function () {
    const [a, b] = await freshConsumers(2);
    // Broken providers are the cheapest: the fourth candidate of each type is the first working one.
    const [noop, wg] = await Promise.all([
      session(a.node, "noop", { maxCandidates: 4 }),
      session(b.node, "wireguard", { ns: topology.consumers[3], maxCandidates: 4 }),
    ]);
    expect(working("noop")).to.include(noop.session.provider);
    expect(working("wireguard")).to.include(wg.session.provider);
    expect(wg.checked).to.deep.equal({ reached: "throughput", failed: null });
    const named = (c: typeof noop) => c.fellOver.map((f) => [f.provider, f.stage]);
    expect(named(noop)).to.have.deep.members(NOOP_BROKEN.map((k) => [byKind(k).key.address, STAGE_OF[k as keyof typeof STAGE_OF]]));
    expect(named(wg)).to.have.deep.members(WG_BROKEN.map((k) => [byKind(k).key.address, STAGE_OF[k as keyof typeof STAGE_OF]]));
    // What each broken provider is told (discovery's report from the consumers' signed receipts, in words).
    const words = async (k: Kind) =>
      (await until(async () => (await get(`/v1/quality/${byKind(k).key.address}`)).reports[0]?.words.join(" | "), `the receipt about ${k}`, 20_000)) as string;
    expect(await words("gone")).to.match(/^1 consumer in 168 h could not reach you over the broker/);
    expect(await words("cut-after-accept")).to.match(/never received a first byte: check your NAT \/ firewall/);
    expect(await words("slow")).to.match(/far less bandwidth than you advertise/);
    expect(await words("blackhole")).to.match(/had a tunnel but never received a first byte/);
    expect(await words("bad-dns")).to.match(/names did not resolve through it/);
    expect(await words("no-tunnel")).to.match(/tunnel never came up/);
  });

  describe("probers (myst prober: consumers on a timer, the median of at least 3 per period)", function () {
    const probers: { node: ConsumerNode; key: IdentityKey; prober: Prober }[] = [];
    let liar: { node: ConsumerNode; key: IdentityKey; prober: Prober };
    const check = () => promiseCheckOf(net.conn.chainId, net.conn.deployment.contracts.ConsumerVault);
    const quality = async (who: string) => recomputeQuality(await get(`/v1/quality/${who}`), toAddress(who), net.registry, check());
    const ROUND = { sample: 100, holdMs: 5000, budgetMs: 20_000 };

    before(async function () {
      // Each prober's WireGuard tunnels run in a consumer namespace of its own (what `myst prober` needs to probe tunnel types).
      for (const [i, { node, key }] of (await freshConsumers(4)).entries()) {
        const service = (type: string) => (type === "wireguard" ? wgConsumer(topology.consumers[i]) : new NoopConsumerService());
        probers.push({ node, key, prober: new Prober({ consumer: node, service, self: key.address }) });
      }
      liar = probers.pop()!;
    });

    it("three honest probers probe all 30 providers as consumers do (paying), WireGuard through their tunnels, and each broken provider's status names its failing stage", async function () {
      // Each prober pays a working provider first, so every later result carries a promise of its own.
      const first = working("noop")[0];
      const warm = await Promise.all([...probers, liar].map((p) => p.prober.probe(first, "noop", ROUND)));
      for (const w of warm) expect(w.failed, w.error).to.equal(null);
      for (const w of warm) expect(w.promisedWei > 0n).to.equal(true);
      // Each prober's noop and WireGuard rounds at once (one tunnel at a time in its namespace).
      const rounds = await Promise.all(
        probers.map(async (p) => (await Promise.all(["noop", "wireguard"].map((t) => p.prober.round({ ...ROUND, serviceTypes: [t] })))).flat()),
      );
      for (const r of rounds) expect(r.map((o) => o.provider)).to.have.members(fleet.map((f) => f.key.address.toLowerCase()));
      // What each prober saw of each provider: a broken one's stage; every stage passed for a working one.
      for (const r of rounds)
        for (const f of fleet) {
          const o = r.find((x) => x.provider === f.key.address.toLowerCase())!;
          expect(o.failed, `${f.type} ${f.kind}: ${o.error ?? ""}`).to.equal(f.kind === "ok" ? null : STAGE_OF[f.kind]);
          if (f.type === "wireguard" && f.kind === "ok") expect(o.reached).to.equal("throughput");
        }
      await discovery.quality.idle();
      // The provider's own status (what `myst status`, `myst quality`, GET /v1/quality and the dashboard show).
      for (const k of BROKEN) {
        const m = byKind(k);
        const q = await quality(m.key.address);
        expect(q.rejected, k).to.equal(0);
        const s = q.services.find((x) => x.serviceType === m.type)!;
        expect(s.probe.score, k).to.equal(0);
        expect(s.probe.probers, k).to.have.length(3);
        expect(
          s.probe.failures.map((f) => f.stage),
          k,
        ).to.deep.equal([STAGE_OF[k]]);
        expect(s.probe.words[0], k).to.match(/^3 of 3 probers in the 168 h from \S+Z /);
        expect(s.probe.words[0], k).to.include(STAGE_WORDS[STAGE_OF[k]].failed);
        expect(s.score, k).to.equal(s.discoveryScore);
      }
    });

    it("after the probers' first period, 100 connects by filter from fresh consumers: ≥ 99 reach a working provider on the first pick, all 100 within the connect", async function () {
      // 95 noop connects, ten consumers at a time, and 5 WireGuard connects from a consumer namespace, one at a time.
      // Each fall-over kept with its provider and stage: a first pick that failed says where.
      const outcomes: { type: string; provider: string; fellOver: string[] }[] = [];
      const wgRun = (async () => {
        for (const { node } of await freshConsumers(5)) {
          const c = await session(node, "wireguard", { ns: topology.consumers[3] });
          expect(c.checked).to.deep.equal({ reached: "throughput", failed: null });
          outcomes.push({ type: "wireguard", provider: c.session.provider, fellOver: c.fellOver.map((f) => `${f.provider} at ${f.stage}`) });
        }
      })();
      // Its failure is reported where it is awaited, below, not as an unhandled rejection in the middle of the noop batches.
      wgRun.catch(() => undefined);
      for (let batch = 0; batch < 95; batch += 19) {
        const fresh = await freshConsumers(19);
        for (let i = 0; i < fresh.length; i += 10) {
          const done = await Promise.all(fresh.slice(i, i + 10).map(({ node }) => session(node, "noop")));
          outcomes.push(...done.map((c) => ({ type: "noop", provider: c.session.provider, fellOver: c.fellOver.map((f) => `${f.provider} at ${f.stage}`) })));
        }
      }
      await wgRun;
      expect(outcomes).to.have.length(100);
      // 100% within the connect: every one ended on a working provider.
      for (const o of outcomes) expect(working(o.type as "noop" | "wireguard"), o.provider).to.include(o.provider);
      const missed = outcomes.filter((o) => o.fellOver.length > 0);
      console.log(`      (first picks on a working provider: ${outcomes.length - missed.length} of ${outcomes.length})`);
      expect(outcomes.length - missed.length, `first picks (fell over: ${missed.flatMap((o) => o.fellOver).join("; ")})`).to.be.at.least(99);
    });

    it("ranks the broken providers last without hiding them, and min_quality leaves out only the broken ones", async function () {
      // (The replica re-ranks at most once a second while receipts arrive: wait for the new order.)
      const ranked = (await until(async () => {
        const list = (await get("/v1/proposals?service_type=noop&sort=quality&limit=100")).proposals as Json[];
        const scores = list.map((p) => p.quality.score ?? 50);
        return scores.every((s, i) => i === 0 || scores[i - 1] >= s) && list;
      }, "the ranked order")) as Json[];
      expect(ranked).to.have.length(fleet.filter((f) => f.type === "noop").length);
      for (const k of NOOP_BROKEN) expect(ranked.find((p) => p.proposal.provider === byKind(k).key.address).quality.score, k).to.be.lessThan(50);
      expect(ranked.slice(-NOOP_BROKEN.length).map((p) => p.proposal.provider)).to.have.members(NOOP_BROKEN.map((k) => byKind(k).key.address));
      const minQ = (await get("/v1/proposals?service_type=wireguard&min_quality=45")).proposals as Json[];
      expect(minQ.map((p) => p.proposal.provider)).to.have.members(working("wireguard"));
    });

    it("a lying prober alone changes no score (3 honest + 1 liar), and forged, replayed and oversized probe results are dropped", async function () {
      // A working provider all three honest probers saw working.
      const agreed = [];
      for (const w of working("noop")) {
        const q = (await quality(w)).services.find((x) => x.serviceType === "noop")!;
        if (q.probe.probers.length === 3 && q.probe.probers.every((p) => p.score === 100)) agreed.push({ w, q });
      }
      expect(agreed.length, "working providers every honest prober saw working").to.be.greaterThan(0);
      // The liar (it paid a provider once: its lies carry a valid promise) says each of them never answered.
      const paid = liar.node.promises!.latest(working("noop")[0].toLowerCase())!;
      const results = await Promise.all(
        agreed.map(({ w }, i) =>
          post(
            "/v1/probes",
            signReceipt(
              liar.key,
              {
                ...lie(liar.key, w, `probe-lie-${i}`),
                promise: { provider: working("noop")[0].toLowerCase(), amount: paid.amount, signature: paid.signature },
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

  it("the provider recomputes its own score from the raw signed receipts and gets discovery's number", async function () {
    const slow = byKind("slow").key.address;
    const answer = await get(`/v1/quality/${slow}`);
    const mine = await recomputeQuality(answer, toAddress(slow), net.registry, promiseCheckOf(net.conn.chainId, net.conn.deployment.contracts.ConsumerVault));
    expect(mine.rejected).to.equal(0);
    expect(mine.services[0].score).to.equal(answer.reports[0].score);
    expect(mine.services[0].words[0]).to.match(/far less bandwidth/);
  });

  describe("hostile", function () {
    const good = () => fleet.find((f) => f.kind === "ok" && f.type === "noop")!;
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
      const slow = byKind("slow");
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
