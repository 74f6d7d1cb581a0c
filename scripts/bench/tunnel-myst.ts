// myst's own tunnels in the tunnel benchmark: sold and bought through sessions, timed phase by phase.
import { curl, iperf } from "./tunnel-measure";
import { residentChecker } from "./tunnel-check-resident";
import path from "node:path";
import { Broker } from "../../node/broker/broker";
import { REPLICA_CREDENTIALS } from "../lib/nats-server";
import { DiscoveryClient } from "../../node/discovery/client";
import { DiscoveryService } from "../../node/discovery/server";
import { ProposalAnnouncer } from "../../node/discovery/announcer";
import { Dialogs } from "../../node/dialog/dialogs";
import type { IdentityKey } from "../../node/identity/key";
import type { ConsumerService, ProviderService } from "../../node/session/service";
import { ConsumerSessions } from "../../node/session/consumer";
import { ConsumerProtection } from "../../node/consumer-protection/protection";
import { GuardSpare } from "../../node/consumer-protection/guard-spare";
import { ProviderSessions } from "../../node/session/provider";
import type { TestNetwork } from "../lib/test-network";
import { makeProposal } from "../lib/proposals";
import type { Topology } from "../lib/topology";
import { nowMs, summarize } from "./stats";
import { ConnectTimeline, type StepSummary } from "./tunnel-timeline";
import { traced } from "../../node/log/connect-trace";
import type { StockPair } from "./tunnel-stock";
import { parseEther, Wallet } from "ethers";
import { ConsumerVaultClient } from "../../node/chain/vault";
import { ConsumerPayments } from "../../node/payments/consumer-payments";
import { ConsumerPromises } from "../../node/payments/consumer-promises";
import { ProviderPayments } from "../../node/payments/provider-payments";
import { Settler } from "../../node/payments/settlement";
import { WireGuardConsumerService } from "../../node/services/wireguard/consumer";
import { WireGuardProviderService } from "../../node/services/wireguard/provider";
import type { WireGuardSpare } from "../../node/services/wireguard/spare";
import { VaultStateCache } from "../../node/payments/vault-cache";
import type { Admission } from "../../node/session/provider";
import { openDatabase } from "../../node/store/database";
import { PromiseStore } from "../../node/store/promise-store";

/**
 * A node's broker connection and a discovery service for a bench (discovery logs in as the replica;
 * the provider and consumer are nodes: docs/security.md), each stopped by `stops` (pushed in start order).
 */
export async function benchBrokerAndDiscovery(net: TestNetwork, stops: (() => Promise<unknown>)[]): Promise<{ broker: Broker; discovery: DiscoveryService }> {
  const broker = new Broker({ servers: [net.nats.url] });
  await broker.start();
  stops.push(() => broker.stop());
  const discoveryBroker = new Broker({ servers: [net.nats.url], credentials: REPLICA_CREDENTIALS });
  await discoveryBroker.start();
  stops.push(() => discoveryBroker.stop());
  const discovery = new DiscoveryService({ broker: discoveryBroker, directory: net.registry, port: 0 });
  await discovery.start();
  stops.push(() => discovery.stop());
  return { broker, discovery };
}
/** One tunnel type sold and bought through myst: its provider service and a consumer service for it. */
export interface MystTunnel {
  type: "openvpn" | "wireguard";
  provider(dir: string): ProviderService & { start(): Promise<void>; stop(): Promise<void> };
  /** The consumer side for `key` (the bench's consumer by default). */
  consumer(dir: string, key?: IdentityKey): ConsumerService;
}

