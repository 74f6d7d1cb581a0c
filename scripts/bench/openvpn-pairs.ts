// The tunnel bench's stock OpenVPN pair against myst's, one difference at a time (docs/connect-path.md, ninth pass):
// `VARIANTS=SS,MM,MMbuf BENCH_ROUNDS=12 flock /tmp/myst-heavy.lock npx ts-node --transpile-only scripts/bench/openvpn-pairs.ts`.
//
// Every variant carries one upload (iperf3, consumer → internet host, BENCH_SECONDS, default 5) in the tunnel bench's
// topology. Each round runs the baseline (BASE, default SS) first, then the other variants in an order that turns
// round by round. For each run: Mbit/s, the sender's TCP retransmits, the provider's UDP receive-buffer drops, the
// devices' drops, and the CPU each process used (/proc/<pid>/stat before and after; the whole machine from /proc/stat).
// At the end, per variant: the mean Mbit/s, the median and mean of the rounds' ratios to the baseline, and CPU per Mbit/s.
//
// Variants (S: the bench's stock side, M: myst's own):
//   SS     the tunnel bench's stock pair                  MM     a myst session, iperf3 blocking the node as the bench's does
//   MMa    a myst session, iperf3 not blocking the node   MMbuf  a myst session to a provider that also asks `rcvbuf 524288`
//          (the provider's and the consumer's meters run)        (main before the ninth pass)
//   SM     the stock client → myst's provider             MS     myst's consumer → the stock server
//   Sbuf / Smgmt / Sopts / Sfw / Spipe   the stock pair's server plus one of myst's provider differences: its receive
//          buffer (512 KiB); the management socket with its client auth; its other options; its firewall rules; its
//          output piped to this (blocked) node at `verb 3`.  Sall: all of them.  MSall: myst's consumer → Sall.
//   Cbuf / Cmgmt / Copts / Call   the stock client plus one of myst's consumer differences (2 MiB buffer; management
//          socket; its other options; all of them), against Sall.
import crypto from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Broker } from "../../node/broker/broker";
import { DiscoveryClient } from "../../node/discovery/client";
import { ProposalAnnouncer } from "../../node/discovery/announcer";
import { Dialogs } from "../../node/dialog/dialogs";
import type { IdentityKey } from "../../node/identity/key";
import { TunnelFirewall } from "../../node/services/firewall";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { authMessage } from "../../node/services/openvpn/credentials";
import { ManagementClient } from "../../node/services/openvpn/management";
import { ensurePki } from "../../node/services/openvpn/pki";
import { OpenVpnProviderService } from "../../node/services/openvpn/provider";
import { ConsumerSessions } from "../../node/session/consumer";
import { ProviderSessions } from "../../node/session/provider";
import { stopChild } from "../lib/local-chain";
import { makeProposal } from "../lib/proposals";
import { TestNetwork } from "../lib/test-network";
import { topologyUp, type Topology } from "../lib/topology";
import { loadLine, round, runScript } from "./stats";
import { IPERF, iperfServer } from "./tunnel-measure";
import { stockServerLines, stockTunnel } from "./tunnel-stock";
import { benchBrokerAndDiscovery } from "./tunnel-myst";

const HZ = 100;

/** Every process's CPU ticks so far, its nice value and command line. */
function processTicks(): Map<number, { ticks: number; nice: number; cmd: string }> {
  const m = new Map<number, { ticks: number; nice: number; cmd: string }>();
  for (const p of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, "utf8").replace(/\0/g, " ").trim().slice(0, 140);
      m.set(Number(p), { ticks: Number(f[11]) + Number(f[12]), nice: Number(f[16]), cmd });
    } catch {
      // gone meanwhile
    }
  }
  return m;
}

/** The machine's CPU ticks: user, nice, system, idle, iowait, irq, softirq. */
const systemTicks = () => fs.readFileSync("/proc/stat", "utf8").split("\n")[0].split(/\s+/).slice(1, 8).map(Number);

