import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Broker } from "../../node/broker/broker";
import { DiscoveryClient } from "../../node/discovery/client";
import { DiscoveryService } from "../../node/discovery/server";
import { ProposalAnnouncer } from "../../node/discovery/announcer";
import { Dialogs } from "../../node/dialog/dialogs";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
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
import type { IdentityKey } from "../../node/identity/key";
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

function iperf(t: Topology, from: string, to: string, seconds: number, attempts = 3): number {
  const out = JSON.parse(t.exec(from, [IPERF, "-c", to, "-t", String(seconds), "-J"], { timeoutMs: (seconds + 20) * 1000 }));
  if (out.end?.sum_received) return out.end.sum_received.bits_per_second / 1e6;
  // iperf3's server takes one test at a time and may still be closing the last one ("server is busy").
  if (attempts > 1) {
    execFileSync("/usr/bin/sleep", ["1"]);
    return iperf(t, from, to, seconds, attempts - 1);
  }
  throw new Error(`iperf3 ${from} → ${to}: ${out.error ?? "no result"}`);
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
 * (1) Throughput (iperf3, 10 s, consumer → internet host) through a myst tunnel, a hand-configured
 * stock OpenVPN tunnel with the same cipher, and the bare namespace link, in the same run.
 * (2) `connect` to first byte over ≥ 10 connects, by phase: discovery, negotiation, openvpn up,
 * confirm, first byte.
 * (3) With payments on (the provider admits from the consumer's vault): connect to first byte of a
 * consumer's first session with this provider (a pair never used: nothing on chain to do) against
 * a known pair's, interleaved; and, for scale, the deposit transaction the old per-pair channel
 * made the first session wait for.
 */
export async function benchTunnel(): Promise<void> {
  const missing = missingE2EPrerequisites();
  if (!fs.existsSync(IPERF)) missing.push("iperf3");
  if (!fs.existsSync(CURL)) missing.push("curl");
  if (missing.length) throw new Error(`the tunnel benchmark needs: ${missing.join(", ")}`);
  const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
  const CONNECTS = Number(process.env.BENCH_CONNECTS ?? 12);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-tunnel-"));
  const net = await new TestNetwork().start();
  // BENCH_TAG: another tag when other worktrees may run the benchmark at the same time.
  const topology = await topologyUp({ tag: process.env.BENCH_TAG ?? "bench", consumers: 1 });
  const children: ChildProcess[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  try {
    const providerKey = await net.registeredIdentity();
    const consumerKey = await net.registeredIdentity();
    children.push(iperfServer(topology.internet, topology.internetAddress), iperfServer(topology.provider, "0.0.0.0"));
    await new Promise((r) => setTimeout(r, 500));

    console.log("bare link…");
    const bare = iperf(topology, topology.consumers[0], topology.providerAddress, SECONDS);
    console.log("stock openvpn…");
    const stock = await stockTunnel(topology, dir);
    const stockMbps = iperf(topology, topology.consumers[0], topology.internetAddress, SECONDS);
    await stock.stop();

    // The myst side: provider service, discovery, announcer; consumer dialogs and sessions.
    const service = new OpenVpnProviderService({
      dir: path.join(dir, "provider"),
      directory: net.registry,
      publicAddress: topology.providerAddress,
      netns: topology.provider,
    });
    await service.start();
    stops.push(() => service.stop());
    const broker = new Broker({ servers: [net.nats.url] });
    await broker.start();
    stops.push(() => broker.stop());
    const discovery = new DiscoveryService({ broker, directory: net.registry, port: 0 });
    await discovery.start();
    stops.push(() => discovery.stop());
    const pd = new Dialogs({ broker, key: providerKey, directory: net.registry });
    const announcer = new ProposalAnnouncer({
      broker,
      key: providerKey,
      proposal: () => makeProposal(providerKey, { serviceType: "openvpn" }, net.nats.url),
      pingMs: 60_000,
    });
    // Payments are switched on for part (3) only; (1) and (2) measure the tunnel as before.
    let admission: Admission | undefined;
    const ps = new ProviderSessions({
      dialogs: pd,
      services: new Map([["openvpn", service]]),
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
    const cd = new Dialogs({ broker, key: consumerKey, directory: net.registry, subject: "myst.dialog.bench-consumer" });
    await cd.start();
    const sessions = new ConsumerSessions(cd);
    const client = new DiscoveryClient(discovery.url, (id) => net.registry.publicKeyOf(id));
    const consumerService = new OpenVpnConsumerService({ key: consumerKey, runDir: path.join(dir, "consumer"), netns: topology.consumers[0] });
    for (let i = 0; i < 100 && !(await client.get(providerKey.address, "openvpn")); i++) await new Promise((r) => setTimeout(r, 100));

    console.log("myst tunnel throughput…");
    const first = await sessions.connect({ proposal: (await client.get(providerKey.address, "openvpn"))!.signed, service: consumerService });
    const mystMbps = iperf(topology, topology.consumers[0], topology.internetAddress, SECONDS);
    await first.destroy();

    console.log(`${CONNECTS} connects with the kill switch off, ${CONNECTS} with it on (interleaved)…`);
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
    for (let i = 0; i < 2 * CONNECTS; i++) {
      const protection =
        i % 2 === 1 ? new ConsumerProtection({ killSwitch: true, allowLan: false, netns: topology.consumers[0], dataDir: path.join(dir, "guard") }) : undefined;
      const t0 = Date.now();
      const found = await client.get(providerKey.address, "openvpn");
      const t1 = Date.now();
      const session = await sessions.connect({ proposal: found!.signed, service: consumerService, protection });
      const got = curl(topology, `${topology.internetUrl}?bytes=1`);
      const t2 = Date.now();
      if (got !== "1") throw new Error("no first byte through the tunnel");
      const t = session.timings;
      if (protection) {
        const p0 = Date.now();
        curl(topology, "http://127.0.0.1:9/");
        const probe = Date.now() - p0;
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
      const p0 = Date.now();
      curl(topology, "http://127.0.0.1:9/"); // refused at once
      const probe = Date.now() - p0;
      phases.firstByte.push(Math.max(0, t2 - t.confirmed - probe));
      phases.probeStartup.push(probe);
      phases.total.push(t2 - t0 - probe);
      await session.destroy();
    }
    cd.stop();

    console.log(`${CONNECTS} first sessions with a provider never used before, ${CONNECTS} with a known one (payments on, interleaved)…`);
    const vault = new ConsumerVaultClient(net.conn);
    const db = openDatabase(path.join(dir, "provider.db"));
    stops.push(async () => db.close());
    const store = new PromiseStore(db);
    const payments = new ProviderPayments({
      sessions: ps,
      vaults: new VaultStateCache(vault),
      store,
      settler: new Settler(store, vault, new Wallet(providerKey.privateKeyHex(), net.conn.provider)),
      usage: (id) => service.usage(id),
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
    /** A consumer with a funded vault, its own dialogs and tunnel client; `deposit` is the deposit's time. */
    const newConsumer = async (tag: string) => {
      const key: IdentityKey = await net.registeredIdentity();
      await net.chain.fund([key.address], { eth: parseEther("1"), myst: parseEther("10") });
      const d0 = Date.now();
      await vault.deposit(key, key.address, parseEther("5"), parseEther("1"));
      const deposit = Date.now() - d0;
      const dialogs = new Dialogs({ broker, key, directory: net.registry, subject: `myst.dialog.bench-${tag}` });
      await dialogs.start();
      stops.push(async () => dialogs.stop());
      return {
        deposit,
        sessions: new ConsumerSessions(dialogs),
        service: new OpenVpnConsumerService({ key, runDir: path.join(dir, tag), netns: topology.consumers[0] }),
        promises: new ConsumerPromises(key, vault),
      };
    };
    const firstSession = { neverUsed: [] as number[], known: [] as number[], deposit: [] as number[] };
    const known = await newConsumer("known");
    const proposal = (await client.get(providerKey.address, "openvpn"))!.signed;
    const timed = async (c: Awaited<ReturnType<typeof newConsumer>>): Promise<number> => {
      const t0 = Date.now();
      const session = await c.sessions.connect({ proposal, service: c.service });
      new ConsumerPayments(session, c.promises).start();
      const got = curl(topology, `${topology.internetUrl}?bytes=1`);
      const t2 = Date.now();
      if (got !== "1") throw new Error("no first byte through the tunnel");
      const p0 = Date.now();
      curl(topology, "http://127.0.0.1:9/");
      const probe = Date.now() - p0;
      await session.destroy();
      return t2 - t0 - probe;
    };
    await timed(known); // the known pair's first session, not counted
    for (let i = 0; i < CONNECTS; i++) {
      const fresh = await newConsumer(`new-${i}`);
      firstSession.deposit.push(fresh.deposit);
      firstSession.neverUsed.push(await timed(fresh));
      firstSession.known.push(await timed(known));
    }
    admission = undefined;
    const firstByte = { neverUsed: summarize(firstSession.neverUsed), known: summarize(firstSession.known), deposit: summarize(firstSession.deposit) };

    const ratio = { vsStock: round(mystMbps / stockMbps, 3), vsBare: round(mystMbps / bare, 3) };
    const summary = Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, summarize(v)]));
    const killSwitch = { off: summarize(phases.total), on: summarize(guarded.total), tunnelPhaseOn: summarize(guarded.tunnel) };
    const killSwitchCostMs = round(killSwitch.on.p50 - killSwitch.off.p50, 1);
    writeResults(
      "tunnel",
      {
        throughputMbps: { bare: round(bare, 1), stockOpenvpn: round(stockMbps, 1), myst: round(mystMbps, 1) },
        ratio,
        connectPhasesMs: summary,
        connectToFirstByteKillSwitchMs: { ...killSwitch, costP50: killSwitchCostMs },
        stockTunnelUpMs: stock.upMs,
        firstSessionMs: firstByte,
        targets: "myst ≥ 95% of stock; connect-to-first-byte p50 ≤ 300 ms (total, without the probe's start-up); kill switch on costs ≤ +10 ms p50",
      },
      [
        ["measure", "value", "ratio"],
        ["iperf3 bare namespace link (Mbit/s)", String(round(bare, 1)), ""],
        ["iperf3 stock OpenVPN, AES-256-GCM (Mbit/s)", String(round(stockMbps, 1)), "1× (baseline)"],
        ["iperf3 myst tunnel, AES-256-GCM (Mbit/s)", String(round(mystMbps, 1)), `${ratio.vsStock}× of stock`],
        ["stock OpenVPN client start to tunnel up, synchronous auth (ms)", String(stock.upMs), "1× (baseline)"],
        ...Object.entries(summary).map(([k, s]) => [
          `connect phase ${k} (ms) p50 / p99`,
          `${s.p50} / ${s.p99}`,
          k === "tunnel" ? `${round(s.p50 / stock.upMs, 2)}× of stock` : "",
        ]),
        ["connect → first byte, kill switch off (ms) p50 / p99", `${killSwitch.off.p50} / ${killSwitch.off.p99}`, "1× (baseline)"],
        [
          "connect → first byte, kill switch on (ms) p50 / p99",
          `${killSwitch.on.p50} / ${killSwitch.on.p99}`,
          `${killSwitchCostMs >= 0 ? "+" : ""}${killSwitchCostMs} ms p50 (aim ≤ +10)`,
        ],
        ["  of which tunnel phase with kill switch on (ms) p50 / p99", `${killSwitch.tunnelPhaseOn.p50} / ${killSwitch.tunnelPhaseOn.p99}`, ""],
        ["connect → first byte, payments on, a known provider (ms) p50 / p99", `${firstByte.known.p50} / ${firstByte.known.p99}`, "1× (baseline)"],
        [
          "connect → first byte, payments on, a provider never used before (ms) p50 / p99",
          `${firstByte.neverUsed.p50} / ${firstByte.neverUsed.p99}`,
          `${round(firstByte.neverUsed.p50 / firstByte.known.p50, 2)}×`,
        ],
        ["  the deposit a per-pair channel made that first session wait for (local chain, ms) p50", String(firstByte.deposit.p50), "now: none"],
      ],
    );
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    for (const c of children) await stopChild(c);
    await topology.down();
    await net.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
