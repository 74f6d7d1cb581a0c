import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Broker } from "../../node/broker/broker";
import { REPLICA_CREDENTIALS } from "../lib/nats-server";
import { DiscoveryClient } from "../../node/discovery/client";
import { DiscoveryService } from "../../node/discovery/server";
import { ProposalAnnouncer } from "../../node/discovery/announcer";
import { Dialogs } from "../../node/dialog/dialogs";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { WireGuardConsumerService } from "../../node/services/wireguard/consumer";
import { generateKeyPair } from "../../node/services/wireguard/keys";
import { WireGuardProviderService } from "../../node/services/wireguard/provider";
import type { IdentityKey } from "../../node/identity/key";
import type { ConsumerService, ProviderService } from "../../node/session/service";
import { OpenVpnProviderService } from "../../node/services/openvpn/provider";
import { ensurePki } from "../../node/services/openvpn/pki";
import { ConsumerSessions } from "../../node/session/consumer";
import { ConsumerProtection } from "../../node/consumer-protection/protection";
import { ProviderSessions } from "../../node/session/provider";
import { TestNetwork } from "../lib/test-network";
import { makeProposal } from "../lib/proposals";
import { missingE2EPrerequisites } from "../lib/prereqs";
import { stopChild } from "../lib/local-chain";
import { topologyUp, type Topology } from "../lib/topology";
import { round, summarize, writeResults } from "./stats";
import { parseEther, Wallet } from "ethers";
import { ConsumerVaultClient } from "../../node/chain/vault";
import { ConsumerPayments } from "../../node/payments/consumer-payments";
import { ConsumerPromises } from "../../node/payments/consumer-promises";
import { ProviderPayments } from "../../node/payments/provider-payments";
import { Settler } from "../../node/payments/settlement";
import { VaultStateCache } from "../../node/payments/vault-cache";
import type { Admission } from "../../node/session/provider";
import { openDatabase } from "../../node/store/database";
import { PromiseStore } from "../../node/store/promise-store";

const IPERF = "/usr/bin/iperf3";
const CURL = "/usr/bin/curl";

/** `curl url` in the consumer's namespace: the body's size in bytes, or null when nothing came. */
function curl(t: Topology, url: string): string | null {
  try {
    return t.exec(t.consumers[0], [CURL, "-s", "-o", "/dev/null", "-w", "%{size_download}", "--max-time", "5", url]).trim();
  } catch {
    return null;
  }
}

function iperf(t: Topology, from: string, to: string, seconds: number, attempt = 1): number {
  let out: string;
  try {
    out = t.exec(from, [IPERF, "-c", to, "-t", String(seconds), "-J"], { timeoutMs: (seconds + 20) * 1000 });
  } catch (err) {
    out = String((err as { stdout?: string }).stdout ?? "{}");
  }
  const result = JSON.parse(out || "{}");
  const bps = result.end?.sum_received?.bits_per_second;
  if (typeof bps === "number") return bps / 1e6;
  // iperf3 fails now and then on a loaded machine ("unable to receive control message"): once more.
  if (attempt < 2) return iperf(t, from, to, seconds, attempt + 1);
  throw new Error(`iperf3 to ${to} from ${from} failed: ${result.error ?? "no result"}`);
}

function iperfServer(netns: string, address: string): ChildProcess {
  return spawn("/usr/sbin/ip", ["netns", "exec", netns, IPERF, "-s", "-B", address], { stdio: "ignore" });
}

