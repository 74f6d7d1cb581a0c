// The OpenVPN provider's receive buffer (`rcvbuf`), measured (docs/connect-path.md, "The provider's receive buffer"):
// `npx ts-node --transpile-only scripts/bench/openvpn-buffer.ts`, under `flock /tmp/myst-heavy.lock`.
//
// Each round (BENCH_ROUNDS, default 5): (1) one consumer's upload (iperf3, BENCH_SECONDS, default 5 s) through the stock
// pair of the tunnel bench and through a server with myst's provider options at each buffer, back to back; (2) BENCH_CONSUMERS
// (default 4) consumers uploading at once through one server with myst's options, at each buffer. The servers are myst's
// provider configuration (node/services/openvpn/provider.ts) with a plain password check in place of the management
// socket's, and the clients myst's consumer configuration (node/services/openvpn/consumer.ts) without its management
// socket: the buffer is the one thing the variants differ in. The order of the variants turns each round.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ensurePki } from "../../node/services/openvpn/pki";
import { stopChild } from "../lib/local-chain";
import { topologyUp, type Topology } from "../lib/topology";
import { IPERF } from "./tunnel-measure";
import { stockServerLines } from "./tunnel-stock";
import { loadLine, round, runScript } from "./stats";

/** A provider's receive buffer: bytes, or undefined for the OS's default. */
const BUFFERS: { name: string; rcvbuf?: number }[] = [{ name: "2 MiB", rcvbuf: 2_097_152 }, { name: "512 KiB", rcvbuf: 524_288 }, { name: "OS default" }];

interface Server {
  name: string;
  port: number;
  stock: boolean;
  child: ChildProcess;
}

function serverConfig(o: { pkiDir: string; cert: string; key: string; dev: string; port: number; subnet: string; stock: boolean; rcvbuf?: number }): string {
  const common = stockServerLines(o);
  if (o.stock) return [...common, "keepalive 10 60", "verb 1", ""].join("\n");
  return [
    ...common,
    'push "redirect-gateway def1"',
    "keepalive 1 3",
    "persist-key",
    "persist-tun",
    "explicit-exit-notify 1",
    ...(o.rcvbuf ? [`rcvbuf ${o.rcvbuf}`] : []),
    "verb 3",
    "",
  ].join("\n");
}

function clientConfig(o: { provider: string; port: number; auth: string; ca: string; tlsCrypt: string; stock: boolean }): string {
  const common = [
    "client",
    "dev tun",
    "proto udp",
    `remote ${o.provider} ${o.port}`,
    "nobind",
    "remote-cert-tls server",
    "data-ciphers AES-256-GCM",
    `auth-user-pass ${o.auth}`,
  ];
  const tail = ["<ca>", o.ca.trim(), "</ca>", "<tls-crypt>", o.tlsCrypt.trim(), "</tls-crypt>", ""];
  if (o.stock) return [...common, 'pull-filter ignore "redirect-gateway"', "route 198.18.2.0 255.255.255.0", "verb 1", ...tail].join("\n");
  return [
    ...common,
    "tls-version-min 1.2",
    'pull-filter ignore "redirect-gateway"',
    "redirect-gateway def1",
    "auth-retry none",
    "explicit-exit-notify 1",
    "persist-tun",
    "connect-retry 1 2",
    "connect-retry-max 5",
    "rcvbuf 2097152",
    "verb 3",
    ...tail,
  ].join("\n");
}

/** openvpn's client in `netns` with `config`, once it printed "Initialization Sequence Completed". */
async function clientUp(netns: string, config: string): Promise<ChildProcess> {
  const c = spawn("/usr/sbin/ip", ["netns", "exec", netns, "/usr/sbin/openvpn", "--config", config], { stdio: ["ignore", "pipe", "ignore"] });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`openvpn in ${netns} did not come up: ${out.slice(-300)}`)), 20_000);
    c.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("Initialization Sequence Completed")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return c;
}

