import { expect } from "chai";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { wireguardGoPidsIn } from "../support/wireguard-go";
import { DialogsPool } from "../../scripts/lib/dialogs-pool";
import { nftHasTable } from "../../node/consumer-protection/nft";
import { endNftSessions } from "../../node/consumer-protection/nft-session";
import { ConsumerProtection } from "../../node/consumer-protection/protection";
import { GUARD_TABLE } from "../../node/consumer-protection/rules";
import type { IdentityKey } from "../../node/identity/key";
import { signProposal } from "../../node/proposal/proposal";
import { WireGuardConsumerService } from "../../node/services/wireguard/consumer";
import { WireGuardProviderService } from "../../node/services/wireguard/provider";
import { SPARE_DEVICE, WireGuardSpare } from "../../node/services/wireguard/spare";
import * as handshake from "../../node/services/wireguard/handshake";
import { udpSocketsOf } from "../../node/services/wireguard/process";
import * as socketBuffer from "../../node/services/wireguard/socket-buffer";
import { RECEIVE_BUFFER } from "../../node/services/wireguard/socket-buffer";

/** What `ss -m` shows for a socket given RECEIVE_BUFFER: the kernel caps SO_RCVBUF at rmem_max (one value for all namespaces) and doubles it (review M1). */
const ENLARGED = 2 * Math.min(RECEIVE_BUFFER, Number(fs.readFileSync("/proc/sys/net/core/rmem_max", "utf8")));
import { ConsumerSessions } from "../../node/session/consumer";
import { ProviderSessions } from "../../node/session/provider";
import { requireE2E } from "../../scripts/lib/prereqs";
import { makeProposal } from "../../scripts/lib/proposals";
import { TestNetwork } from "../../scripts/lib/test-network";
import { fetchFrom, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { rejectionOf } from "../support/rejection";

/**
 * The consumer's spare WireGuard device (config `wireguardSpare`, services/wireguard/spare.ts): one
 * unconfigured wireguard-go made before any connect, taken by the next one, made again once that
 * connect is settled. A failed session leaves nothing but the one spare; stopping leaves nothing.
 */
describe("e2e: the spare WireGuard device (real wireguard-go in namespaces, NATS, registry)", function () {
  this.timeout(90_000);
  const net = new TestNetwork();
  let topology: Topology;
  let dir: string;
  let providerKey: IdentityKey;
  let provider: WireGuardProviderService;
  let providerSessions: ProviderSessions;
  let sessions: ConsumerSessions;
  let spare: WireGuardSpare;
  let service: WireGuardConsumerService;
  const pool = new DialogsPool(net);
  /** The provider's answer to the next session request: refuse it, or accept. */
  let refuse = false;
  const proposal = () => signProposal(providerKey, makeProposal(providerKey, { serviceType: "wireguard" }));

  const ip = (...args: string[]) => execFileSync("/usr/sbin/ip", args, { encoding: "utf8" });
  const c = () => topology.consumers[0];
  /** The consumer namespace's WireGuard interfaces: spares (`mws…`) and per-session ones (`mwc…`). */
  /** Every interface name this file's namespace has shown: the control sockets looked at are theirs (the directory is the host's). */
  const seen = new Set<string>();
  const devices = () => {
    const names = (ip("-n", c(), "-o", "link").match(/\bmw[sc][0-9a-f]{12}\b/g) ?? []).sort();
    for (const n of names) seen.add(n);
    return names;
  };
  const wireguardGos = () => wireguardGoPidsIn(c());
  const sockets = () =>
    fs.existsSync("/var/run/wireguard")
      ? fs
          .readdirSync("/var/run/wireguard")
          .filter((f) => seen.has(f.replace(/\.sock$/, "")))
          .sort()
      : [];
  /** What the namespace holds once the spare settled: its devices, their wireguard-go, whether each device carries an address. */
  const state = () => ({
    devices: devices(),
    processes: wireguardGos().length,
    addressed: devices().filter((d) => /\binet /.test(ip("-n", c(), "-o", "address", "show", "dev", d))),
  });
  /** The receive buffer (`ss`'s skmem rb) of each UDP socket of the wireguard-go serving `device`. */
  const receiveBuffers = (device: string | undefined) => {
    const pid = device && wireguardGos().find((p) => fs.readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0").includes(device));
    return ip("netns", "exec", c(), "ss", "-H", "-O", "-u", "-a", "-n", "-m", "-p")
      .split("\n")
      .filter((l) => pid !== undefined && l.includes(`pid=${pid},`))
      .map((l) => Number(/skmem:\(r\d+,rb(\d+)/.exec(l)?.[1]));
  };
  const oneSpare = (notThis?: string) =>
    until(
      async () => {
        const d = devices();
        return d.length === 1 && SPARE_DEVICE.test(d[0]) && d[0] !== notThis && wireguardGos().length === 1 && spare.deviceIn(c()) === d[0];
      },
      "one spare device and its wireguard-go",
      30_000,
    );

  const { dialogsFor } = pool;

  /**
   * Replaces a module's export for one case: the spare and the consumer call it through the module
   * (as the code before did), so a failure can be made where the real one cannot be forced. Undone by the result.
   */
  const replaced = <K extends string>(module: object, name: K, by: (...args: never[]) => unknown) => {
    const exports = module as Record<K, unknown>;
    const was = exports[name];
    exports[name] = by;
    return () => {
      exports[name] = was;
    };
  };
  /** A process of the consumer's namespace holding a UDP port (IPv4, any address), as another program may. */
  const holdUdpPort = async () => {
    const holder: ChildProcess = spawn(
      "/usr/sbin/ip",
      ["netns", "exec", c(), process.execPath, "-e", `const s = require("node:dgram").createSocket("udp4"); s.bind(0, () => console.log(s.address().port));`],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let port = 0;
    holder.stdout!.setEncoding("utf8").on("data", (d: string) => (port = Number(d.trim())));
    await until(() => port > 0, "the holder's port", 10_000);
    return { port, stop: () => holder.kill() };
  };
  /** The UDP ports wireguard-go for `device` (in the consumer's namespace) holds. */
  const portsOf = (device: string) => {
    const pid = wireguardGos().find((p) => fs.readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0").includes(device));
    return udpSocketsOf(Number(pid))
      .filter((s) => s.ours)
      .map((s) => s.port);
  };

  before(async function () {
    requireE2E(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-e2e-wgspare-"));
    await net.start();
    providerKey = await net.registeredIdentity();
    const consumerKey = await net.registeredIdentity();
    topology = await topologyUp({ consumers: 1 });
    provider = new WireGuardProviderService({
      dir: path.join(dir, "provider"),
      publicAddress: topology.providerAddress,
      netns: topology.provider,
      device: `mwp${topology.tag}`.slice(0, 15),
    });
    await provider.start();
    providerSessions = new ProviderSessions({
      dialogs: await dialogsFor(providerKey),
      services: new Map([["wireguard", provider]]),
      currentProposal: () => makeProposal(providerKey, { serviceType: "wireguard" }),
      admission: async () => (refuse ? { code: "CAPACITY_REACHED", message: "not now" } : null),
    });
    providerSessions.start();
    sessions = new ConsumerSessions(await dialogsFor(consumerKey, `myst.dialog.wgspare-${topology.tag}`));
    spare = new WireGuardSpare({ runDir: path.join(dir, "run"), netns: c() });
    service = new WireGuardConsumerService({ runDir: path.join(dir, "run"), netns: c(), spare });
    await spare.start();
  });

  after(async function () {
    await spare?.stop();
    await providerSessions?.stop();
    await provider?.stop();
    await pool.stop();
    endNftSessions();
    await topology?.down();
    await net.stop();
  });

  it("is made at start: one interface with no address, served by one wireguard-go, before any connect; it listens with a tunnel's receive buffer", async function () {
    await oneSpare();
    expect(state()).to.deep.equal({ devices: devices(), processes: 1, addressed: [] });
    // Enlarged when it is made (not by the connect that takes it): each of its sockets (IPv4, IPv6) at least RECEIVE_BUFFER.
    const [made] = devices();
    await until(() => receiveBuffers(made).length > 0 && receiveBuffers(made).every((rb) => rb >= ENLARGED), "the spare's enlarged sockets", 10_000);
  });

  it("is taken by the next connect (the tunnel runs on it), and a new spare is made once the connect is settled", async function () {
    await oneSpare();
    const [taken] = devices();
    const session = await sessions.connect({ proposal: proposal(), service });
    try {
      expect(fetchFrom(topology, c(), topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      await until(async () => devices().length === 2 && wireguardGos().length === 2, "the tunnel's device and a new spare", 30_000);
      const now = state();
      expect(now.devices).to.include(taken);
      expect(now.addressed, "only the taken spare carries the tunnel").to.deep.equal([taken]);
      expect(spare.deviceIn(c())).to.match(SPARE_DEVICE).and.not.equal(taken);
      // The tunnel kept the socket the spare was made with (its key set, no rebind): still the enlarged buffer, as a device made for the session gets.
      const buffers = receiveBuffers(taken);
      expect(buffers).to.not.deep.equal([]);
      expect(buffers.filter((rb) => rb < ENLARGED)).to.deep.equal([]);
    } finally {
      await session.destroy();
    }
    await oneSpare(taken);
  });

  it("a refused session (kill switch prepared meanwhile) leaves nothing but one spare: not the one it took, no table, no other device", async function () {
    await oneSpare();
    const [taken] = devices();
    const dataDir = path.join(dir, "refused");
    const protection = new ConsumerProtection({ killSwitch: true, allowLan: false, netns: c(), dataDir });
    refuse = true;
    try {
      const err = await rejectionOf(sessions.connect({ proposal: proposal(), service, protection }));
      expect(err.code).to.equal("SESSION_REFUSED");
    } finally {
      refuse = false;
    }
    await oneSpare(taken);
    expect(state()).to.deep.equal({ devices: devices(), processes: 1, addressed: [] });
    expect(await nftHasTable(GUARD_TABLE, c())).to.equal(false);
    expect(sockets()).to.deep.equal(devices().map((d) => `${d}.sock`));
  });

  it("gives a connection only a port its device listens on: a spare whose port another program holds is dropped, and the connection gets a device and port of its own (review L3)", async function () {
    await oneSpare();
    await spare.stop();
    const held = await holdUdpPort();
    // The next spare is told that port (a random one in a namespace, as `freeUdpPort` picks there, can be held too).
    const free = handshake.freeUdpPort;
    let told = false;
    const restore = replaced(handshake, "freeUdpPort", (netns: string | undefined) => {
      if (told) return free(netns);
      told = true;
      return Promise.resolve(held.port);
    });
    let data: { publicKey: string } | undefined;
    try {
      await spare.start();
      // Asked at once, as a connect that comes while the spare is being made: before, its port was
      // handed out as soon as it was chosen, and the session request named a port wireguard-go never held.
      data = await service.consumerData();
      const port = service.tunnelPortFor(data);
      expect(told, "the spare was told the held port").to.equal(true);
      expect(port).to.be.a("number").and.not.equal(held.port);
      service.prepare(data);
      const device = service.deviceFor(data.publicKey);
      expect(device, "a device of the key pair's own").to.not.match(SPARE_DEVICE);
      await until(() => portsOf(device).includes(port!), `its wireguard-go listening on ${port}`, 10_000);
    } finally {
      if (data) await service.discard(data);
      restore();
      held.stop();
    }
    // The spare that could not bind is gone; the discard made the next one.
    await oneSpare();
  });

  it("enlarges the spare's receive buffers once more when python3 found none of its sockets, which counted as success before (review L4)", async function () {
    await oneSpare();
    await spare.stop();
    const enlarge = socketBuffer.enlargeReceiveBuffers;
    let calls = 0;
    // The first run finds nothing (as one that ran before the bind, or between a rebind's close and open).
    const restore = replaced(socketBuffer, "enlargeReceiveBuffers", (pid: number) => (++calls === 1 ? Promise.resolve(0) : enlarge(pid)));
    try {
      await spare.start();
      await oneSpare();
      const [made] = devices();
      await until(() => receiveBuffers(made).length > 0 && receiveBuffers(made).every((rb) => rb >= ENLARGED), "the spare's enlarged sockets", 10_000);
      expect(calls).to.equal(2);
    } finally {
      restore();
    }
  });

  it("a connection that takes a spare whose buffers could not be enlarged enlarges them itself (review L4)", async function () {
    await oneSpare();
    await spare.stop();
    const enlarge = socketBuffer.enlargeReceiveBuffers;
    let calls = 0;
    // Both of the spare's tries fail; what comes after (the connection's, the next spare's) runs.
    const restore = replaced(socketBuffer, "enlargeReceiveBuffers", (pid: number) =>
      ++calls <= 2 ? Promise.reject(new Error("python3 failed (made by the test)")) : enlarge(pid),
    );
    try {
      await spare.start();
      await oneSpare();
      const [taken] = devices();
      await until(() => calls >= 2, "the spare's two tries", 10_000);
      expect(
        receiveBuffers(taken).filter((rb) => rb >= ENLARGED),
        "the spare left with the default buffer",
      ).to.deep.equal([]);
      const session = await sessions.connect({ proposal: proposal(), service });
      try {
        await until(
          () => receiveBuffers(taken).length > 0 && receiveBuffers(taken).every((rb) => rb >= ENLARGED),
          "the taken spare's enlarged sockets",
          10_000,
        );
      } finally {
        await session.destroy();
      }
    } finally {
      restore();
    }
    await oneSpare();
  });

  it("is removed when the daemon stops: no device, no wireguard-go, no socket, no pid file", async function () {
    await oneSpare();
    await spare.stop();
    expect({ devices: devices(), processes: wireguardGos(), sockets: sockets(), spare: spare.deviceIn(c()) }).to.deep.equal({
      devices: [],
      processes: [],
      sockets: [],
      spare: undefined,
    });
    expect(fs.readdirSync(path.join(dir, "run")).filter((f) => f.startsWith("wireguard-"))).to.deep.equal([]);
    // A connect after the stop makes its own device and leaves no spare behind.
    const session = await sessions.connect({ proposal: proposal(), service });
    await session.destroy();
    expect(devices()).to.deep.equal([]);
  });
});