export interface TunnelResult {
  /** iperf3 through myst's tunnel and through the stock pair (when given), alternated round by round (stock first), and each round's ratio. */
  throughput: { myst: number[]; stock: number[]; ratios: number[] };
  phases: Record<string, ReturnType<typeof summarize>>;
  /** The tunnel phase of each connect with the kill switch off, in order (what `phases.tunnel` summarizes). */
  tunnelSamples: number[];
  killSwitch: {
    off: ReturnType<typeof summarize>;
    on: ReturnType<typeof summarize>;
    tunnelPhaseOn: ReturnType<typeof summarize>;
    /** Each phase of the connects with the kill switch on, as `phases` for those without. */
    phasesOn: Record<string, ReturnType<typeof summarize>>;
  };
  /** Each step of the connects (kill switch off, on, with the stage check), p50 start and end in ms from the connect's start. */
  timeline: Record<string, StepSummary[]>;
  /**
   * Connect → first byte with the stage checks' DNS question asked in-process before the first byte (docs/quality.md),
   * by a node process resident in the consumer's namespace (a daemon in its own namespace), and the check's own time.
   */
  stageChecks: { on: ReturnType<typeof summarize>; checkMs: ReturnType<typeof summarize> };
  /**
   * With `stockStart`: each stock start's ms, timed just before each connect with the kill switch off (pair i is
   * `stockStarts[i]` and the i-th sample of `phases.tunnel`), so that load changes during the run reach both alike.
   */
  stockStarts?: number[];
  /** With payments on: connect → first byte of a consumer's first session with this provider, against a known pair's; and the deposit it no longer waits for. */
  firstSession?: { neverUsed: ReturnType<typeof summarize>; known: ReturnType<typeof summarize>; deposit: ReturnType<typeof summarize> };
}

/** myst's WireGuard pair on the bench topology: the provider in its namespace, the consumer in the first consumer's (with `spare`: a daemon's kept wireguard-go). */
export function mystWireGuard(topology: Topology, spare?: WireGuardSpare): MystTunnel {
  return {
    type: "wireguard",
    provider: (d) =>
      new WireGuardProviderService({
        dir: path.join(d, "provider"),
        publicAddress: topology.providerAddress,
        netns: topology.provider,
        device: `mwp${topology.tag}`.slice(0, 15),
      }),
    consumer: (d) => new WireGuardConsumerService({ runDir: path.join(d, "consumer"), netns: topology.consumers[0], ...(spare ? { spare } : {}) }),
  };
}
/**
 * myst's own tunnel of one type: provider service, discovery, announcer; consumer dialogs and
 * sessions. Throughput (iperf3) through one session, then `connect` → first byte, phase by phase,
 * over CONNECTS connects with the kill switch off and CONNECTS with it on (interleaved).
 */
