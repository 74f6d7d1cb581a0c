// The baselines of the tunnel benchmark: stock OpenVPN and wireguard-go pairs set up by hand.
import { curl } from "./tunnel-measure";
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { generateKeyPair } from "../../node/services/wireguard/keys";
import { ensurePki } from "../../node/services/openvpn/pki";
import { stopChild } from "../lib/local-chain";
import type { Topology } from "../lib/topology";
import { summarize } from "./stats";

/** A stock pair whose client side can be brought up and down again, for throughput runs alternated with myst's. */
export interface StockPair {
  /** The client side up (the tunnel carries the internet host's subnet). */
  up(): Promise<void>;
  /** The client side down (nothing of it routes the internet host's subnet). */
  down(): Promise<void>;
  /** Both sides gone. */
  stop(): Promise<void>;
}

/** The stock OpenVPN server's options but its keepalive and verbosity (shared with scripts/bench/openvpn-buffer.ts). */
export function stockServerLines(o: { pkiDir: string; cert: string; key: string; dev: string; port: number; subnet: string }): string[] {
  return [
    "mode server",
    "tls-server",
    `dev ${o.dev}`,
    "dev-type tun",
    "proto udp",
    `port ${o.port}`,
    "topology subnet",
    `server ${o.subnet} 255.255.255.0`,
    `ca ${o.pkiDir}/ca.crt`,
    `cert ${o.cert}`,
    `key ${o.key}`,
    "dh none",
    `tls-crypt ${o.pkiDir}/tls-crypt.key`,
    "tls-version-min 1.2",
    "data-ciphers AES-256-GCM",
    "verify-client-cert none",
    "script-security 2",
    "auth-user-pass-verify /usr/bin/true via-file",
    "username-as-common-name",
  ];
}

/**
 * A hand-configured stock OpenVPN server + client, same cipher, certificate-less like ours; the
 * client started `connects` times in a block: `upMs` is the p50 from its start to "Initialization Sequence
 * Completed" (the first start, which the server's first client pays, included). The server stays up; `up` starts
 * a client again (for the throughput runs), `down` stops it; `start` times one more start and stops the client again
 * (its process exited before it resolves), for starts alternated with myst's connects (the tunnel bench).
 */
export async function stockTunnel(
  t: Topology,
  dir: string,
  connects: number,
): Promise<StockPair & { upMs: number; samples: number[]; start(): Promise<number> }> {
  const pki = await ensurePki(path.join(dir, "stock-pki"));
  const server = path.join(dir, "stock-server.conf");
  fs.writeFileSync(
    server,
    [
      ...stockServerLines({ pkiDir: pki.dir, cert: pki.cert, key: pki.key, dev: "stock0", port: 1195, subnet: "10.9.0.0" }),
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
  /** One client: started, up ("Initialization Sequence Completed" on its output), in how many ms. */
  const connect = async () => {
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
    return { c, ms: Date.now() - started };
  };
  // As many starts as myst's connects are timed (the first one included): one sample is noise on a shared machine.
  const samples: number[] = [];
  let last = await connect();
  samples.push(last.ms);
  for (let i = 1; i < connects; i++) {
    await stopChild(last.c);
    last = await connect();
    samples.push(last.ms);
  }
  let running: ChildProcess | undefined = last.c;
  const down = async () => {
    if (running) await stopChild(running);
    running = undefined;
  };
  return {
    upMs: summarize(samples).p50,
    samples,
    up: async () => {
      await down();
      running = (await connect()).c;
    },
    start: async () => {
      await down();
      const { c, ms } = await connect();
      await stopChild(c);
      return ms;
    },
    down,
    stop: async () => {
      await down();
      await stopChild(s);
    },
  };
}

/**
 * A hand-configured stock wireguard-go pair: Debian's wireguard-go on both ends, set up with `wg` and
 * `ip` as wg-quick would, the same MTU as myst's (1420), nothing else (the sockets keep the OS's
 * default receive buffer). The consumer routes only the internet host's subnet into it.
 */
export async function stockWireGuard(t: Topology): Promise<StockPair & { upMs: number }> {
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
  // Down: the internet host's subnet no longer routed into the device (its peer and keys stay, idle).
  const route = (verb: "add" | "del") => t.exec(t.consumers[0], ["/usr/sbin/ip", "route", verb, "198.18.2.0/24", "dev", cdev]);
  let routed = true;
  return {
    upMs,
    up: async () => {
      if (!routed) route("add");
      routed = true;
    },
    down: async () => {
      if (routed) route("del");
      routed = false;
    },
    stop: async () => {
      await stopChild(c);
      await stopChild(s);
    },
  };
}
