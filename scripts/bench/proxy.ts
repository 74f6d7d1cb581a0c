// The proxy benchmark (`npm run bench -- proxy`, bench/proxy.md): the proxy service's two ends in the test
// network's namespaces (proxy-ends.ts), curl through them against curl straight to the same host, and the first
// byte of a new proxy connection against myst's WireGuard tunnel (tunnel-myst.ts) in the same run.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { stopChild } from "../lib/local-chain";
import { missingE2EPrerequisites } from "../lib/prereqs";
import { TestNetwork } from "../lib/test-network";
import { topologyUp, type Topology } from "../lib/topology";
import { round, summarize, writeResults } from "./stats";
import { checkSpliced, download, interleaved, spliceRelay } from "./proxy-floor";
import { CURL, IPERF, iperfServer } from "./tunnel-measure";
import { benchMyst, mystWireGuard } from "./tunnel-myst";

const MB = 1e6;
/** The shaped path's rate (Mbit/s) on the internet host's link: a real path's limit instead of the CPU's (this kernel has htb, not netem or tbf: no added delay). */
const PATH_MBIT = Number(process.env.BENCH_PATH_MBIT ?? 1000);

/** Shapes what the internet host sends (both the direct download and the provider's fetch cross it) to `mbit` Mbit/s; none: unshaped. */
function shapeInternetLink(t: Topology, mbit?: number): void {
  const tc = (...args: string[]) => {
    const r = spawnSync("/usr/sbin/ip", ["netns", "exec", t.internet, "/usr/sbin/tc", ...args], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`tc ${args.join(" ")} on the internet host's link: ${r.stderr}`);
  };
  if (mbit === undefined) return tc("qdisc", "del", "dev", "eth0", "root");
  tc("qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10", "r2q", "1000");
  tc("class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb", "rate", `${mbit}mbit`, "ceil", `${mbit}mbit`);
}

/** A line of JSON from a child's stdout. */
function firstLine(child: ChildProcess, what: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    child.stdout!.on("data", (d) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)));
    });
    child.once("exit", (code) => reject(new Error(`${what} exited ${code}: ${err}`)));
  });
}

function end(netns: string, args: string[]): ChildProcess {
  return spawn(
    "/usr/sbin/ip",
    ["netns", "exec", netns, process.execPath, "-r", "ts-node/register/transpile-only", path.join(__dirname, "proxy-ends.ts"), ...args],
    { stdio: ["pipe", "pipe", "pipe"], cwd: path.resolve(__dirname, "..", "..") },
  );
}

/**
 * (1) Download throughput from the internet host in the consumer's namespace, one stream and 16 at
 * once: straight (the consumer's own route) and through the proxy service (consumer → the
 * provider behind its NAT gateway → the internet host), each with curl, in one run; BENCH_RUNS
 * repetitions each, the median kept. One stream is also measured through two plain relays at the
 * proxy's two ends (Node's and splice(2)'s: the floor of a two-ended relay here), interleaved with
 * the straight download and the proxy, each path with its CPU per byte (proxy-floor.ts). (2) A new proxy connection to its first byte (TLS 1.3 +
 * HTTP/2 to the provider, the local port, a request through it) over BENCH_CONNECTS connections,
 * against myst's WireGuard tunnel phase + first byte measured in the same run by the tunnel
 * benchmark's code. Session negotiation is the same dialog for both and is left out of both.
 */