export async function benchMyst(
  tunnel: MystTunnel,
  o: {
    net: TestNetwork;
    topology: Topology;
    dir: string;
    providerKey: IdentityKey;
    consumerKey: IdentityKey;
    seconds: number;
    connects: number;
    /** Also measure a consumer's first session with a provider never used (payments on). */
    firstSessions?: boolean;
    /** The stock pair the throughput is compared with, measured in alternation with myst's (down when given); none: myst's alone. */
    stock?: StockPair;
    /** How many stock/myst throughput rounds (default 1). */
    rounds?: number;
    /**
     * One stock start timed (start → up, its client stopped and exited before it resolves): run just before each
     * connect with the kill switch off, so stock's starts and myst's connects alternate (stock, myst, stock, …).
     */
    stockStart?: () => Promise<number>;
  },
): Promise<TunnelResult> {
  const { net, topology, providerKey, consumerKey } = o;
  const dir = path.join(o.dir, tunnel.type);
  const stops: (() => Promise<unknown>)[] = [];
  try {
    const service = tunnel.provider(dir);
    await service.start();
    stops.push(() => service.stop());
    const { broker, discovery } = await benchBrokerAndDiscovery(net, stops);
    const pd = new Dialogs({ broker, key: providerKey, directory: net.registry });
    const announcer = new ProposalAnnouncer({
      broker,
      key: providerKey,
      proposal: () => makeProposal(providerKey, { serviceType: tunnel.type }, net.nats.url),
      pingMs: 60_000,
    });
    // Payments are switched on for the first-session part only; the rest measures the tunnel alone.
    let admission: Admission | undefined;
    const ps = new ProviderSessions({
      dialogs: pd,
      services: new Map([[tunnel.type, service]]),
      currentProposal: () => announcer.current,
      admission: (request) => admission?.(request) ?? Promise.resolve(null),
    });
    await pd.start();
    ps.start();
    announcer.start();
    stops.push(async () => {
      await announcer.stop();
      await ps.stop();
      pd.stop();
    });
    const cd = new Dialogs({ broker, key: consumerKey, directory: net.registry, subject: `myst.dialog.bench-consumer-${tunnel.type}` });
    await cd.start();
    stops.push(async () => cd.stop());
    const sessions = new ConsumerSessions(cd);
    const client = new DiscoveryClient(discovery.url, (id) => net.registry.publicKeyOf(id));
    const consumerService = tunnel.consumer(dir);
    for (let i = 0; i < 100 && !(await client.get(providerKey.address, tunnel.type)); i++) await new Promise((r) => setTimeout(r, 100));

    // Throughput: one iperf3 each through the stock pair and through a myst session, alternated (A B A B …), each round's
    // ratio kept: one run of each, minutes apart, measured the machine's other load as much as the tunnels.
    const rounds = o.rounds ?? 1;
    console.log(`${rounds} rounds of ${o.stock ? "stock / " : ""}myst ${tunnel.type} throughput (${o.seconds} s each)…`);
    const throughput: TunnelResult["throughput"] = { myst: [], stock: [], ratios: [] };
    for (let r = 0; r < rounds; r++) {
      let stock: number | undefined;
      if (o.stock) {
        await o.stock.up();
        stock = iperf(topology, topology.consumers[0], topology.internetAddress, o.seconds);
        await o.stock.down();
      }
      const session = await sessions.connect({ proposal: (await client.get(providerKey.address, tunnel.type))!.signed, service: consumerService });
      const myst = iperf(topology, topology.consumers[0], topology.internetAddress, o.seconds);
      await session.destroy();
      throughput.myst.push(myst);
      if (stock === undefined) continue;
      throughput.stock.push(stock);
      throughput.ratios.push(myst / stock);
    }

    console.log(
      `${o.connects} ${tunnel.type} connects with the kill switch off, ${o.connects} with it on, ${o.connects} with the in-process stage check (interleaved)…`,
    );
    // The first byte is fetched by curl started in the consumer's namespace. The same curl of a
    // refused local port (same loop) is the probe's own cost, and is taken off.
    const phases = {
      discovery: [] as number[],
      negotiation: [] as number[],
      tunnel: [] as number[],
      confirm: [] as number[],
      firstByte: [] as number[],
      probeStartup: [] as number[],
      total: [] as number[],
    };
    // The same connects with consumer protection on (kill switch, DNS, IPv6: rules installed before
    // the tunnel, replaced once it is up, resolver file rewritten), interleaved with the plain ones.
    const guarded = {
      discovery: [] as number[],
      negotiation: [] as number[],
      tunnel: [] as number[],
      confirm: [] as number[],
      firstByte: [] as number[],
      total: [] as number[],
    };
    // Every step of each connect the node publishes (connect-trace.ts), in ms from its start: kill switch off beside on.
    const timeline = new ConnectTimeline();
    stops.push(async () => timeline.stop());
    // And the same connects with the in-process stage check (DNS through the tunnel) before the first byte: a third, interleaved.
    const checker = await residentChecker(topology.consumers[0]);
    stops.push(async () => checker.stop());
    const checked = { total: [] as number[], checkMs: [] as number[] };
    // As a consumer daemon with `killSwitchSpare` on: the table stays disarmed between the guarded connects, and each
    // takes it (the first one installs it). BENCH_GUARD_SPARE=0: the default, a table installed by each connect.
    const guardDir = path.join(dir, "guard");
    const guardSpare = process.env.BENCH_GUARD_SPARE === "0" ? undefined : new GuardSpare({ dataDir: guardDir });
    stops.push(async () => guardSpare?.stop());
    // BENCH_PAUSE_MS: idle before each connect (a user connects after idle; back to back, caches and connections are warm).
    const pauseMs = Number(process.env.BENCH_PAUSE_MS ?? 0);
    const stockStarts: number[] = [];
    for (let i = 0; i < 3 * o.connects; i++) {
      // Stock's start right before myst's plain connect: never up at once (its client has exited), both kill switches off.
      if (i % 3 === 0 && o.stockStart) stockStarts.push(await o.stockStart());
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      const protection =
        i % 3 === 1
          ? new ConsumerProtection({ killSwitch: true, allowLan: false, netns: topology.consumers[0], dataDir: guardDir, spare: guardSpare })
          : undefined;
      timeline.begin(protection ? "on" : i % 3 === 2 ? "check" : "off");
      // Date.now() beside the session's own timings (its phases); the totals from the monotonic clock, to the microsecond
      // (whole milliseconds moved a p50 of 12 by up to 1 ms, as much as some of the differences read from them).
      const t0 = Date.now();
      const T0 = nowMs();
      const found = await client.get(providerKey.address, tunnel.type);
      const t1 = Date.now();
      const session = await sessions.connect({ proposal: found!.signed, service: consumerService, protection });
      const check = i % 3 === 2 ? await checker.check({ resolver: session.tunnel.dns![0], maxBytes: 65_536, timeoutMs: 2000 }) : undefined;
      if (check && check.check.dns !== true) throw new Error(`the stage check through the ${tunnel.type} tunnel failed: ${JSON.stringify(check)}`);
      const c0 = timeline.now();
      const got = curl(topology, `${topology.internetUrl}?bytes=1`);
      const t2 = Date.now();
      const T2 = nowMs();
      timeline.mark("bench: curl's first byte (its start-up included)", c0, timeline.now());
      if (got !== "1") throw new Error(`no first byte through the ${tunnel.type} tunnel`);
      const t = session.timings;
      const p0 = nowMs();
      curl(topology, "http://127.0.0.1:9/"); // refused at once
      const probeExact = nowMs() - p0;
      const probe = Math.round(probeExact);
      const total = T2 - T0 - probeExact;
      for (const [step, from, to] of [
        ["phase: discovery", t0, t1],
        ["phase: negotiation (connect → the provider's answer)", t.started, t.accepted],
        ["phase: tunnel (→ tunnel up)", t.accepted, t.tunnelUp],
        ["phase: confirm", t.tunnelUp, t.confirmed],
      ] as const)
        timeline.mark(step, from - t0, to - t0);
      if (protection) {
        guarded.discovery.push(t1 - t0);
        guarded.negotiation.push(t.accepted - t.started);
        guarded.tunnel.push(t.tunnelUp - t.accepted);
        guarded.confirm.push(t.confirmed - t.tunnelUp);
        guarded.firstByte.push(Math.max(0, t2 - t.confirmed - probe));
        guarded.total.push(total);
        await traced("bench: session destroyed", session.destroy());
        await traced("bench: kill switch lifted", protection.lift());
        continue;
      }
      if (check) {
        checked.total.push(total);
        checked.checkMs.push(check.ms);
        await session.destroy();
        continue;
      }
      phases.discovery.push(t1 - t0);
      phases.negotiation.push(t.accepted - t.started);
      phases.tunnel.push(t.tunnelUp - t.accepted);
      phases.confirm.push(t.confirmed - t.tunnelUp);
      phases.firstByte.push(Math.max(0, t2 - t.confirmed - probe));
      phases.probeStartup.push(probeExact);
      phases.total.push(total);
      await traced("bench: session destroyed", session.destroy());
    }
    timeline.stop();
    let firstSession: TunnelResult["firstSession"];
    if (o.firstSessions) {
      console.log(`${o.connects} first ${tunnel.type} sessions with a provider never used before, ${o.connects} with a known one (payments on, interleaved)…`);
      const vault = new ConsumerVaultClient(net.conn);
      const db = openDatabase(path.join(dir, "provider.db"));
      stops.push(async () => db.close());
      const store = new PromiseStore(db);
      const payments = new ProviderPayments({
        sessions: ps,
        vaults: new VaultStateCache(vault),
        store,
        settler: new Settler(store, vault, new Wallet(providerKey.privateKeyHex(), net.conn.provider)),
        usage: (id) => service.usage?.(id),
        maxUnpaid: parseEther("1"),
        minVaultBalance: parseEther("0.1"),
        minEscrow: parseEther("0.5"),
        exposurePercentOfEscrow: 50,
        maxExposure: parseEther("1"),
        settleThreshold: parseEther("1000"),
        settleFeePercent: 0,
        settleOnSessionEnd: false,
      });
      payments.start();
      stops.push(async () => payments.stop());
      admission = payments.admission;
      /** A consumer with a funded vault (`deposit`: how long its deposit took), its own dialogs and tunnel client. */
      const newConsumer = async (tag: string) => {
        const key = await net.registeredIdentity();
        await net.chain.fund([key.address], { eth: parseEther("1"), myst: parseEther("10") });
        const d0 = Date.now();
        await vault.deposit(key, key.address, parseEther("5"), parseEther("1"));
        const deposit = Date.now() - d0;
        const dialogs = new Dialogs({ broker, key, directory: net.registry, subject: `myst.dialog.bench-${tunnel.type}-${tag}` });
        await dialogs.start();
        stops.push(async () => dialogs.stop());
        return {
          deposit,
          sessions: new ConsumerSessions(dialogs),
          service: tunnel.consumer(path.join(dir, tag), key),
          promises: new ConsumerPromises(key, vault),
        };
      };
      const proposal = (await client.get(providerKey.address, tunnel.type))!.signed;
      const timed = async (c: Awaited<ReturnType<typeof newConsumer>>): Promise<number> => {
        const t0 = Date.now();
        const session = await c.sessions.connect({ proposal, service: c.service });
        new ConsumerPayments(session, c.promises).start();
        const got = curl(topology, `${topology.internetUrl}?bytes=1`);
        const t2 = Date.now();
        if (got !== "1") throw new Error(`no first byte through the ${tunnel.type} tunnel`);
        const p0 = Date.now();
        curl(topology, "http://127.0.0.1:9/");
        const probe = Date.now() - p0;
        await session.destroy();
        return t2 - t0 - probe;
      };
      const known = await newConsumer("known");
      await timed(known); // the known pair's first session, not counted
      const sample = { neverUsed: [] as number[], known: [] as number[], deposit: [] as number[] };
      for (let i = 0; i < o.connects; i++) {
        const fresh = await newConsumer(`new-${i}`);
        sample.deposit.push(fresh.deposit);
        sample.neverUsed.push(await timed(fresh));
        sample.known.push(await timed(known));
      }
      admission = undefined;
      firstSession = { neverUsed: summarize(sample.neverUsed), known: summarize(sample.known), deposit: summarize(sample.deposit) };
    }
    return {
      throughput,
      tunnelSamples: phases.tunnel,
      ...(o.stockStart ? { stockStarts } : {}),
      ...(firstSession ? { firstSession } : {}),
      phases: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, summarize(v)])),
      killSwitch: {
        off: summarize(phases.total),
        on: summarize(guarded.total),
        tunnelPhaseOn: summarize(guarded.tunnel),
        phasesOn: Object.fromEntries(Object.entries(guarded).map(([k, v]) => [k, summarize(v)])),
      },
      timeline: timeline.summary(),
      stageChecks: { on: summarize(checked.total), checkMs: summarize(checked.checkMs) },
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}
