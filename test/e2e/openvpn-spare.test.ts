import { expect } from "chai";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DialogsPool } from "../../scripts/lib/dialogs-pool";
import type { IdentityKey } from "../../node/identity/key";
import { signProposal } from "../../node/proposal/proposal";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { OpenVpnProcess } from "../../node/services/openvpn/process";
import { OpenVpnProviderService } from "../../node/services/openvpn/provider";
import { OpenVpnSpare } from "../../node/services/openvpn/spare";
import { ConsumerSessions } from "../../node/session/consumer";
import { ProviderSessions } from "../../node/session/provider";
import { requireE2E } from "../../scripts/lib/prereqs";
import { makeProposal } from "../../scripts/lib/proposals";
import { TestNetwork } from "../../scripts/lib/test-network";
import { fetchFrom, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { rejectionOf } from "../support/rejection";
import { pidsIn } from "../support/netns-processes";

/**
 * The consumer's spare openvpn (config `openvpnSpare`, services/openvpn/spare.ts): one openvpn started before any
 * connect, waiting for its config on its FIFO, taken by the next connect, started again once that connect is
 * settled. It carries nothing until then; the provider's authorization is as strict for it; stopping leaves nothing.
 */
describe("e2e: the spare openvpn (real openvpn in namespaces, NATS, registry)", function () {
  this.timeout(90_000);
  const net = new TestNetwork();
  let topology: Topology;
  let dir: string;
  let providerKey: IdentityKey;
  let consumerKey: IdentityKey;
  let otherKey: IdentityKey;
  let provider: OpenVpnProviderService;
  let providerSessions: ProviderSessions;
  let sessions: ConsumerSessions;
  let spare: OpenVpnSpare;
  let runDir: string;
  const pool = new DialogsPool(net);
  /** The provider's answer to the next session request: refuse it, or accept. */
  let refuse = false;
  const proposal = () => signProposal(providerKey, makeProposal(providerKey, { serviceType: "openvpn" }));
  const c = (i = 0) => topology.consumers[i];

  /** The pids of the openvpn processes in a namespace. */
  const openvpnsIn = (netns: string) => pidsIn(netns, "openvpn");
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  /** The spare in consumer namespace `i` is an openvpn process (past setpriv, sh and `ip netns exec`), the only one there. */
  const oneSpare = (notThis?: number, i = 0) =>
    until(
      () => {
        const pid = spare.pidIn(c(i));
        const running = openvpnsIn(c(i));
        return pid !== undefined && pid !== notThis && running.length === 1 && running[0] === pid;
      },
      "one spare openvpn",
      30_000,
    );
  /** The pid of the openvpn a session's tunnel runs on. */
  const tunnelPid = (session: { tunnel: unknown }) => (session.tunnel as { pid?: number }).pid;
  const files = (dirPath: string) => (fs.existsSync(dirPath) ? fs.readdirSync(dirPath).sort() : []);

  before(async function () {
    requireE2E(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-e2e-ovpnspare-"));
    runDir = path.join(dir, "run");
    await net.start();
    providerKey = await net.registeredIdentity();
    consumerKey = await net.registeredIdentity();
    otherKey = await net.registeredIdentity();
    topology = await topologyUp({ consumers: 2 });
    provider = new OpenVpnProviderService({
      dir: path.join(dir, "provider"),
      directory: net.registry,
      publicAddress: topology.providerAddress,
      netns: topology.provider,
    });
    await provider.start();
    providerSessions = new ProviderSessions({
      dialogs: await pool.dialogsFor(providerKey),
      services: new Map([["openvpn", provider]]),
      currentProposal: () => makeProposal(providerKey, { serviceType: "openvpn" }),
      admission: async () => (refuse ? { code: "CAPACITY_REACHED", message: "not now" } : null),
    });
    providerSessions.start();
    sessions = new ConsumerSessions(await pool.dialogsFor(consumerKey, `myst.dialog.ovpnspare-${topology.tag}`));
    spare = new OpenVpnSpare({ runDir, netns: c() });
    await spare.start();
  });

  after(async function () {
    await spare?.stop();
    await providerSessions?.stop();
    await provider?.stop();
    await pool.stop();
    await topology?.down();
    await net.stop();
  });

  const service = (key = consumerKey) => new OpenVpnConsumerService({ key, runDir, netns: c(), spare, connectTimeoutMs: 15_000 });

  it("is started at start: one openvpn waiting on its FIFO, with no tun device, no UDP socket and no management interface", async function () {
    await oneSpare();
    expect(files(runDir).filter((f) => f.endsWith(".conf"))).to.have.length(1);
    const [fifo] = files(runDir).filter((f) => f.endsWith(".conf"));
    expect(fs.statSync(path.join(runDir, fifo)).isFIFO()).to.equal(true);
    // Nothing of a session: it has read no config yet.
    expect(
      files(runDir).filter((f) => !f.endsWith(".conf")),
      "no management socket, no credentials",
    ).to.deep.equal([]);
    expect(execFileSync("/usr/sbin/ip", ["-n", c(), "-d", "-o", "link"], { encoding: "utf8" })).to.not.match(/\btun\b/);
    expect(execFileSync("/usr/sbin/ip", ["netns", "exec", c(), "ss", "-H", "-uanp"], { encoding: "utf8" })).to.not.include('"openvpn"');
  });

  it("is taken by the next connect (the tunnel is that openvpn), and a new one is started once the connect is settled", async function () {
    await oneSpare();
    const taken = spare.pidIn(c())!;
    const session = await sessions.connect({ proposal: proposal(), service: service() });
    try {
      expect(tunnelPid(session)).to.equal(taken);
      expect(fetchFrom(topology, c(), topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      await until(() => spare.pidIn(c()) !== undefined && spare.pidIn(c()) !== taken, "the next spare", 30_000);
      expect(openvpnsIn(c()).sort()).to.deep.equal([taken, spare.pidIn(c())!].sort());
    } finally {
      await session.destroy();
    }
    expect(alive(taken)).to.equal(false);
    await oneSpare(taken);
  });

  it("refuses a wrong password and a replayed one from a spare's openvpn, as from any other", async function () {
    await oneSpare();
    const session = await sessions.connect({ proposal: proposal(), service: service() });
    try {
      // The impostor's connect takes the next spare.
      await until(() => spare.pidIn(c()) !== undefined && spare.pidIn(c()) !== tunnelPid(session), "the next spare", 30_000);
      // The session's id with a password signed by another key: the signature does not verify.
      const wrong = await rejectionOf(service(otherKey).connect({ id: session.id, provider: providerKey.address, serviceConfig: session.serviceConfig }));
      expect(wrong.code).to.equal("AUTH_REFUSED");
    } finally {
      await session.destroy();
    }
    // The right key and the right password, after the session ended: no live session.
    await oneSpare();
    const replayed = await rejectionOf(service().connect({ id: session.id, provider: providerKey.address, serviceConfig: session.serviceConfig }));
    expect(replayed.code).to.equal("AUTH_REFUSED");
    await oneSpare();
  });

  it("a refused session leaves one spare openvpn: not the one it took", async function () {
    await oneSpare();
    const taken = spare.pidIn(c())!;
    refuse = true;
    try {
      const err = await rejectionOf(sessions.connect({ proposal: proposal(), service: service() }));
      expect(err.code).to.equal("SESSION_REFUSED");
    } finally {
      refuse = false;
    }
    await oneSpare(taken);
    expect(alive(taken)).to.equal(false);
  });

  it("is stopped when a connection asks in another namespace, and the next one is started there", async function () {
    await oneSpare();
    const before = spare.pidIn(c())!;
    expect(spare.take(c(1))).to.equal(undefined);
    await until(() => !alive(before), "the spare elsewhere to stop", 10_000);
    spare.refill();
    await oneSpare(before, 1);
    expect(openvpnsIn(c())).to.deep.equal([]);
    // Back where the other cases connect.
    const there = spare.pidIn(c(1))!;
    expect(spare.take(c())).to.equal(undefined);
    await until(() => !alive(there), "the spare in the second namespace to stop", 10_000);
    spare.refill();
    await oneSpare();
  });

  it("leaves nothing once stopped: no openvpn, no FIFO", async function () {
    await oneSpare();
    const pid = spare.pidIn(c())!;
    await spare.stop();
    expect(alive(pid)).to.equal(false);
    expect(openvpnsIn(c())).to.deep.equal([]);
    expect(files(runDir).filter((f) => f.startsWith("openvpn-"))).to.deep.equal([]);
    spare.refill(); // stopped: nothing
    expect(spare.pidIn(c())).to.equal(undefined);
    await spare.start();
    await oneSpare();
  });

  it("gives its config only to the FIFO openvpn waits on: a file put in its place is refused, and nothing is written to it", async function () {
    const configFile = path.join(dir, "swapped.conf");
    const waiting = new OpenVpnProcess({ configFile, configFifo: true, viaHelper: true, managementSocket: path.join(dir, "swapped.sock"), netns: c(1) });
    await waiting.launch();
    try {
      await until(() => fs.existsSync(configFile) && openvpnsIn(c(1)).includes(waiting.pid!), "openvpn waiting on its FIFO", 15_000);
      fs.rmSync(configFile);
      fs.writeFileSync(configFile, "", { mode: 0o600 });
      // A second name for that file: what reaches it stays readable after `configure` removes the path.
      const kept = path.join(dir, "swapped.kept");
      fs.linkSync(configFile, kept);
      const err = await rejectionOf(waiting.configure("client\n# a config that must not reach a file\n"));
      expect(err.message).to.match(/not the FIFO openvpn waits on/);
      expect(fs.readFileSync(kept, "utf8")).to.equal("");
    } finally {
      await waiting.stop();
    }
  });
});