/** The UDP counters of a namespace (/proc/net/snmp). */
function udp(t: Topology, ns: string): Record<string, number> {
  const [names, values] = t
    .exec(ns, ["/usr/bin/cat", "/proc/net/snmp"])
    .split("\n")
    .filter((l) => l.startsWith("Udp:"))
    .map((l) => l.split(/\s+/));
  return Object.fromEntries(names.map((n, i) => [n, Number(values[i])]));
}

/** Each device's receive and transmit drops in a namespace (/proc/net/dev). */
function deviceDrops(t: Topology, ns: string): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const line of t.exec(ns, ["/usr/bin/cat", "/proc/net/dev"]).split("\n").slice(2)) {
    const [dev, rest] = line.split(":");
    if (!rest) continue;
    const f = rest.trim().split(/\s+/).map(Number);
    out.set(dev.trim(), [f[3], f[11]]);
  }
  return out;
}

/** One upload through whatever routes the internet host now: Mbit/s received and the sender's retransmits. */
async function upload(t: Topology, seconds: number, blocking: boolean): Promise<{ mbps: number; retransmits: number }> {
  const argv = [IPERF, "-c", t.internetAddress, "-t", String(seconds), "-J"];
  for (let attempt = 1; ; attempt++) {
    let out: string;
    if (blocking) {
      // As the tunnel bench runs it: the node (provider and consumer in one process) waits, its timers with it.
      try {
        out = t.exec(t.consumers[0], argv, { timeoutMs: (seconds + 20) * 1000 });
      } catch (err) {
        out = String((err as { stdout?: string }).stdout ?? "{}");
      }
    } else {
      const c = spawn("/usr/sbin/ip", ["netns", "exec", t.consumers[0], ...argv], { stdio: ["ignore", "pipe", "ignore"] });
      let text = "";
      c.stdout.on("data", (d) => (text += d));
      await new Promise((r) => c.once("exit", r));
      out = text;
    }
    const r = JSON.parse(out || "{}");
    const bps = r.end?.sum_received?.bits_per_second;
    if (typeof bps === "number") return { mbps: bps / 1e6, retransmits: r.end?.sum_sent?.retransmits ?? -1 };
    if (attempt >= 2) throw new Error(`iperf3 failed: ${r.error ?? "no result"}`);
  }
}

interface Run {
  mbps: number;
  /** CPU (% of one core) per Mbit/s: the whole machine busy, and the internet host's iperf3 server. */
  busyPerMbit: number;
  receiverPerMbit: number;
}

/** One upload, with what it cost and what was dropped, printed. */
async function measured(t: Topology, label: string, seconds: number, blocking = true): Promise<Run> {
  const [pa, ca, pda, cda] = [udp(t, t.provider), udp(t, t.consumers[0]), deviceDrops(t, t.provider), deviceDrops(t, t.consumers[0])];
  const [before, sa, t0] = [processTicks(), systemTicks(), Date.now()];
  const { mbps, retransmits } = await upload(t, seconds, blocking);
  const [after, sb, secs] = [processTicks(), systemTicks(), (Date.now() - t0) / 1000];
  const pct = (ticks: number) => (ticks * 100) / HZ / secs;
  const d = sb.map((x, i) => x - sa[i]);
  const [user, nice, sys, idle, , irq, softirq] = d.map((x) => Math.round(pct(x)));
  console.log(`${label}: ${mbps.toFixed(1)} Mbit/s; CPU (% of one core): user ${user} nice ${nice} sys ${sys} irq ${irq} softirq ${softirq} idle ${idle}`);
  const processes = [...after.entries()]
    .map(([pid, x]) => ({ pid, ...x, used: pct(x.ticks - (before.get(pid)?.ticks ?? 0)) }))
    .filter((p) => p.used >= 0.3)
    .sort((a, b) => b.used - a.used);
  for (const p of processes.slice(0, 8)) console.log(`  ${String(p.pid).padStart(7)} ${p.used.toFixed(1).padStart(5)}% nice ${p.nice} ${p.cmd}`);
  const [pb, cb] = [udp(t, t.provider), udp(t, t.consumers[0])];
  const drops = (a: Map<string, [number, number]>, b: Map<string, [number, number]>) =>
    [...b.entries()]
      .map(([dev, [rx, tx]]) => [dev, rx - (a.get(dev)?.[0] ?? 0), tx - (a.get(dev)?.[1] ?? 0)] as const)
      .filter(([, rx, tx]) => rx || tx)
      .map(([dev, rx, tx]) => `${dev} rx ${rx} tx ${tx}`)
      .join(", ") || "none";
  console.log(
    `  retransmits ${retransmits}; provider UDP in ${pb.InDatagrams - pa.InDatagrams}, receive-buffer drops ${pb.RcvbufErrors - pa.RcvbufErrors}; consumer receive-buffer drops ${cb.RcvbufErrors - ca.RcvbufErrors}; device drops: provider ${drops(pda, deviceDrops(t, t.provider))}, consumer ${drops(cda, deviceDrops(t, t.consumers[0]))}`,
  );
  const receiver = processes.find((p) => p.cmd.startsWith(`${IPERF} -s -B ${t.internetAddress}`))?.used ?? 0;
  return { mbps, busyPerMbit: (user + nice + sys + irq + softirq) / mbps, receiverPerMbit: receiver / mbps };
}