/** A hand-configured stock OpenVPN server + client, same cipher, certificate-less like ours. */
async function stockTunnel(t: Topology, dir: string): Promise<{ upMs: number; stop: () => Promise<void> }> {
  const pki = await ensurePki(path.join(dir, "stock-pki"));
  const server = path.join(dir, "stock-server.conf");
  fs.writeFileSync(
    server,
    [
      "mode server",
      "tls-server",
      "dev stock0",
      "dev-type tun",
      "proto udp",
      "port 1195",
      "topology subnet",
      "server 10.9.0.0 255.255.255.0",
      `ca ${pki.dir}/ca.crt`,
      `cert ${pki.cert}`,
      `key ${pki.key}`,
      "dh none",
      `tls-crypt ${pki.dir}/tls-crypt.key`,
      "tls-version-min 1.2",
      "data-ciphers AES-256-GCM",
      "verify-client-cert none",
      "script-security 2",
      "auth-user-pass-verify /usr/bin/true via-file",
      "username-as-common-name",
      "keepalive 10 60",
      "verb 1",
      "",
    ].join("\n"),
  );
  const auth = path.join(dir, "stock.auth");
  fs.writeFileSync(auth, "user\npass\n", { mode: 0o600 });
  const client = path.join(dir, "stock-client.conf");
  fs.writeFileSync(
    client,
    [
      "client",
      "dev tun",
      "proto udp",
      `remote ${t.providerAddress} 1195`,
      "nobind",
      "remote-cert-tls server",
      "data-ciphers AES-256-GCM",
      `auth-user-pass ${auth}`,
      'pull-filter ignore "redirect-gateway"',
      "route 198.18.2.0 255.255.255.0",
      "verb 1",
      "<ca>",
      pki.ca.trim(),
      "</ca>",
      "<tls-crypt>",
      pki.tlsCrypt.trim(),
      "</tls-crypt>",
      "",
    ].join("\n"),
  );
  t.exec(t.provider, ["/usr/sbin/sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  t.exec(t.provider, ["/usr/sbin/iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.9.0.0/24", "-o", "eth0", "-j", "MASQUERADE"]);
  const s = spawn("/usr/sbin/ip", ["netns", "exec", t.provider, "/usr/sbin/openvpn", "--config", server], { stdio: "ignore" });
  await new Promise((r) => setTimeout(r, 500));
  const started = Date.now();
  const c = spawn("/usr/sbin/ip", ["netns", "exec", t.consumers[0], "/usr/sbin/openvpn", "--config", client], { stdio: ["ignore", "pipe", "ignore"] });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("stock tunnel did not come up")), 20_000);
    c.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("Initialization Sequence Completed")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const upMs = Date.now() - started;
  return {
    upMs,
    stop: async () => {
      await stopChild(c);
      await stopChild(s);
    },
  };
}

/**
 * A hand-configured stock wireguard-go pair: Debian's wireguard-go on both ends, set up with `wg` and
 * `ip` as wg-quick would, the same MTU as myst's (1420), nothing else (the sockets keep the OS's
 * default receive buffer). The consumer routes only the internet host's subnet into it.
 */
