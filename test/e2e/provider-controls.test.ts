import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Broker } from "../../node/broker/broker";
import { ProviderNode, type ProvidedService } from "../../node/daemon/provider-node";
import { DISCOVERY_SUBJECTS } from "../../node/discovery/announcements";
import { REPLICA_CREDENTIALS } from "../../scripts/lib/nats-server";
import { Dialogs } from "../../node/dialog/dialogs";
import type { IdentityKey } from "../../node/identity/key";
import { signProposal, type Proposal } from "../../node/proposal/proposal";
import { checkServiceSpec, servicePolicy } from "../../node/services/catalog";
import type { ControlsSettings } from "../../node/services/controls/settings-schema";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { ConsumerSessions } from "../../node/session/consumer";
import type { ConsumerSession } from "../../node/session/consumer-session";
import { SessionRefusedError } from "../../node/session/errors";
import { openDatabase, type Db } from "../../node/store/database";
import { fetchFrom, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { TestNetwork, providerPayments } from "../../scripts/lib/test-network";
import { requireE2E } from "../../scripts/lib/prereqs";
import { type HostedProvider, startHostedProvider } from "../../scripts/lib/provider-host";
import { CAPABILITY_BITS } from "../../node/services/capabilities";
import { rejectionOf } from "../support/rejection";

const MIB = 2 ** 20;
/** The provider service's user (each e2e file its own: files run side by side). */
const PROVIDER_UID = 64_993;

/** Whether a TCP connection to host:port from inside `netns` is accepted (and its greeting read). */
function tcpGreeting(topology: Topology, netns: string, host: string, port: number): string | null {
  const script = `const s=require("net").connect(${port},${JSON.stringify(host)});s.setTimeout(2000,()=>process.exit(4));s.once("data",d=>{process.stdout.write(String(d).trim());process.exit(0)});s.once("error",()=>process.exit(3))`;
  try {
    return topology.exec(netns, [process.execPath, "-e", script], { timeoutMs: 8000 }).trim();
  } catch {
    return null;
  }
}

/** Bytes a download from inside `netns` received before it ended or failed (null: nothing), without blocking this process. */
function downloadAsync(netns: string, url: string, timeoutMs: number): Promise<number | null> {
  const script = `let n=0;fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(${timeoutMs})}).then(async r=>{for await(const c of r.body)n+=c.length}).catch(()=>{}).finally(()=>process.stdout.write(String(n)))`;
  return new Promise((resolve) => {
    const child = spawn("/usr/sbin/ip", ["netns", "exec", netns, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.once("exit", () => resolve(out ? Number(out) : null));
  });
}

describe("e2e: provider controls — caps, access lists, schedules, egress policy, bandwidth limits (real openvpn, tc, iptables, netns)", function () {
  this.timeout(180_000);
  const net = new TestNetwork();
  let topology: Topology;
  let dir: string;
  let db: Db;
  let providerKey: IdentityKey;
  let consumerKeys: IdentityKey[];
  let consumerSessions: ConsumerSessions[] = [];
  const brokers: Broker[] = [];
  const dialogsList: Dialogs[] = [];
  const unregistered: string[] = [];
  let smtp: ChildProcess | undefined;
  /**
   * The provider's clock (schedules and day rollover in seconds): noon of today, local time, going
   * on with the real one and moved by `shiftMs`. Not the real time itself: a run that crossed local
   * midnight saw the daily cap's day roll over between the download and the restart (CI, 00:00 UTC).
   */
  let shiftMs = 0;
  const startedAt = Date.now();
  const noon = new Date(startedAt).setHours(12, 0, 0, 0);
  const clock = () => noon + (Date.now() - startedAt) + shiftMs;
  let running: { node: ProviderNode; provided: ProvidedService } | undefined;

  /**
   * The provider's OpenVPN service as an unprivileged user with only its type's capabilities, in a
   * process of its own in the provider's namespace (scripts/lib/provider-host.ts); the node (sessions,
   * controls, payments) in this process, as the daemon's is.
   */
  async function startProvider(controls: ControlsSettings, bandwidthMbps = 0, ipv6 = false): Promise<{ node: ProviderNode; provided: ProvidedService }> {
    const spec = checkServiceSpec({
      type: "openvpn",
      openvpn: { publicIp: topology.providerAddress, port: 1194, ...(ipv6 ? { ipv6: true } : {}) },
      controls,
    });
    const policy = servicePolicy(spec, silent);
    const service = await startHostedProvider({
      netns: topology.provider,
      spec,
      dir,
      uid: PROVIDER_UID,
      directory: net.registry,
      meterMs: 200,
      bandwidthMbps,
      logFile: process.env.E2E_LOG ? `${process.env.E2E_LOG}.p` : undefined,
    });
    const provided: ProvidedService = {
      service,
      policy,
      offer: { country: "DE", ipType: "residential", pricePerHour: 0n, pricePerGiB: 0n, bandwidthMbps },
    };
    const node = new ProviderNode({
      key: providerKey,
      brokerUrls: [net.nats.url],
      registry: net.registry,
      services: [provided],
      keepaliveMs: 1000,
      payments: providerPayments(net.conn, db),
      clock,
      controlsTickMs: 200,
      log: silent,
    });
    await node.start();
    running = { node, provided };
    return running;
  }

  async function stopProvider(): Promise<void> {
    if (!running) return;
    const { node, provided } = running;
    running = undefined;
    await node.stop();
    await provided.service.stop?.();
  }

  function proposalOf(p: { node: ProviderNode; provided: ProvidedService }): Proposal {
    const now = Date.now();
    return { ...p.node.proposal(p.provided), createdAt: now, expiresAt: now + 3_600_000 } as Proposal;
  }

  async function connect(i: number, p: { node: ProviderNode; provided: ProvidedService }): Promise<ConsumerSession> {
    const svc = new OpenVpnConsumerService({ key: consumerKeys[i], runDir: path.join(dir, `c${i}`), netns: topology.consumers[i] });
    return consumerSessions[i].connect({ proposal: signProposal(providerKey, proposalOf(p)), service: svc });
  }

  const silent = require("pino")(
    { level: process.env.E2E_LOG ? "debug" : "silent" },
    process.env.E2E_LOG ? require("pino").destination(process.env.E2E_LOG) : undefined,
  );

  before(async function () {
    requireE2E(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-e2e-controls-"));
    await net.start();
    providerKey = await net.registeredIdentity();
    consumerKeys = [await net.registeredIdentity(), await net.registeredIdentity()];
    topology = await topologyUp({ consumers: 2 });
    db = openDatabase(path.join(dir, "provider.db"));
    consumerSessions = await Promise.all(
      consumerKeys.map(async (key, i) => {
        const broker = new Broker({ servers: [net.nats.url] });
        await broker.start();
        brokers.push(broker);
        const dialogs = new Dialogs({ broker, key, directory: net.registry, subject: `myst.dialog.e2e-controls-c${i}` });
        await dialogs.start();
        dialogsList.push(dialogs);
        return new ConsumerSessions(dialogs);
      }),
    );
    // Withdrawals are what discovery hears: the provider's signed unregister on the broker.
    // Listening to announcements is the replicas' right (docs/security.md).
    const watcher = new Broker({ servers: [net.nats.url], credentials: REPLICA_CREDENTIALS });
    await watcher.start();
    brokers.push(watcher);
    watcher.subscribe(DISCOVERY_SUBJECTS.unregister, (data) => {
      unregistered.push(JSON.parse(JSON.parse(Buffer.from(data).toString("utf8")).unregister).serviceType);
    });
  });

  afterEach(async function () {
    await stopProvider();
    shiftMs = 0;
  });

  after(async function () {
    await stopProvider().catch(() => undefined);
    if (smtp?.pid) process.kill(smtp.pid);
    for (const d of dialogsList) d.stop();
    await Promise.all(brokers.map((b) => b.stop()));
    await topology?.down();
    await net.stop();
    db?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe("a 5 MiB daily traffic cap", function () {
    it("ends a session that downloads 8 MiB after a notice, withdraws the proposal, refuses the next session with TRAFFIC_CAP, also after a restart, and sells again the next day", async function () {
      // 4 Mbit/s per session (enforced by tc): 8 MiB takes about 17 s, the cap is reached at about 10 s.
      const controls: ControlsSettings = { trafficCap: { dailyGiB: 5 / 1024 }, noticeSeconds: 1 };
      let p = await startProvider(controls, 4);
      const session = await connect(0, p);
      const withdrawalsBefore = unregistered.length;
      // The session's own HTB class on the tunnel device, before any traffic.
      const classes = () => topology.exec(topology.provider, ["/usr/sbin/tc", "-s", "class", "show", "dev", "myst0"]);
      await until(() => /class htb 1:10 parent 1:1 .*rate 4Mbit ceil 4Mbit/.test(classes()), "the session's traffic class");
      // In a child process, not blocking this one: the provider runs here and must act during the download.
      const got = await downloadAsync(topology.consumers[0], `${topology.internetUrl}?bytes=${8 * MIB}`, 40_000);
      expect(got).to.not.equal(8 * MIB);
      expect(await session.ended).to.match(/provider ended it: the provider's daily traffic cap is reached/);
      expect(session.notice?.reason).to.match(/daily traffic cap/);
      // What the session moved went through the service's class (1:1, no service limit here).
      const sent = /class htb 1:1 root .*\n Sent (\d+) bytes/.exec(classes());
      expect(Number(sent?.[1])).to.be.greaterThan(4 * MIB);
      const status = p.node.selling()[0].controls!;
      expect(status.offered).to.equal(false);
      expect(status.withdrawnBecause).to.equal("TRAFFIC_CAP");
      expect(status.trafficCap!.daily!.usedBytes).to.be.at.least(5 * MIB);
      expect(status.trafficCap!.daily!.remainingBytes).to.equal(0);
      await until(() => unregistered.length > withdrawalsBefore, "the proposal's unregister on the broker");
      const refused = await rejectionOf(connect(1, p));
      expect(refused).to.be.instanceOf(SessionRefusedError);
      expect((refused as SessionRefusedError).refusal).to.equal("TRAFFIC_CAP");

      // A restart reads the day's traffic from the store: still capped, and it unregisters at start
      // whatever an earlier run may have left listed.
      await stopProvider();
      const beforeRestart = unregistered.length;
      p = await startProvider(controls, 4);
      expect(p.node.selling()[0].controls!.offered).to.equal(false);
      await until(() => unregistered.length > beforeRestart, "an unregister at start");
      const again = await rejectionOf(connect(1, p));
      expect((again as SessionRefusedError).refusal).to.equal("TRAFFIC_CAP");

      // The next local day the period has rolled over: offered and served again.
      shiftMs = 24 * 3600_000;
      await until(() => p.node.selling()[0].controls!.offered, "the service to be offered again");
      const next = await connect(1, p);
      expect(fetchFrom(topology, topology.consumers[1], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      await next.destroy();
    });
  });

  describe("bandwidth limits", function () {
    it("shape a session's IPv6 as well as its IPv4, in its own class for each direction", async function () {
      const p = await startProvider({}, 20, true);
      // The shaping below is set up by the service as its own user, with no capability but OpenVPN's two.
      const status = fs.readFileSync(`/proc/${(p.provided.service as HostedProvider).hostPid}/status`, "utf8");
      const declared = (1n << BigInt(CAPABILITY_BITS.CAP_NET_ADMIN)) | (1n << BigInt(CAPABILITY_BITS.CAP_NET_BIND_SERVICE));
      expect(/^Uid:\s*(\d+)/m.exec(status)![1]).to.equal(String(PROVIDER_UID));
      expect(BigInt(`0x${/^CapBnd:\s*(\S+)/m.exec(status)![1]}`)).to.equal(declared);
      const session = await connect(0, p);
      try {
        const tc = (...args: string[]) => topology.exec(topology.provider, ["/usr/sbin/tc", ...args]);
        await until(() => /class htb 1:10 parent 1:1 .*rate 20Mbit ceil 20Mbit/.test(tc("class", "show", "dev", "ifb-myst0")), "the session's upload class");
        expect(tc("filter", "show", "dev", "myst0")).to.match(/flowid 1:10/);
        expect(tc("filter", "show", "dev", "myst0", "protocol", "ipv6")).to.match(/flowid 1:10/);
        const sent = (dev: string) => Number(/class htb 1:10 .*\n Sent (\d+) bytes/.exec(tc("-s", "class", "show", "dev", dev))?.[1] ?? 0);
        const before = sent("myst0");
        expect(await downloadAsync(topology.consumers[0], `${topology.internetUrl6}?bytes=${MIB}`, 20_000)).to.equal(MIB);
        expect(sent("myst0") - before).to.be.greaterThan(MIB);
        expect(sent("ifb-myst0")).to.be.greaterThan(0);
      } finally {
        await session.destroy();
      }
    });
  });

  describe("allow and deny lists", function () {
    it("refuses a consumer the allow list leaves out with ACCESS_DENIED, serves an allowed one, and advertises the allow list", async function () {
      const p = await startProvider({ access: { allow: [consumerKeys[0].address] } });
      expect(proposalOf(p).accessPolicy).to.equal("allowlist");
      const denied = await rejectionOf(connect(1, p));
      expect((denied as SessionRefusedError).refusal).to.equal("ACCESS_DENIED");
      const allowed = await connect(0, p);
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      await allowed.destroy();
    });

    it("refuses a denied identity, and ends a running session when the deny file comes to name its consumer", async function () {
      const denyFile = path.join(dir, "deny.txt");
      fs.writeFileSync(denyFile, `# nobody yet\n${consumerKeys[1].address}\n`);
      const p = await startProvider({ access: { denyFile } });
      expect(proposalOf(p).accessPolicy).to.equal(undefined);
      const denied = await rejectionOf(connect(1, p));
      expect((denied as SessionRefusedError).refusal).to.equal("ACCESS_DENIED");
      const session = await connect(0, p);
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      fs.writeFileSync(denyFile, `${consumerKeys[1].address}\n${consumerKeys[0].address.toLowerCase()}\n`);
      expect(await session.ended).to.match(/access revoked: .* deny list/);
    });
  });

  describe("a schedule", function () {
    it("ends the running session when the window closes, withdraws the proposal, and refuses with OUTSIDE_SCHEDULE", async function () {
      // A window from now to ten minutes later (the provider's local time), then the clock moved past its close.
      const start = new Date(clock());
      const end = new Date(start.getTime() + 10 * 60_000);
      const hm = (d: Date) => `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
      const days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
      const window = `${days[start.getDay()]},${days[end.getDay()]} ${hm(start)}-${hm(end)}`;
      const p = await startProvider({ schedule: [window] });
      expect(p.node.selling()[0].controls!.schedule!.open).to.equal(true);
      const session = await connect(0, p);
      const withdrawalsBefore = unregistered.length;
      shiftMs = 11 * 60_000;
      expect(await session.ended).to.equal("provider ended it: the service's schedule closed");
      await until(() => unregistered.length > withdrawalsBefore, "the proposal's unregister on the broker");
      expect(p.node.selling()[0].controls!.withdrawnBecause).to.equal("OUTSIDE_SCHEDULE");
      const refused = await rejectionOf(connect(1, p));
      expect((refused as SessionRefusedError).refusal).to.equal("OUTSIDE_SCHEDULE");
    });
  });

  describe("the egress policy", function () {
    before(async function () {
      // A mail server on the internet host.
      const script = `require("net").createServer(s=>s.end("220 smtp.test ESMTP\\r\\n")).listen(25,${JSON.stringify(topology.internetAddress)},()=>console.log("ready"))`;
      smtp = spawn("/usr/sbin/ip", ["netns", "exec", topology.internet, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
      await new Promise<void>((resolve, reject) => {
        smtp!.stdout!.once("data", () => resolve());
        smtp!.once("exit", (code) => reject(new Error(`smtp listener exited ${code}`)));
      });
    });

    it("blocks SMTP to the internet host through the tunnel while HTTP works (the same host takes SMTP without the tunnel)", async function () {
      expect(tcpGreeting(topology, topology.consumers[0], topology.internetAddress, 25)).to.match(/^220 smtp.test/);
      const p = await startProvider({});
      const session = await connect(0, p);
      try {
        expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
        expect(tcpGreeting(topology, topology.consumers[0], topology.internetAddress, 25)).to.equal(null);
      } finally {
        await session.destroy();
      }
    });

    it("blocks the extra ports and networks it is given, and lets SMTP through when allowed", async function () {
      const p = await startProvider({ egress: { allowSmtp: true, blockPorts: [8080] } });
      const session = await connect(0, p);
      try {
        expect(tcpGreeting(topology, topology.consumers[0], topology.internetAddress, 25)).to.match(/^220 smtp.test/);
        expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl, 1500)).to.equal(null);
      } finally {
        await session.destroy();
      }
    });
  });
});