/** iperf3 from `netns` to the internet host's server on `port`: Mbit/s received, and the sender's TCP retransmits. */
function upload(netns: string, to: string, port: number, seconds: number): Promise<{ mbps: number; retransmits: number }> {
  return new Promise((resolve, reject) => {
    const c = spawn("/usr/sbin/ip", ["netns", "exec", netns, IPERF, "-c", to, "-p", String(port), "-t", String(seconds), "-J"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    let out = "";
    c.stdout.on("data", (d) => (out += d));
    c.on("exit", () => {
      try {
        const r = JSON.parse(out);
        const bps = r.end?.sum_received?.bits_per_second;
        if (typeof bps !== "number") throw new Error(r.error ?? "no result");
        resolve({ mbps: bps / 1e6, retransmits: r.end?.sum_sent?.retransmits ?? 0 });
      } catch (err) {
        reject(new Error(`iperf3 from ${netns} failed: ${(err as Error).message}`));
      }
    });
  });
}

/** The provider namespace's UDP receive-buffer drops so far (/proc/net/snmp, `Udp: … RcvbufErrors`). */
function rcvbufErrors(t: Topology): number {
  const snmp = t
    .exec(t.provider, ["/usr/bin/cat", "/proc/net/snmp"])
    .split("\n")
    .filter((l) => l.startsWith("Udp:"));
  const [names, values] = snmp.map((l) => l.split(/\s+/));
  return Number(values[names.indexOf("RcvbufErrors")]);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const consumers = Number(process.env.BENCH_CONSUMERS ?? 4);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-ovpnbuf-"));
  const t = await topologyUp({ tag: process.env.BENCH_TAG ?? "obuf", consumers });
  const children: ChildProcess[] = [];
  try {
    const pki = await ensurePki(path.join(dir, "pki"));
    // One user name for each consumer, as myst's sessions have (a server ends a client whose name another one takes).
    const auth = (i: number) => {
      const file = path.join(dir, `auth-${i}`);
      if (!fs.existsSync(file)) fs.writeFileSync(file, `user-${i}\npass\n`, { mode: 0o600 });
      return file;
    };
    t.exec(t.provider, ["/usr/sbin/sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    const variants = [{ name: "stock", stock: true }, ...BUFFERS.map((b) => ({ ...b, stock: false }))];
    const servers: Server[] = variants.map((v, i) => {
      const port = 1195 + i;
      const subnet = `10.${30 + i}.0.0`;
      const config = path.join(dir, `server-${i}.conf`);
      const dev = `ob${t.tag}${i}`.slice(0, 15);
      fs.writeFileSync(
        config,
        serverConfig({ pkiDir: pki.dir, cert: pki.cert, key: pki.key, dev, port, subnet, stock: v.stock, rcvbuf: "rcvbuf" in v ? v.rcvbuf : undefined }),
      );
      t.exec(t.provider, ["/usr/sbin/iptables", "-t", "nat", "-A", "POSTROUTING", "-s", `${subnet}/24`, "-o", "eth0", "-j", "MASQUERADE"]);
      const log = fs.openSync(path.join(process.env.BENCH_LOGS ?? dir, `server-${i}.log`), "w");
      const child = spawn("/usr/sbin/ip", ["netns", "exec", t.provider, "/usr/sbin/openvpn", "--config", config], { stdio: ["ignore", log, log] });
      children.push(child);
      return { name: v.name, port, stock: v.stock, child };
    });
    for (let i = 0; i < consumers; i++)
      children.push(spawn("/usr/sbin/ip", ["netns", "exec", t.internet, IPERF, "-s", "-B", t.internetAddress, "-p", String(5301 + i)], { stdio: "ignore" }));
    await new Promise((r) => setTimeout(r, 1000));
    const clientFile = (s: Server, i: number) => {
      const file = path.join(dir, `client-${s.port}-${i}.conf`);
      if (!fs.existsSync(file))
        fs.writeFileSync(file, clientConfig({ provider: t.providerAddress, port: s.port, auth: auth(i), ca: pki.ca, tlsCrypt: pki.tlsCrypt, stock: s.stock }));
      return file;
    };
    const single: Record<string, number[]> = Object.fromEntries(servers.map((s) => [s.name, []]));
    const ratios: Record<string, number[]> = Object.fromEntries(BUFFERS.map((b) => [b.name, []]));
    const many: Record<string, { total: number[]; slowest: number[]; drops: number[]; retransmits: number[] }> = Object.fromEntries(
      BUFFERS.map((b) => [b.name, { total: [], slowest: [], drops: [], retransmits: [] }]),
    );
    const mine = servers.filter((s) => !s.stock);
    for (let r = 0; r < rounds; r++) {
      const order = mine.map((_, i) => mine[(i + r) % mine.length]);
      // One consumer: the stock pair, then each buffer, one after the other.
      const once = async (s: Server) => {
        const c = await clientUp(t.consumers[0], clientFile(s, 0));
        try {
          return (await upload(t.consumers[0], t.internetAddress, 5301, seconds)).mbps;
        } finally {
          await stopChild(c);
        }
      };
      const stock = await once(servers[0]);
      single.stock.push(stock);
      for (const s of order) {
        const mbps = await once(s);
        single[s.name].push(mbps);
        ratios[s.name].push(mbps / stock);
      }
      // Several consumers at once through one server.
      for (const s of order) {
        const cs = await Promise.all(t.consumers.map((ns, i) => clientUp(ns, clientFile(s, i))));
        try {
          const before = rcvbufErrors(t);
          const got = await Promise.all(t.consumers.map((ns, i) => upload(ns, t.internetAddress, 5301 + i, seconds)));
          const m = many[s.name];
          m.drops.push(rcvbufErrors(t) - before);
          m.total.push(got.reduce((a, g) => a + g.mbps, 0));
          m.slowest.push(Math.min(...got.map((g) => g.mbps)));
          m.retransmits.push(got.reduce((a, g) => a + g.retransmits, 0));
        } finally {
          await Promise.all(cs.map((c) => stopChild(c)));
        }
      }
      console.log(
        `round ${r + 1}: stock ${round(stock, 1)}; ${order.map((s) => `${s.name} ${round(single[s.name].at(-1)!, 1)} (×${round(ratios[s.name].at(-1)!, 3)}), ${consumers} at once ${round(many[s.name].total.at(-1)!, 1)} Mbit/s, ${many[s.name].drops.at(-1)} drops`).join("; ")}`,
      );
    }
    console.log(
      `\n| provider's rcvbuf | one consumer / stock, median of ${rounds} (rounds) | ${consumers} consumers at once: total Mbit/s, median (rounds) | slowest consumer | provider's UDP receive-buffer drops | TCP retransmits |`,
    );
    console.log("|---|---|---|---|---|---|");
    const span = (xs: number[], d: number) => `${round(Math.min(...xs), d)}–${round(Math.max(...xs), d)}`;
    for (const b of BUFFERS) {
      const m = many[b.name];
      console.log(
        `| ${b.name} | ${round(median(ratios[b.name]), 3)} (${span(ratios[b.name], 2)}) | ${round(median(m.total), 1)} (${span(m.total, 0)}) | ${round(median(m.slowest), 1)} | ${median(m.drops)} (${span(m.drops, 0)}) | ${median(m.retransmits)} (${span(m.retransmits, 0)}) |`,
      );
    }
    console.log(`stock single-consumer Mbit/s: ${single.stock.map((x) => round(x, 1)).join(", ")}; load ${loadLine()}`);
    fs.writeFileSync(
      process.env.BENCH_OUT ?? path.join(os.tmpdir(), "openvpn-buffer.json"),
      JSON.stringify({ rounds, seconds, consumers, single, ratios, many }, null, 1),
    );
  } finally {
    for (const c of children) await stopChild(c);
    await t.down();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

runScript(main);