async function stockWireGuard(t: Topology): Promise<{ upMs: number; stop: () => Promise<void> }> {
  const WG = "/usr/bin/wg";
  const server = generateKeyPair();
  const client = generateKeyPair();
  const [sdev, cdev] = [`swp${t.tag}`.slice(0, 15), `swc${t.tag}`.slice(0, 15)];
  const s = spawn("/usr/sbin/ip", ["netns", "exec", t.provider, "/usr/bin/wireguard-go", "-f", sdev], { stdio: "ignore" });
  const c = spawn("/usr/sbin/ip", ["netns", "exec", t.consumers[0], "/usr/bin/wireguard-go", "-f", cdev], { stdio: "ignore" });
  for (let i = 0; i < 200 && !(fs.existsSync(`/var/run/wireguard/${sdev}.sock`) && fs.existsSync(`/var/run/wireguard/${cdev}.sock`)); i++)
    await new Promise((r) => setTimeout(r, 10));
  const keyFile = (name: string, k: string) => {
    const f = path.join(os.tmpdir(), `myst-bench-${name}-${process.pid}.key`);
    fs.writeFileSync(f, `${k}\n`, { mode: 0o600 });
    return f;
  };
  const sk = keyFile("s", server.privateKey);
  const ck = keyFile("c", client.privateKey);
  t.exec(t.provider, [WG, "set", sdev, "listen-port", "51821", "private-key", sk, "peer", client.publicKey, "allowed-ips", "10.10.0.2/32"]);
  t.exec(t.provider, ["/usr/sbin/ip", "address", "add", "10.10.0.1/24", "dev", sdev]);
  t.exec(t.provider, ["/usr/sbin/ip", "link", "set", sdev, "mtu", "1420", "up"]);
  t.exec(t.provider, ["/usr/sbin/sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  t.exec(t.provider, ["/usr/sbin/iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.10.0.0/24", "-o", "eth0", "-j", "MASQUERADE"]);
  const started = Date.now();
  t.exec(t.consumers[0], [WG, "set", cdev, "private-key", ck, "peer", server.publicKey, "endpoint", `${t.providerAddress}:51821`, "allowed-ips", "0.0.0.0/0"]);
  t.exec(t.consumers[0], ["/usr/sbin/ip", "address", "add", "10.10.0.2/32", "dev", cdev]);
  t.exec(t.consumers[0], ["/usr/sbin/ip", "link", "set", cdev, "mtu", "1420", "up"]);
  t.exec(t.consumers[0], ["/usr/sbin/ip", "route", "add", "198.18.2.0/24", "dev", cdev]);
  if (curl(t, `${t.internetUrl}?bytes=1`) !== "1") throw new Error("no byte through the stock wireguard-go pair");
  const upMs = Date.now() - started;
  fs.rmSync(sk);
  fs.rmSync(ck);
  return {
    upMs,
    stop: async () => {
      await stopChild(c);
      await stopChild(s);
    },
  };
}

/** One tunnel type sold and bought through myst: its provider service and a consumer service for it. */
interface MystTunnel {
  type: "openvpn" | "wireguard";
  provider(dir: string): ProviderService & { start(): Promise<void>; stop(): Promise<void> };
  /** The consumer side for `key` (the bench's consumer by default). */
  consumer(dir: string, key?: IdentityKey): ConsumerService;
}

interface TunnelResult {
  mbps: number;
  phases: Record<string, ReturnType<typeof summarize>>;
  killSwitch: { off: ReturnType<typeof summarize>; on: ReturnType<typeof summarize>; tunnelPhaseOn: ReturnType<typeof summarize> };
  /** With payments on: connect → first byte of a consumer's first session with this provider, against a known pair's; and the deposit it no longer waits for. */
  firstSession?: { neverUsed: ReturnType<typeof summarize>; known: ReturnType<typeof summarize>; deposit: ReturnType<typeof summarize> };
}

/**
 * myst's own tunnel of one type: provider service, discovery, announcer; consumer dialogs and
 * sessions. Throughput (iperf3) through one session, then `connect` → first byte, phase by phase,
 * over CONNECTS connects with the kill switch off and CONNECTS with it on (interleaved).
 */
async function benchMyst(
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
  },
): Promise<TunnelResult> {
  const { net, topology, providerKey, consumerKey } = o;
  const dir = path.join(o.dir, tunnel.type);
  const stops: (() => Promise<unknown>)[] = [];
  try {
    const service = tunnel.provider(dir);
    await service.start();
    stops.push(() => service.stop());
    const broker = new Broker({ servers: [net.nats.url] });
    await broker.start();
    stops.push(() => broker.stop());
    // Discovery logs in as the replica; the provider and consumer below are nodes (docs/security.md).
    const discoveryBroker = new Broker({ servers: [net.nats.url], credentials: REPLICA_CREDENTIALS });
    await discoveryBroker.start();
    stops.push(() => discoveryBroker.stop());
    const discovery = new DiscoveryService({ broker: discoveryBroker, directory: net.registry, port: 0 });
    await discovery.start();
    stops.push(() => discovery.stop());
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

    console.log(`myst ${tunnel.type} throughput…`);
    const first = await sessions.connect({ proposal: (await client.get(providerKey.address, tunnel.type))!.signed, service: consumerService });
    const mbps = iperf(topology, topology.consumers[0], topology.internetAddress, o.seconds);
    await first.destroy();

    console.log(`${o.connects} ${tunnel.type} connects with the kill switch off, ${o.connects} with it on (interleaved)…`);
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
    const guarded = { tunnel: [] as number[], total: [] as number[] };
    for (let i = 0; i < 2 * o.connects; i++) {
      const protection =
        i % 2 === 1 ? new ConsumerProtection({ killSwitch: true, allowLan: false, netns: topology.consumers[0], dataDir: path.join(dir, "guard") }) : undefined;
      const t0 = Date.now();
      const found = await client.get(providerKey.address, tunnel.type);
      const t1 = Date.now();
      const session = await sessions.connect({ proposal: found!.signed, service: consumerService, protection });
      const got = curl(topology, `${topology.internetUrl}?bytes=1`);
      const t2 = Date.now();
      if (got !== "1") throw new Error(`no first byte through the ${tunnel.type} tunnel`);
      const t = session.timings;
      const p0 = Date.now();
      curl(topology, "http://127.0.0.1:9/"); // refused at once
      const probe = Date.now() - p0;
      if (protection) {
        guarded.tunnel.push(t.tunnelUp - t.accepted);
        guarded.total.push(t2 - t0 - probe);
        await session.destroy();
        await protection.lift();
        continue;
      }
      phases.discovery.push(t1 - t0);
      phases.negotiation.push(t.accepted - t.started);
      phases.tunnel.push(t.tunnelUp - t.accepted);
      phases.confirm.push(t.confirmed - t.tunnelUp);
      phases.firstByte.push(Math.max(0, t2 - t.confirmed - probe));
      phases.probeStartup.push(probe);
      phases.total.push(t2 - t0 - probe);
      await session.destroy();
    }
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
      mbps,
      ...(firstSession ? { firstSession } : {}),
      phases: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, summarize(v)])),
      killSwitch: { off: summarize(phases.total), on: summarize(guarded.total), tunnelPhaseOn: summarize(guarded.tunnel) },
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}

