import { expect } from "chai";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { ControlEndpoint } from "../../node/consumer-protection/control-endpoints";
import { nftApply, nftHasTable } from "../../node/consumer-protection/nft";
import { endNftSessions } from "../../node/consumer-protection/nft-session";
import { ConsumerProtection, protectionRecordFile } from "../../node/consumer-protection/protection";
import { GUARD_TABLE } from "../../node/consumer-protection/rules";
import type { WireGuardServiceConfig } from "../../node/services/wireguard/config";
import { WireGuardConsumerService } from "../../node/services/wireguard/consumer";
import { generateKeyPair } from "../../node/services/wireguard/keys";
import { WireGuardProcess } from "../../node/services/wireguard/process";
import { connectGuarded } from "../../node/session/guarded-connect";
import type { Tunnel, TunnelEndpoint } from "../../node/session/service";
import { requireE2E } from "../../scripts/lib/prereqs";
import { tempDir } from "../../scripts/lib/tmp";

/**
 * A provider whose tunnel listens on UDP port 53 (to pass firewalls) and names that same address as
 * its resolver: the endpoint keeps a host route outside the tunnel and the kill switch lets the
 * endpoint's address·protocol·port out there, so the consumer's name lookups left beside the tunnel,
 * in clear text. Counted where they would leave: a chain of the consumer's namespace hooked after
 * the guard (priority 500) counts every UDP/53 datagram that is not WireGuard's (its first four bytes
 * are a type and three zero bytes; a DNS query's third byte is its flags, RD set) and every TCP/53
 * segment going out of its own interface. Lookups are glibc's (`getent`, UDP, then TCP with
 * `RES_OPTIONS=use-vc`) through the resolver file the protection points.
 *
 * The provider is a real wireguard-go on port 53 of 198.18.3.2, with its resolver (dnsmasq, reached
 * through the tunnel at 10.99.0.1:53) behind it; the consumer is the node's own WireGuard consumer
 * and consumer protection, brought up as a session does (plan, connectGuarded, tunnelUp).
 *
 *   consumer c: eth0 198.18.1.2 (default route via w), resolver file naming 198.18.1.1
 *   world w:    eth0 198.18.1.1 · on lo: the provider's endpoint 198.18.3.2, a relay's TURN server
 *               198.18.4.2, the node's broker 198.18.9.2 · wireguard-go mwd… on UDP 53, 10.99.0.1/24,
 *               its resolver: dnsmasq on 10.99.0.1:5353, the tunnel's port 53 forwarded to it
 */