/** A myst provider on the bench's network, announced and serving sessions (`extra`: lines added to its server config). */
async function mystProvider(
  o: { net: TestNetwork; t: Topology; broker: Broker; dir: string; key: IdentityKey; port?: number; subnet?: string; device?: string; extra?: string[] },
  stops: (() => Promise<unknown>)[],
): Promise<OpenVpnProviderService> {
  const conf = path.join(o.dir, "server.conf");
  const extra = o.extra ?? [];
  const service = new (class extends OpenVpnProviderService {
    protected async prepare(): Promise<void> {
      await super.prepare();
      if (extra.length) fs.writeFileSync(conf, fs.readFileSync(conf, "utf8").replace(/^verb 3$/m, [...extra, "verb 3"].join("\n")), { mode: 0o600 });
    }
  })({ dir: o.dir, directory: o.net.registry, publicAddress: o.t.providerAddress, netns: o.t.provider, port: o.port, subnet: o.subnet, tunDevice: o.device });
  await service.start();
  stops.push(() => service.stop());
  const dialogs = new Dialogs({ broker: o.broker, key: o.key, directory: o.net.registry });
  const announcer = new ProposalAnnouncer({
    broker: o.broker,
    key: o.key,
    proposal: () => makeProposal(o.key, { serviceType: "openvpn" }, o.net.nats.url),
    pingMs: 60_000,
  });
  const sessions = new ProviderSessions({
    dialogs,
    services: new Map([["openvpn", service]]),
    currentProposal: () => announcer.current,
    admission: () => Promise.resolve(null),
  });
  await dialogs.start();
  sessions.start();
  announcer.start();
  stops.push(async () => {
    await announcer.stop();
    await sessions.stop();
    dialogs.stop();
  });
  return service;
}

type Variant = { name: string; run: () => Promise<Run> };