export async function benchProxy(): Promise<void> {
  const missing = missingE2EPrerequisites();
  if (!fs.existsSync(CURL)) missing.push("curl");
  if (!fs.existsSync(IPERF)) missing.push("iperf3");
  if (!["/usr/sbin", "/usr/bin", "/sbin", "/bin"].some((dir) => fs.existsSync(`${dir}/python3`))) missing.push("python3 (the splice relays)");
  if (missing.length) throw new Error(`the proxy benchmark needs: ${missing.join(", ")}`);
  const connects = Number(process.env.BENCH_CONNECTS ?? 12);
  const runs = Number(process.env.BENCH_RUNS ?? 3);
  const singleBytes = Number(process.env.BENCH_BYTES ?? 200 * MB);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-bench-proxy-"));
  const topology = await topologyUp({ tag: process.env.BENCH_TAG ?? "bproxy", consumers: 1 });
  const children: ChildProcess[] = [];
  let net: TestNetwork | undefined;
  try {
    console.log("proxy service in the provider's namespace…");
    const provider = end(topology.provider, ["provider", path.join(dir, "provider"), topology.providerAddress]);
    children.push(provider);
    const config = await firstLine(provider, "the proxy provider");
    console.log(`${connects} new proxy connections to their first byte…`);
    const consumer = end(topology.consumers[0], [
      "consumer",
      Buffer.from(JSON.stringify(config)).toString("base64"),
      String(connects),
      `${topology.internetUrl}?bytes=1`,
    ]);
    children.push(consumer);
    const { firstByteMs } = (await firstLine(consumer, "the proxy consumer")) as { firstByteMs: number[] };

    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const measure = (bytes: number, count: number, proxy?: string, url?: string) =>
      median(Array.from({ length: runs }, () => download(topology, bytes, count, proxy, url)));
    // The floor of any proxy with a process at each end: two plain TCP relays (no TLS, no HTTP/2) where
    // the proxy's ends are, the consumer's relay to the provider's and it to the internet host. Node's
    // (pipe(): each byte read into the process and written out) and splice(2)'s (no copy through user space).
    const internet = new URL(topology.internetUrl);
    const relays = [
      end(topology.provider, ["relay", "8444", internet.hostname, internet.port]),
      end(topology.consumers[0], ["relay", "1081", topology.providerAddress, "8444"]),
    ];
    children.push(...relays);
    for (const r of relays) await firstLine(r, "a plain relay");
    const spliceRelays = [
      spliceRelay(topology.provider, 8445, internet.hostname, Number(internet.port)),
      spliceRelay(topology.consumers[0], 1082, topology.providerAddress, 8445),
    ];
    children.push(...spliceRelays.map((r) => r.child));
    const pipeBytes = ((await spliceRelays[0].ready) as { pipeBytes: number }).pipeBytes;
    await spliceRelays[1].ready;
    // What curl received through both splice relays, and through the provider's alone (one hop: the cost of the second).
    const [spliced, splicedOne] = [{ bytes: 0 }, { bytes: 0 }];

    console.log("one stream, interleaved: straight, the two relays, the proxy (SOCKS5, HTTP CONNECT), each with its CPU per byte…");
    const one = (proxy?: string, url?: string, received?: { bytes: number }) => () => download(topology, singleBytes, 1, proxy, url, received);
    const proxyPids = [provider.pid!, consumer.pid!];
    const single = interleaved(
      {
        direct: { pids: [], bytes: singleBytes, run: one() },
        splice: { pids: spliceRelays.map((r) => r.child.pid!), bytes: singleBytes, run: one(undefined, "http://127.0.0.1:1082/", spliced) },
        spliceOne: { pids: [spliceRelays[0].child.pid!], bytes: singleBytes, run: one(undefined, `http://${topology.providerAddress}:8445/`, splicedOne) },
        relay: { pids: relays.map((r) => r.pid!), bytes: singleBytes, run: one(undefined, "http://127.0.0.1:1081/") },
        socks: { pids: proxyPids, bytes: singleBytes, run: one("socks5h://127.0.0.1:1080") },
        http: { pids: proxyPids, bytes: singleBytes, run: one("http://127.0.0.1:1080") },
      },
      runs,
    );
    // Every byte curl received through the splice relays is one each of them moved (no more, no fewer).
    await checkSpliced(spliceRelays[0], 2 * runs, spliced.bytes + splicedOne.bytes, "the splice relay at the provider");
    await checkSpliced(spliceRelays[1], runs, spliced.bytes, "the splice relay at the consumer");
    const [direct1, splice1, relay1, proxy1, http1] = [single.direct, single.splice, single.relay, single.socks, single.http].map((p) => p.mbps);
    console.log("16 streams, straight and through the proxy…");
    const direct16 = measure(singleBytes / 8, 16);
    const proxy16 = measure(singleBytes / 8, 16, "socks5h://127.0.0.1:1080");
    const [providerNsPerByte, consumerNsPerByte] = single.socks.processes;

    console.log(`the same on a path shaped to ${PATH_MBIT} Mbit/s…`);
    shapeInternetLink(topology, PATH_MBIT);
    const shapedBytes = Math.min(singleBytes, (PATH_MBIT * MB) / 8) * 2;
    const shapedDirect1 = measure(shapedBytes, 1);
    const shapedProxy1 = measure(shapedBytes, 1, "socks5h://127.0.0.1:1080");
    const shapedDirect16 = measure(shapedBytes / 8, 16);
    const shapedProxy16 = measure(shapedBytes / 8, 16, "socks5h://127.0.0.1:1080");
    shapeInternetLink(topology);

    console.log("myst WireGuard, the same first byte…");
    net = await new TestNetwork().start();
    const providerKey = await net.registeredIdentity();
    const consumerKey = await net.registeredIdentity();
    children.push(iperfServer(topology.internet, topology.internetAddress));
    const wireguard = await benchMyst(mystWireGuard(topology), { net, topology, dir, providerKey, consumerKey, seconds: 3, connects });
    const proxyFirst = summarize(firstByteMs);
    // WireGuard's tunnel phase and its first byte after confirm (curl's own start-up taken off), p50 of each.
    const wgFirst = round(wireguard.phases.tunnel.p50 + wireguard.phases.firstByte.p50, 1);
    const ratio = {
      oneStreamVsDirect: round(proxy1 / direct1, 3),
      relayOneStreamVsDirect: round(relay1 / direct1, 3),
      spliceOneStreamVsDirect: round(splice1 / direct1, 3),
      oneSpliceRelayVsDirect: round(single.spliceOne.mbps / direct1, 3),
      oneStreamVsRelay: round(proxy1 / relay1, 3),
      oneStreamVsSplice: round(proxy1 / splice1, 3),
      sixteenStreamsVsDirect: round(proxy16 / direct16, 3),
      httpConnectOneStreamVsDirect: round(http1 / direct1, 3),
      firstByteVsWireguard: round(proxyFirst.p50 / wgFirst, 2),
      shapedOneStreamVsDirect: round(shapedProxy1 / shapedDirect1, 3),
      shapedSixteenStreamsVsDirect: round(shapedProxy16 / shapedDirect16, 3),
    };
    writeResults(
      "proxy",
      {
        throughputMbps: {
          direct1: round(direct1, 1),
          proxySocks1: round(proxy1, 1),
          proxyHttp1: round(http1, 1),
          direct16: round(direct16, 1),
          proxySocks16: round(proxy16, 1),
          plainRelays1: round(relay1, 1),
          spliceRelays1: round(splice1, 1),
          oneSpliceRelay1: single.spliceOne.mbps,
        },
        shapedPath: {
          mbit: PATH_MBIT,
          direct1: round(shapedDirect1, 1),
          proxySocks1: round(shapedProxy1, 1),
          direct16: round(shapedDirect16, 1),
          proxySocks16: round(shapedProxy16, 1),
        },
        cpuNsPerByte: {
          provider: providerNsPerByte,
          consumer: consumerNsPerByte,
          providerHttpConnect: single.http.processes[0],
          consumerHttpConnect: single.http.processes[1],
          relayAtProvider: single.relay.processes[0],
          relayAtConsumer: single.relay.processes[1],
          spliceRelayAtProvider: single.splice.processes[0],
          spliceRelayAtConsumer: single.splice.processes[1],
          machine: {
            direct: single.direct.machine,
            spliceRelays: single.splice.machine,
            oneSpliceRelay: single.spliceOne.machine,
            plainRelays: single.relay.machine,
            proxy: single.socks.machine,
            proxyHttpConnect: single.http.machine,
          },
        },
        coresBusy: Object.fromEntries(Object.entries(single).map(([name, p]) => [name, p.cores])),
        spliceRelays: { pipeBytes, bytesChecked: spliced.bytes + splicedOne.bytes },
        ratio,
        firstByteMs: { proxyNewConnection: proxyFirst, wireguardTunnelPhaseP50: wireguard.phases.tunnel, wireguardFirstBytePhase: wireguard.phases.firstByte },
        wireguardMbps: round(wireguard.throughput.myst[0], 1),
        runs,
        bytes: { single: singleBytes, parallelEach: singleBytes / 8 },
        targets:
          "one stream ≥ 0.8× direct (on the shaped path: unshaped, both are CPU-bound on one host, docs/proxy.md); a new proxy connection's first byte ≤ the WireGuard tunnel's (tunnel phase + first byte)",
      },
      [
        ["measure", "value", "ratio"],
        ["download straight from the internet host, 1 stream (Mbit/s)", String(round(direct1, 1)), "1× (baseline)"],
        ["through the proxy, SOCKS5, 1 stream (Mbit/s)", String(round(proxy1, 1)), `${ratio.oneStreamVsDirect}× of direct (aim ≥ 0.8)`],
        ["through the proxy, HTTP CONNECT, 1 stream (Mbit/s)", String(round(http1, 1)), `${ratio.httpConnectOneStreamVsDirect}× of direct`],
        [
          "through two plain TCP relays at the proxy's two ends (Node, no TLS, no HTTP/2), 1 stream (Mbit/s)",
          String(round(relay1, 1)),
          `${ratio.relayOneStreamVsDirect}× of direct; the proxy ${ratio.oneStreamVsRelay}× of this`,
        ],
        [
          `through two splice(2) relays at the proxy's two ends (no copy through user space, ${pipeBytes / 1024} KiB pipes), 1 stream (Mbit/s)`,
          String(round(splice1, 1)),
          `${ratio.spliceOneStreamVsDirect}× of direct; the proxy ${ratio.oneStreamVsSplice}× of this`,
        ],
        [
          "through the provider's splice(2) relay alone (one relay, curl to the provider's address), 1 stream (Mbit/s)",
          String(single.spliceOne.mbps),
          `${ratio.oneSpliceRelayVsDirect}× of direct`,
        ],
        ["download straight, 16 streams at once (Mbit/s)", String(round(direct16, 1)), "1× (baseline)"],
        ["through the proxy, SOCKS5, 16 streams on one HTTP/2 connection (Mbit/s)", String(round(proxy16, 1)), `${ratio.sixteenStreamsVsDirect}× of direct`],
        ["CPU per byte of one stream through the proxy, provider / consumer process (ns)", `${providerNsPerByte} / ${consumerNsPerByte}`, ""],
        ["CPU per byte of one stream through the proxy, HTTP CONNECT, provider / consumer process (ns)", single.http.processes.join(" / "), ""],
        ["CPU per byte of one stream through the plain relays, at the provider / at the consumer (ns)", single.relay.processes.join(" / "), ""],
        ["CPU per byte of one stream through the splice relays, at the provider / at the consumer (ns)", single.splice.processes.join(" / "), ""],
        [
          "CPU per byte of one stream, whole machine: straight / one splice relay / splice relays / plain relays / proxy SOCKS5 / proxy HTTP CONNECT (ns)",
          [single.direct, single.spliceOne, single.splice, single.relay, single.socks, single.http].map((p) => p.machine).join(" / "),
          "",
        ],
        [
          "cores the whole machine kept busy during one stream: the same six paths",
          [single.direct, single.spliceOne, single.splice, single.relay, single.socks, single.http].map((p) => p.cores).join(" / "),
          "of 2",
        ],
        [`path shaped to ${PATH_MBIT} Mbit/s: straight, 1 stream (Mbit/s)`, String(round(shapedDirect1, 1)), "1× (baseline)"],
        [
          "shaped path: through the proxy, SOCKS5, 1 stream (Mbit/s)",
          String(round(shapedProxy1, 1)),
          `${ratio.shapedOneStreamVsDirect}× of direct (aim ≥ 0.8)`,
        ],
        ["shaped path: straight, 16 streams (Mbit/s)", String(round(shapedDirect16, 1)), "1× (baseline)"],
        [
          "shaped path: through the proxy, SOCKS5, 16 streams on one connection (Mbit/s)",
          String(round(shapedProxy16, 1)),
          `${ratio.shapedSixteenStreamsVsDirect}× of direct`,
        ],
        [
          "new proxy connection → first byte (TLS 1.3 + HTTP/2 + local port + request) (ms) p50 / p99",
          `${proxyFirst.p50} / ${proxyFirst.p99}`,
          `${ratio.firstByteVsWireguard}× of WireGuard's (aim ≤ 1)`,
        ],
        [
          "myst WireGuard: tunnel phase + first byte after confirm (ms) p50",
          `${wireguard.phases.tunnel.p50} + ${wireguard.phases.firstByte.p50} = ${wgFirst}`,
          "1× (baseline)",
        ],
        ["myst WireGuard iperf3, same run (Mbit/s), for scale", String(round(wireguard.throughput.myst[0], 1)), ""],
      ],
    );
  } finally {
    for (const c of children) {
      c.stdin?.end();
      await stopChild(c);
    }
    await topology.down();
    await net?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