describe("e2e: a provider's resolver at its own port-53 endpoint never gets the consumer's lookups in clear text (netns, real wireguard-go)", function () {
  this.timeout(120_000);
  const hex = crypto.randomBytes(2).toString("hex");
  const tag = `myst-rd${hex}`;
  const [c, w] = [`${tag}-c`, `${tag}-w`];
  const PROVIDER_DEVICE = `mwd${hex}`;
  const ENDPOINT = "198.18.3.2";
  const RELAY = "198.18.4.2";
  const BROKER = "198.18.9.2";
  const TUNNEL_RESOLVER = "10.99.0.1";
  const NAME = "dns53.test";
  const NAME_ANSWER = "198.18.2.2";
  const ORIGINAL_RESOLVER = "nameserver 198.18.1.1\n";
  const tmp = tempDir("myst-e2e-rd-");
  const ip = (...args: string[]) => execFileSync("/usr/sbin/ip", args, { encoding: "utf8" });
  const providerKeys = generateKeyPair();
  let provider: WireGuardProcess | undefined;
  let dnsmasq: ChildProcess | undefined;
  const resolvDir = `/etc/netns/${c}`;

  before(async function () {
    requireE2E(this);
    for (const n of [c, w]) {
      ip("netns", "add", n);
      ip("-n", n, "link", "set", "lo", "up");
    }
    const id = crypto.randomBytes(3).toString("hex");
    ip("link", "add", `mk${id}a`, "type", "veth", "peer", "name", `mk${id}b`);
    ip("link", "set", `mk${id}a`, "netns", c, "name", "eth0");
    ip("link", "set", `mk${id}b`, "netns", w, "name", "eth0");
    ip("-n", c, "addr", "add", "198.18.1.2/24", "dev", "eth0");
    ip("-n", w, "addr", "add", "198.18.1.1/24", "dev", "eth0");
    for (const n of [c, w]) ip("-n", n, "link", "set", "eth0", "up");
    for (const a of [ENDPOINT, RELAY, BROKER]) ip("-n", w, "addr", "add", `${a}/32`, "dev", "lo");
    ip("-n", c, "route", "add", "default", "via", "198.18.1.1");
    // The provider answers from its endpoint's address, as a host whose only address it is would.
    ip("-n", w, "route", "replace", "198.18.1.0/24", "dev", "eth0", "src", ENDPOINT);
    fs.mkdirSync(resolvDir, { recursive: true });
    fs.writeFileSync(`${resolvDir}/resolv.conf`, ORIGINAL_RESOLVER);

    // The provider's tunnel on UDP port 53, and its resolver behind it.
    provider = new WireGuardProcess({ device: PROVIDER_DEVICE, netns: w });
    await provider.start();
    await provider.uapi.set({ privateKey: providerKeys.privateKey, listenPort: 53 });
    ip("-n", w, "addr", "add", `${TUNNEL_RESOLVER}/24`, "dev", PROVIDER_DEVICE);
    ip("-n", w, "link", "set", PROVIDER_DEVICE, "mtu", "1420", "up");
    // wireguard-go holds every address's UDP port 53: the resolver listens on 5353, where the tunnel's lookups are sent on.
    await nftApply(
      [
        "table ip myst_rd_dnat {",
        "  chain pre { type nat hook prerouting priority dstnat; policy accept;",
        `    iifname "${PROVIDER_DEVICE}" ip daddr ${TUNNEL_RESOLVER} udp dport 53 dnat to ${TUNNEL_RESOLVER}:5353`,
        `    iifname "${PROVIDER_DEVICE}" ip daddr ${TUNNEL_RESOLVER} tcp dport 53 dnat to ${TUNNEL_RESOLVER}:5353`,
        "  }",
        "}",
        "",
      ].join("\n"),
      w,
    );
    dnsmasq = spawn(
      "/usr/sbin/ip",
      [
        "netns",
        "exec",
        w,
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        `--listen-address=${TUNNEL_RESOLVER}`,
        "--port=5353",
        `--address=/${NAME}/${NAME_ANSWER}`,
        "--user=root",
        `--pid-file=${path.join(tmp.dir, "dnsmasq.pid")}`,
      ],
      { stdio: "ignore" },
    );
    await new Promise((r) => setTimeout(r, 300));
    if (dnsmasq.exitCode !== null) throw new Error(`dnsmasq exited (${dnsmasq.exitCode})`);
  });

  after(async function () {
    if (dnsmasq?.pid && dnsmasq.exitCode === null) process.kill(dnsmasq.pid, "SIGTERM");
    await provider?.stop();
    endNftSessions();
    for (const n of [c, w]) if (fs.existsSync(`/run/netns/${n}`)) ip("netns", "del", n);
    fs.rmSync(resolvDir, { recursive: true, force: true });
    tmp.cleanup();
  });

  /** Clear-text DNS out of the consumer's own interface, after the guard: per destination, and to anywhere. */
  const WATCHED = [ENDPOINT, RELAY, BROKER];
  async function startCounting(): Promise<void> {
    const rules = [
      ...WATCHED.flatMap((a) => [
        `oifname "eth0" ip daddr ${a} udp dport 53 @th,72,24 != 0 counter comment "udp ${a}"`,
        `oifname "eth0" ip daddr ${a} tcp dport 53 counter comment "tcp ${a}"`,
      ]),
      'oifname "eth0" udp dport 53 @th,72,24 != 0 counter comment "udp anywhere"',
      'oifname "eth0" tcp dport 53 counter comment "tcp anywhere"',
      // The tunnel's own datagrams to its port-53 endpoint (WireGuard's), for the record.
      `oifname "eth0" ip daddr ${ENDPOINT} udp dport 53 @th,72,24 == 0 counter comment "wireguard ${ENDPOINT}"`,
    ];
    await nftApply(
      [
        "table inet myst_rd_count",
        "delete table inet myst_rd_count",
        "table inet myst_rd_count {",
        "  chain out { type filter hook output priority 500; policy accept;",
        ...rules.map((r) => `    ${r}`),
        "  }",
        "}",
        "",
      ].join("\n"),
      c,
    );
  }
  function counted(): Record<string, number> {
    const listed = JSON.parse(ip("netns", "exec", c, "/usr/sbin/nft", "-j", "list", "table", "inet", "myst_rd_count"));
    const found: Record<string, number> = {};
    for (const item of listed.nftables as { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[])
      if (item.rule?.comment) found[item.rule.comment] = item.rule.expr.find((e) => e.counter)?.counter?.packets ?? 0;
    return found;
  }

  /** A glibc lookup of NAME in the consumer's namespace (UDP, or TCP): the addresses it answered, or null. */
  function lookup(tcp: boolean): string[] | null {
    const r = spawnSync("/usr/sbin/ip", ["netns", "exec", c, "getent", "ahostsv4", NAME], {
      encoding: "utf8",
      env: { ...process.env, RES_OPTIONS: `${tcp ? "use-vc " : ""}timeout:1 attempts:1` },
      timeout: 15_000,
    });
    if (r.status !== 0) return null;
    return [
      ...new Set(
        r.stdout
          .split("\n")
          .filter(Boolean)
          .map((l) => l.split(/\s+/)[0]),
      ),
    ];
  }

  interface Up {
    protection: ConsumerProtection;
    tunnel: Tunnel;
    device: string;
    end(): Promise<void>;
  }

  /**
   * A session with this provider, brought up as ConsumerSessions does (plan, the kill switch armed
   * beside the tunnel, tunnelUp); on failure everything it made is undone, as there. `dataDir` says
   * where its record lives.
   */
  async function session(o: { dns: string[]; control?: ControlEndpoint[]; dataDir: string }): Promise<Up> {
    const protection = new ConsumerProtection({ killSwitch: true, allowLan: false, netns: c, dataDir: o.dataDir, control: o.control });
    const service = new WireGuardConsumerService({ runDir: path.join(o.dataDir, "run"), netns: c, connectTimeoutMs: 8000 });
    protection.prepare();
    const data = await service.consumerData();
    service.prepare(data);
    await provider!.uapi.set({ replacePeers: true, peers: [{ publicKey: data.publicKey, allowedIps: ["10.99.0.2/32"] }] });
    const serviceConfig: WireGuardServiceConfig = {
      endpoint: { address: ENDPOINT, port: 53 },
      publicKey: providerKeys.publicKey,
      clientPublicKey: data.publicKey,
      address: "10.99.0.2/32",
      dns: o.dns,
      mtu: 1420,
    };
    const target = { id: crypto.randomBytes(16).toString("hex"), provider: "0x0", serviceConfig };
    let tunnel: Tunnel | undefined;
    let device = "";
    try {
      const plan = await service.plan(target);
      device = plan.device;
      tunnel = await connectGuarded(service, target, { protection, plan });
      await protection.tunnelUp({ device: plan.device, dns: tunnel.dns ?? [], ipv6: tunnel.ipv6 ?? false });
    } catch (err) {
      await tunnel?.stop().catch(() => undefined);
      await service.discard(data);
      await protection.abandon();
      throw err;
    }
    const up = tunnel;
    return {
      protection,
      tunnel: up,
      device,
      async end() {
        await up.stop();
        await protection.lift();
      },
    };
  }

  /** What a session leaves here: the guard table, its record, a tunnel device, the resolver file. */
  const leftOver = async (dataDir: string) => ({
    table: await nftHasTable(GUARD_TABLE, c),
    record: fs.existsSync(protectionRecordFile(dataDir)),
    devices: ip("-n", c, "-o", "link").match(/\bmwc[0-9a-f]{12}\b/g) ?? [],
    resolver: fs.readFileSync(`${resolvDir}/resolv.conf`, "utf8"),
  });
  const nothing = { table: false, record: false, devices: [], resolver: ORIGINAL_RESOLVER };
  const newDataDir = () => path.join(tmp.dir, crypto.randomBytes(4).toString("hex"));

  it("a port-53 endpoint with the provider's resolver on its tunnel address: the tunnel comes up, names resolve through it (UDP and TCP), no clear-text DNS leaves", async function () {
    const dataDir = newDataDir();
    const up = await session({ dns: [TUNNEL_RESOLVER], dataDir });
    try {
      await startCounting();
      expect(lookup(false), "a UDP lookup through the tunnel").to.deep.equal([NAME_ANSWER]);
      expect(lookup(true), "a TCP lookup through the tunnel").to.deep.equal([NAME_ANSWER]);
      const n = counted();
      expect({ udp: n["udp anywhere"], tcp: n["tcp anywhere"] }, "clear-text DNS out of the consumer's own interface").to.deep.equal({ udp: 0, tcp: 0 });
    } finally {
      await up.end();
    }
    expect(await leftOver(dataDir)).to.deep.equal(nothing);
  });

  it("a provider naming its own port-53 endpoint as the resolver: the session is refused (RESOLVER_OUTSIDE_TUNNEL) and no lookup leaves in clear text", async function () {
    const dataDir = newDataDir();
    await startCounting();
    const outcome = await session({ dns: [ENDPOINT], dataDir }).catch((err: Error & { code?: string }) => err);
    // Had it come up (the code before), the lookups now go to the provider's endpoint, beside the tunnel.
    const answers = [lookup(false), lookup(true)];
    const n = counted();
    if (!(outcome instanceof Error)) await outcome.end();
    expect(
      { udp: n[`udp ${ENDPOINT}`], tcp: n[`tcp ${ENDPOINT}`] },
      `clear-text lookups to the provider's endpoint outside the tunnel (answers: ${JSON.stringify(answers)}; WireGuard datagrams there: ${n[`wireguard ${ENDPOINT}`]})`,
    ).to.deep.equal({ udp: 0, tcp: 0 });
    expect(outcome instanceof Error && outcome.code).to.equal("RESOLVER_OUTSIDE_TUNNEL");
    expect(outcome instanceof Error && outcome.message).to.match(new RegExp(`names ${ENDPOINT.replace(/\./g, "\\.")} as its resolver`));
    expect(await leftOver(dataDir)).to.deep.equal(nothing);
  });

  it("a tunnel that brings its endpoint as a resolver once up (what an OpenVPN server pushes reaches the guard at tunnelUp): no clear-text lookup (the guard refuses DNS to it outside the tunnel)", async function () {
    const dataDir = newDataDir();
    const up = await session({ dns: [TUNNEL_RESOLVER], dataDir });
    try {
      const pointed = fs.readFileSync(`${resolvDir}/resolv.conf`, "utf8");
      expect(pointed).to.include(`nameserver ${TUNNEL_RESOLVER}\n`);
      await startCounting();
      await up.protection.tunnelUp({ device: up.device, dns: [ENDPOINT], ipv6: false });
      lookup(false);
      lookup(true);
      const n = counted();
      expect({ udp: n[`udp ${ENDPOINT}`], tcp: n[`tcp ${ENDPOINT}`] }, "clear-text lookups to the provider's endpoint outside the tunnel").to.deep.equal({
        udp: 0,
        tcp: 0,
      });
    } finally {
      await up.end();
    }
    expect(await leftOver(dataDir)).to.deep.equal(nothing);
  });

  it("the guard itself: a resolver whose address is let out on port 53 outside the tunnel (a relay's TURN server admitted, a control endpoint) gets no clear-text lookup", async function () {
    const dataDir = newDataDir();
    // The node's broker on TCP port 53 (kept outside the tunnel), named by the provider as a resolver beside a relay's address.
    const control: ControlEndpoint[] = [{ address: BROKER, port: 53, protocol: "tcp", role: "broker" }];
    const up = await session({ dns: [RELAY, BROKER], control, dataDir });
    // A relay's TURN server on port 53, UDP and TCP, let through during the session (a move), with its host route outside the tunnel.
    const turn: TunnelEndpoint[] = [
      { address: RELAY, port: 53, protocol: "udp" },
      { address: RELAY, port: 53, protocol: "tcp" },
    ];
    ip("-n", c, "route", "add", `${RELAY}/32`, "via", "198.18.1.1");
    try {
      await up.protection.admit(turn);
      await startCounting();
      lookup(false);
      lookup(true);
      const n = counted();
      expect(
        { udpRelay: n[`udp ${RELAY}`], tcpRelay: n[`tcp ${RELAY}`], udpBroker: n[`udp ${BROKER}`], tcpBroker: n[`tcp ${BROKER}`] },
        "clear-text lookups outside the tunnel",
      ).to.deep.equal({ udpRelay: 0, tcpRelay: 0, udpBroker: 0, tcpBroker: 0 });
    } finally {
      await up.protection.withdraw(turn);
      ip("-n", c, "route", "del", `${RELAY}/32`);
      await up.end();
    }
    expect(await leftOver(dataDir)).to.deep.equal(nothing);
  });
});