async function main(): Promise<void> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  const wanted = (process.env.VARIANTS ?? "SS,MM,MMbuf").split(",");
  const base = process.env.BASE ?? "SS";
  if (!wanted.includes(base)) wanted.unshift(base);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-ovpn-pairs-"));
  const net = await new TestNetwork().start();
  const t = await topologyUp({ tag: process.env.BENCH_TAG ?? "opairs", consumers: 1 });
  const children: ChildProcess[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  try {
    const [providerKey, bufferedKey, consumerKey] = [await net.registeredIdentity(), await net.registeredIdentity(), await net.registeredIdentity()];
    children.push(iperfServer(t.internet, t.internetAddress), iperfServer(t.provider, "0.0.0.0"));
    await new Promise((r) => setTimeout(r, 500));
    const stock = await stockTunnel(t, dir, 1);
    await stock.down();
    stops.push(() => stock.stop());
    const stockPki = await ensurePki(path.join(dir, "stock-pki"));

    const { broker, discovery } = await benchBrokerAndDiscovery(net, stops);
    const provider = await mystProvider({ net, t, broker, dir: path.join(dir, "provider"), key: providerKey }, stops);
    if (wanted.includes("MMbuf"))
      await mystProvider(
        { net, t, broker, dir: path.join(dir, "buffered"), key: bufferedKey, port: 1196, subnet: "10.7.0.0", device: "mystb0", extra: ["rcvbuf 524288"] },
        stops,
      );
    const consumerDialogs = new Dialogs({ broker, key: consumerKey, directory: net.registry, subject: "myst.dialog.bench-pairs-consumer" });
    await consumerDialogs.start();
    stops.push(async () => consumerDialogs.stop());
    const sessions = new ConsumerSessions(consumerDialogs);
    const client = new DiscoveryClient(discovery.url, (id) => net.registry.publicKeyOf(id));
    const consumer = new OpenVpnConsumerService({ key: consumerKey, runDir: path.join(dir, "consumer"), netns: t.consumers[0] });
    for (const key of wanted.includes("MMbuf") ? [providerKey, bufferedKey] : [providerKey])
      for (let i = 0; i < 100 && !(await client.get(key.address, "openvpn")); i++) await new Promise((r) => setTimeout(r, 100));

    /** A client of the stock pair's config to `port` (`extra` in place of its `verb 1`), once it is up. */
    const stockClient = async (port: number, user: string, pass: string, extra: string[] = []) => {
      const pki = port === provider.listenPort.port ? await ensurePki(path.join(dir, "provider", "pki")) : stockPki;
      const auth = path.join(dir, `client-${port}.auth`);
      fs.writeFileSync(auth, `${user}\n${pass}\n`, { mode: 0o600 });
      const file = path.join(dir, `client-${port}.conf`);
      const config = fs
        .readFileSync(path.join(dir, "stock-client.conf"), "utf8")
        .replace(/^remote .*$/m, `remote ${t.providerAddress} ${port}`)
        .replace(/^auth-user-pass .*$/m, `auth-user-pass ${auth}`)
        .replace(/^verb 1$/m, extra.length ? extra.join("\n").replace("SOCKET", `${file}.sock`) : "verb 1")
        .replace(/<ca>[\s\S]*<\/ca>/, `<ca>\n${pki.ca.trim()}\n</ca>`)
        .replace(/<tls-crypt>[\s\S]*<\/tls-crypt>/, `<tls-crypt>\n${pki.tlsCrypt.trim()}\n</tls-crypt>`);
      fs.writeFileSync(file, config);
      const c = spawn("/usr/sbin/ip", ["netns", "exec", t.consumers[0], "/usr/sbin/openvpn", "--config", file], { stdio: ["ignore", "pipe", "ignore"] });
      await new Promise<void>((resolve, reject) => {
        let out = "";
        const timer = setTimeout(() => reject(new Error(`the client to port ${port} did not come up: ${out.slice(-400)}`)), 20_000);
        c.stdout!.on("data", (d) => {
          out += d;
          if (out.includes("Initialization Sequence Completed")) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      return c;
    };
    /** myst's consumer, given a config by hand for a server of the stock pair's PKI on `port`. */
    const mystClient = (port: number) =>
      consumer.connect({
        id: crypto.randomBytes(16).toString("hex"),
        provider: providerKey.address,
        serviceConfig: { remote: t.providerAddress, port, protocol: "udp", cipher: "AES-256-GCM", ca: stockPki.ca, tlsCrypt: stockPki.tlsCrypt },
      });
    const session = async (name: string, key: IdentityKey, blocking = true) => {
      const s = await sessions.connect({ proposal: (await client.get(key.address, "openvpn"))!.signed, service: consumer });
      try {
        return await measured(t, name, seconds, blocking);
      } finally {
        await s.destroy();
      }
    };

    const all: Variant[] = [
      {
        name: "SS",
        run: async () => {
          await stock.up();
          try {
            return await measured(t, "SS the bench's stock pair", seconds);
          } finally {
            await stock.down();
          }
        },
      },
      { name: "MM", run: () => session("MM a myst session", providerKey) },
      { name: "MMa", run: () => session("MMa a myst session, the node not blocked", providerKey, false) },
      { name: "MMbuf", run: () => session("MMbuf a myst session, the provider with rcvbuf 524288", bufferedKey) },
      {
        name: "SM",
        run: async () => {
          const id = crypto.randomBytes(16).toString("hex");
          await provider.openSession({ id, consumer: consumerKey.address });
          const c = await stockClient(provider.listenPort.port, id, Buffer.from(consumerKey.signProtocol(authMessage(id))).toString("base64"));
          try {
            return await measured(t, "SM the stock client → myst's provider", seconds);
          } finally {
            await stopChild(c);
            await provider.closeSession(id, "measured");
          }
        },
      },
      {
        name: "MS",
        run: async () => {
          const tunnel = await mystClient(1195);
          try {
            return await measured(t, "MS myst's consumer → the stock server", seconds);
          } finally {
            await tunnel.stop();
          }
        },
      },
    ];

    // The stock server plus myst's provider differences, one at a time, each on a port, device and subnet of its own.
    const mystServerOptions = [
      "keepalive 1 3",
      "persist-key",
      "persist-tun",
      "explicit-exit-notify 1",
      'push "redirect-gateway def1"',
      'push "dhcp-option DNS 10.8.0.1"',
      "verb 3",
    ];
    type ServerDifferences = { extra?: string[]; management?: boolean; piped?: boolean; firewall?: boolean };
    const servers: [string, ServerDifferences][] = [
      ["Sbuf", { extra: ["keepalive 10 60", "verb 1", "rcvbuf 524288"] }],
      ["Smgmt", { management: true }],
      ["Sopts", { extra: mystServerOptions }],
      ["Sfw", { firewall: true }],
      ["Spipe", { piped: true, extra: ["keepalive 10 60", "verb 3"] }],
      ["Sall", { management: true, piped: true, firewall: true, extra: [...mystServerOptions, "rcvbuf 524288"] }],
    ];
    const clients: [string, string[]][] = [
      ["Cbuf", ["verb 1", "rcvbuf 2097152"]],
      ["Cmgmt", ["verb 1", "management SOCKET unix"]],
      ["Copts", ["tls-version-min 1.2", "redirect-gateway def1", "auth-retry none", "explicit-exit-notify 1", "persist-tun", "connect-retry 1 2", "verb 3"]],
      [
        "Call",
        [
          "tls-version-min 1.2",
          "redirect-gateway def1",
          "management SOCKET unix",
          "auth-retry none",
          "explicit-exit-notify 1",
          "persist-tun",
          "connect-retry 1 2",
          "connect-retry-max 5",
          "rcvbuf 2097152",
          "verb 3",
        ],
      ],
    ];
    const needsSall = wanted.some((w) => w === "MSall" || w.startsWith("C"));
    let serverPorts = 0;
    for (const [name, o] of servers) {
      if (!wanted.includes(name) && !(name === "Sall" && needsSall)) continue;
      const i = serverPorts++;
      const [port, subnet, dev, socket] = [1200 + i, `10.${40 + i}.0.0`, `sv${t.tag}${i}`.slice(0, 15), path.join(dir, `server-${i}.sock`)];
      const lines = stockServerLines({ pkiDir: stockPki.dir, cert: stockPki.cert, key: stockPki.key, dev, port, subnet }).filter(
        (l) => !(o.management && /^(script-security|auth-user-pass-verify)/.test(l)),
      );
      const file = path.join(dir, `server-${i}.conf`);
      const management = o.management ? [`management ${socket} unix`, "management-client-auth"] : [];
      fs.writeFileSync(file, [...lines, ...management, ...(o.extra ?? ["keepalive 10 60", "verb 1"]), ""].join("\n"));
      if (o.firewall) {
        const firewall = new TunnelFirewall({ netns: t.provider, subnet: `${subnet}/24`, tunDevice: dev, dnsAddress: subnet.replace(/0$/, "1") });
        await firewall.apply();
        stops.push(() => firewall.remove());
      } else t.exec(t.provider, ["/usr/sbin/iptables", "-t", "nat", "-A", "POSTROUTING", "-s", `${subnet}/24`, "-o", "eth0", "-j", "MASQUERADE"]);
      const child = spawn("/usr/sbin/ip", ["netns", "exec", t.provider, "/usr/sbin/openvpn", "--config", file], {
        stdio: o.piped ? ["ignore", "pipe", "pipe"] : "ignore",
      });
      // Read as the provider's are (whole lines kept), by this node, which iperf3 blocks as the bench's.
      child.stdout?.on("data", () => undefined);
      child.stderr?.on("data", () => undefined);
      children.push(child);
      await new Promise((r) => setTimeout(r, 300));
      if (o.management) {
        // As the provider answers a client: a pending-auth notice and the authorization in one write.
        const m = new ManagementClient();
        await m.connect(socket);
        m.on("client", (b) => {
          if (b.kind === "CONNECT")
            void m.commands([`client-pending-auth ${b.cid} ${b.kid} bench:ok 60`, `client-auth-nt ${b.cid} ${b.kid}`]).catch(() => undefined);
          else if (b.kind === "REAUTH") void m.command(`client-auth-nt ${b.cid} ${b.kid}`).catch(() => undefined);
        });
        stops.push(async () => m.close());
      }
      const server = async (label: string, extra: string[] = []) => {
        const c = await stockClient(port, "user", "pass", extra);
        try {
          return await measured(t, label, seconds);
        } finally {
          await stopChild(c);
        }
      };
      all.push({ name, run: () => server(`${name} the stock client → the stock server with ${JSON.stringify(o)}`) });
      if (name !== "Sall") continue;
      all.push({
        name: "MSall",
        run: async () => {
          const tunnel = await mystClient(port);
          try {
            return await measured(t, "MSall myst's consumer → Sall", seconds);
          } finally {
            await tunnel.stop();
          }
        },
      });
      for (const [cname, extra] of clients)
        all.push({ name: cname, run: () => server(`${cname} the stock client with ${JSON.stringify(extra)} → Sall`, extra) });
    }

    const unknown = wanted.filter((w) => !all.some((v) => v.name === w));
    if (unknown.length) throw new Error(`unknown variants: ${unknown.join(", ")}`);
    const variants = all.filter((v) => wanted.includes(v.name));
    const runs: Record<string, Run[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
    const ratios: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
    const rest = variants.filter((v) => v.name !== base);
    for (let r = 0; r < rounds; r++) {
      const baseline = await variants.find((v) => v.name === base)!.run();
      runs[base].push(baseline);
      const order = rest.map((_, i) => rest[(i + r) % rest.length]);
      for (const v of order) {
        const run = await v.run();
        runs[v.name].push(run);
        ratios[v.name].push(run.mbps / baseline.mbps);
      }
      console.log(
        `round ${r + 1}: ${base} ${baseline.mbps.toFixed(0)}; ${order.map((v) => `${v.name} ${runs[v.name].at(-1)!.mbps.toFixed(0)} (×${ratios[v.name].at(-1)!.toFixed(3)})`).join("; ")}`,
      );
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const median = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    };
    console.log(`\n| variant | Mbit/s, mean of ${rounds} | / ${base}: median of the rounds (mean) | rounds | CPU per Mbit/s: machine busy / iperf3 receiver |`);
    console.log("|---|---|---|---|---|");
    for (const v of variants) {
      const rs = runs[v.name];
      const own =
        v.name === base
          ? ["1", "–"]
          : [`${round(median(ratios[v.name]), 3)} (${round(mean(ratios[v.name]), 3)})`, ratios[v.name].map((x) => x.toFixed(2)).join(" ")];
      console.log(
        `| ${v.name} | ${round(mean(rs.map((x) => x.mbps)), 1)} | ${own[0]} | ${own[1]} | ${mean(rs.map((x) => x.busyPerMbit)).toFixed(4)} / ${mean(rs.map((x) => x.receiverPerMbit)).toFixed(4)} |`,
      );
    }
    console.log(`load ${loadLine()}`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    for (const c of children) await stopChild(c);
    await t.down();
    await net.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

runScript(main);