/**
 * (1) Throughput (iperf3, consumer → internet host, BENCH_SECONDS each) in one run: the bare
 * namespace link; a stock OpenVPN pair with myst's cipher and myst's OpenVPN; a stock wireguard-go
 * pair with myst's MTU and myst's WireGuard. (2) `connect` → first byte for each myst tunnel type
 * over BENCH_CONNECTS connects, by phase: discovery, negotiation, tunnel up, confirm, first byte.
 */
export async function benchTunnel(): Promise<void> {
  const missing = missingE2EPrerequisites();
  if (!fs.existsSync(IPERF)) missing.push("iperf3");
  if (!fs.existsSync(CURL)) missing.push("curl");
  if (!fs.existsSync("/usr/bin/wg")) missing.push("wg (wireguard-tools)");
  if (missing.length) throw new Error(`the tunnel benchmark needs: ${missing.join(", ")}`);
  const seconds = Number(process.env.BENCH_SECONDS ?? 10);
  const connects = Number(process.env.BENCH_CONNECTS ?? 12);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-tunnel-"));
  const net = await new TestNetwork().start();
  // BENCH_TAG: another tag when other worktrees may run the benchmark at the same time.
  const topology = await topologyUp({ tag: process.env.BENCH_TAG ?? "bench", consumers: 1 });
  const children: ChildProcess[] = [];
  try {
    const providerKey = await net.registeredIdentity();
    const consumerKey = await net.registeredIdentity();
    children.push(iperfServer(topology.internet, topology.internetAddress), iperfServer(topology.provider, "0.0.0.0"));
    await new Promise((r) => setTimeout(r, 500));

    console.log("bare link…");
    const bare = iperf(topology, topology.consumers[0], topology.providerAddress, seconds);
    console.log("stock openvpn…");
    const stock = await stockTunnel(topology, dir);
    const stockMbps = iperf(topology, topology.consumers[0], topology.internetAddress, seconds);
    await stock.stop();
    console.log("stock wireguard-go…");
    const stockWg = await stockWireGuard(topology);
    const stockWgMbps = iperf(topology, topology.consumers[0], topology.internetAddress, seconds);
    await stockWg.stop();

    const common = { net, topology, dir, providerKey, consumerKey, seconds, connects };
    const openvpn = await benchMyst(
      {
        type: "openvpn",
        provider: (d) =>
          new OpenVpnProviderService({
            dir: path.join(d, "provider"),
            directory: net.registry,
            publicAddress: topology.providerAddress,
            netns: topology.provider,
          }),
        consumer: (d, key = consumerKey) => new OpenVpnConsumerService({ key, runDir: path.join(d, "consumer"), netns: topology.consumers[0] }),
      },
      { ...common, firstSessions: true },
    );
    const wireguard = await benchMyst(
      {
        type: "wireguard",
        provider: (d) =>
          new WireGuardProviderService({
            dir: path.join(d, "provider"),
            publicAddress: topology.providerAddress,
            netns: topology.provider,
            device: `mwp${topology.tag}`.slice(0, 15),
          }),
        consumer: (d) => new WireGuardConsumerService({ runDir: path.join(d, "consumer"), netns: topology.consumers[0] }),
      },
      common,
    );

    const ratio = {
      openvpnVsStock: round(openvpn.mbps / stockMbps, 3),
      wireguardVsStock: round(wireguard.mbps / stockWgMbps, 3),
      wireguardVsOpenvpn: round(wireguard.mbps / openvpn.mbps, 3),
      openvpnVsBare: round(openvpn.mbps / bare, 3),
    };
    const cost = (r: TunnelResult) => round(r.killSwitch.on.p50 - r.killSwitch.off.p50, 1);
    const rows = (name: string, r: TunnelResult, stockUpMs: number): string[][] => [
      ...Object.entries(r.phases).map(([k, s]) => [
        `${name} connect phase ${k} (ms) p50 / p99`,
        `${s.p50} / ${s.p99}`,
        k === "tunnel" ? `${round(s.p50 / stockUpMs, 2)}× of stock` : "",
      ]),
      [`${name} connect → first byte, kill switch off (ms) p50 / p99`, `${r.killSwitch.off.p50} / ${r.killSwitch.off.p99}`, "1× (baseline)"],
      [
        `${name} connect → first byte, kill switch on (ms) p50 / p99`,
        `${r.killSwitch.on.p50} / ${r.killSwitch.on.p99}`,
        `${cost(r) >= 0 ? "+" : ""}${cost(r)} ms p50 (aim ≤ +10)`,
      ],
      [`  of which tunnel phase with kill switch on (ms) p50 / p99`, `${r.killSwitch.tunnelPhaseOn.p50} / ${r.killSwitch.tunnelPhaseOn.p99}`, ""],
    ];
    writeResults(
      "tunnel",
      {
        throughputMbps: {
          bare: round(bare, 1),
          stockOpenvpn: round(stockMbps, 1),
          mystOpenvpn: round(openvpn.mbps, 1),
          stockWireguardGo: round(stockWgMbps, 1),
          mystWireguard: round(wireguard.mbps, 1),
        },
        ratio,
        openvpn: {
          connectPhasesMs: openvpn.phases,
          connectToFirstByteKillSwitchMs: { ...openvpn.killSwitch, costP50: cost(openvpn) },
          firstSessionMs: openvpn.firstSession,
        },
        wireguard: { connectPhasesMs: wireguard.phases, connectToFirstByteKillSwitchMs: { ...wireguard.killSwitch, costP50: cost(wireguard) } },
        stockTunnelUpMs: { openvpn: stock.upMs, wireguardGo: stockWg.upMs },
        targets:
          "each myst tunnel ≥ 95% of its stock pair; connect-to-first-byte p50 ≤ 300 ms for OpenVPN, ≤ 100 ms for WireGuard (total, without the probe's start-up); kill switch on costs ≤ +10 ms p50",
      },
      [
        ["measure", "value", "ratio"],
        ["iperf3 bare namespace link (Mbit/s)", String(round(bare, 1)), ""],
        ["iperf3 stock OpenVPN, AES-256-GCM (Mbit/s)", String(round(stockMbps, 1)), "1× (baseline)"],
        ["iperf3 myst OpenVPN, AES-256-GCM (Mbit/s)", String(round(openvpn.mbps, 1)), `${ratio.openvpnVsStock}× of stock OpenVPN`],
        ["iperf3 stock wireguard-go pair, MTU 1420 (Mbit/s)", String(round(stockWgMbps, 1)), "1× (baseline)"],
        [
          "iperf3 myst WireGuard (wireguard-go, MTU 1420) (Mbit/s)",
          String(round(wireguard.mbps, 1)),
          `${ratio.wireguardVsStock}× of stock wireguard-go (aim ≥ 0.95); ${ratio.wireguardVsOpenvpn}× of myst OpenVPN`,
        ],
        ["stock OpenVPN client start to tunnel up, synchronous auth (ms)", String(stock.upMs), "1× (baseline)"],
        ["stock wireguard-go: `wg set` on the client to first byte (ms)", String(stockWg.upMs), "1× (baseline)"],
        ...rows("openvpn", openvpn, stock.upMs),
        ...(openvpn.firstSession
          ? [
              [
                "openvpn connect → first byte, a provider never used before (payments on) (ms) p50 / p99",
                `${openvpn.firstSession.neverUsed.p50} / ${openvpn.firstSession.neverUsed.p99}`,
                `${round(openvpn.firstSession.neverUsed.p50 / openvpn.firstSession.known.p50, 2)}× of a known provider's (aim 1×: no deposit on the path)`,
              ],
              [
                "openvpn connect → first byte, a known provider (payments on) (ms) p50 / p99",
                `${openvpn.firstSession.known.p50} / ${openvpn.firstSession.known.p99}`,
                "1× (baseline)",
              ],
              ["the deposit the first session no longer waits for (one vault deposit, local chain) (ms) p50", String(openvpn.firstSession.deposit.p50), ""],
            ]
          : []),
        ...rows("wireguard", wireguard, stockWg.upMs),
      ],
    );
  } finally {
    for (const c of children) await stopChild(c);
    await topology.down();
    await net.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
