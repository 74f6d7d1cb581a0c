import { expect } from "chai";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { IdentityKey } from "../../node/identity/key";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { OpenVpnProcess } from "../../node/services/openvpn/process";
import type { HostedProvider } from "../../scripts/lib/provider-host";
import { ConsumerSessions } from "../../node/session/consumer";
import type { SessionProtection } from "../../node/session/service";
import pino from "pino";
import type { ProviderSessions } from "../../node/session/provider";
import { signProposal } from "../../node/proposal/proposal";
import { downloadFrom, fetchFrom, resolveFrom, routesOf, type Topology } from "../../scripts/lib/topology";
import { TestNetwork } from "../../scripts/lib/test-network";
import { requireE2E } from "../../scripts/lib/prereqs";
import { makeProposal } from "../../scripts/lib/proposals";
import { rejectionOf } from "../support/rejection";
import { expectSettledAndPaidOut, startRigPayments, startHostedServiceRig, type HostedServiceRig } from "../support/hosted-service";
import { parseEther } from "ethers";
import { ConsumerPayments } from "../../node/payments/consumer-payments";
import { ConsumerPromises } from "../../node/payments/consumer-promises";
import { until } from "../../scripts/lib/until";
import { Broker } from "../../node/broker/broker";
import { ConsumerNode } from "../../node/daemon/consumer-node";
import { LocalReceiptStore } from "../../node/discovery/receipt-store";
import { DiscoveryService } from "../../node/discovery/server";
import { parseReceipt } from "../../node/quality/receipt";
import { promiseCheckOf } from "../../node/quality/score";
import { REPLICA_CREDENTIALS } from "../../scripts/lib/nats-server";
import { pidsIn } from "../support/netns-processes";

describe("e2e: OpenVPN sessions through network namespaces (real openvpn, NATS, chain)", function () {
  this.timeout(120_000);
  const net = new TestNetwork();
  let rig: HostedServiceRig;
  let topology: Topology;
  let dir: string;
  let providerKey: IdentityKey;
  let consumerKeys: IdentityKey[];
  /** The provider's service as its own user with only the capabilities openvpn declares (scripts/lib/provider-host.ts). */
  let service: HostedProvider;
  let providerSessions: ProviderSessions;

  function consumerSide(i: number) {
    const svc = new OpenVpnConsumerService({
      key: consumerKeys[i],
      runDir: path.join(dir, `c${i}`),
      netns: topology.consumers[i],
      log: process.env.E2E_LOG ? require("pino")({ level: "debug" }, require("pino").destination(process.env.E2E_LOG)) : undefined,
    });
    return { svc, sessions: rig.dialogsFor(consumerKeys[i], `myst.dialog.e2e-c${i}`).then((d) => new ConsumerSessions(d)) };
  }

  before(async function () {
    requireE2E(this);
    rig = await startHostedServiceRig(net, {
      type: "openvpn",
      settings: (t) => ({ publicIp: t.providerAddress }),
      uid: 64_991,
      dirPrefix: "myst-e2e-",
      logFile: process.env.E2E_LOG ? `${process.env.E2E_LOG}.p` : undefined,
    });
    ({ topology, dir, providerKey, consumerKeys, service, providerSessions } = rig);
  });

  after(async function () {
    await rig?.stop();
  });

  it("starts from a network shaped like the internet: the consumer reaches it with its own addresses, the provider is behind a NAT gateway", function () {
    expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.consumerAddress(0));
    expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl6)).to.equal(topology.consumerAddress6(0));
    expect(fetchFrom(topology, topology.provider, topology.internetUrl)).to.equal(topology.providerUplinkAddress);
    // The provider is not on the consumer's link: the consumer's route to it goes through the router.
    expect(topology.exec(topology.consumers[0], ["/usr/sbin/ip", "-4", "route", "get", topology.providerAddress])).to.match(/ via 198\.18\.1\.1 /);
  });

  it("gives the consumer a LAN resolver that counts its queries, and counts the consumer's packets at the internet host", function () {
    const queries = topology.lanResolverQueries();
    const packets = topology.packetsFrom(0);
    expect(resolveFrom(topology, topology.consumers[0], topology.whoamiName)).to.have.members([topology.internetAddress, topology.internetAddress6]);
    expect(topology.lanResolverQueries()).to.be.greaterThan(queries);
    expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.consumerAddress(0));
    expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl6)).to.equal(topology.consumerAddress6(0));
    const after = topology.packetsFrom(0);
    expect(after.v4).to.be.greaterThan(packets.v4);
    expect(after.v6).to.be.greaterThan(packets.v6);
    // The provider's own resolver (its upstream on the internet) knows a name for its private LAN host.
    expect(resolveFrom(topology, topology.provider, "lan.test")).to.deep.equal(["192.168.77.2"]);
  });

  it("routes a consumer's traffic out through the provider two routers away, and restores the consumer's own routes after", async function () {
    const c = consumerSide(0);
    const routesBefore = routesOf(topology, topology.consumers[0]);
    const session = await (await c.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: c.svc });
    try {
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      expect(downloadFrom(topology, topology.consumers[0], `${topology.internetUrl}?bytes=1000000`)).to.equal(1_000_000);
      // The tunnel's own packets still reach the provider by the consumer's gateway.
      expect(topology.exec(topology.consumers[0], ["/usr/sbin/ip", "-4", "route", "get", topology.providerAddress])).to.match(/ via 198\.18\.1\.1 dev eth0/);
    } finally {
      await session.destroy();
    }
    expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.consumerAddress(0));
    expect(routesOf(topology, topology.consumers[0])).to.equal(routesBefore);
  });

  it("leaves the provider's UDP receive buffer at the OS default, as stock openvpn's, and gives the consumer's 2 MiB", async function () {
    // What the kernel gives openvpn's UDP socket in `netns` (`ss -m`: rb, twice what was asked, as SO_RCVBUF reports it).
    const rb = (netns: string) => {
      const sockets = topology.exec(netns, ["/usr/bin/ss", "-H", "-uanmp"]).split(/\n(?=\S)/);
      const m = sockets.filter((s) => s.includes('"openvpn"')).map((s) => /\brb(\d+)\b/.exec(s));
      if (m.length !== 1 || !m[0]) throw new Error(`not one openvpn UDP socket in ${netns}: ${sockets.join("\n")}`);
      return Number(m[0][1]);
    };
    const sysctl = (netns: string, name: string) => Number(topology.exec(netns, ["/usr/sbin/sysctl", "-n", name]).trim());
    const c = consumerSide(0);
    const session = await (await c.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: c.svc });
    try {
      // A larger buffer at the provider queued one consumer's upload and carried 4-9% less (docs/connect-path.md).
      expect(rb(topology.provider)).to.equal(sysctl(topology.provider, "net.core.rmem_default"));
      // The consumer's download bursts are not dropped (and billed without arriving): 2 MiB, capped by rmem_max.
      expect(rb(topology.consumers[0])).to.equal(2 * Math.min(2_097_152, sysctl(topology.consumers[0], "net.core.rmem_max")));
    } finally {
      await session.destroy();
    }
  });

  it("keeps the consumer out of the provider's private LAN", async function () {
    const c = consumerSide(0);
    const session = await (await c.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: c.svc });
    try {
      expect(fetchFrom(topology, topology.provider, topology.lanUrl)).to.equal("192.168.77.1");
      expect(fetchFrom(topology, topology.consumers[0], topology.lanUrl, 1500)).to.equal(null);
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
    } finally {
      await session.destroy();
    }
  });

  it("gives a second consumer its own session at the same time, and meters each", async function () {
    const [a, b] = [consumerSide(0), consumerSide(1)];
    const [s1, s2] = await Promise.all([
      (await a.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: a.svc }),
      (await b.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: b.svc }),
    ]);
    try {
      expect(s1.id).to.not.equal(s2.id);
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      expect(fetchFrom(topology, topology.consumers[1], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      expect(downloadFrom(topology, topology.consumers[1], `${topology.internetUrl}?bytes=2000000`)).to.equal(2_000_000);
      await service.meter();
      const u1 = service.usage(s1.id)!;
      const u2 = service.usage(s2.id)!;
      expect(u2.bytesOut).to.be.greaterThan(2_000_000);
      expect(u1.bytesOut).to.be.lessThan(u2.bytesOut);
    } finally {
      await Promise.all([s1.destroy(), s2.destroy()]);
    }
  });

  it("disconnects the consumer when the provider ends the session", async function () {
    const c = consumerSide(0);
    const session = await (await c.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: c.svc });
    await providerSessions.end(session.id, "operator ended it");
    expect(await session.ended).to.equal("provider ended it: operator ended it");
    await until(() => fetchFrom(topology, topology.consumers[0], topology.internetUrl, 1000) === topology.consumerAddress(0), "the consumer's own route back");
  });

  it("cuts off a client whose session ended even if its openvpn stays up", async function () {
    const c = consumerSide(0);
    const session = await (await c.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: c.svc });
    const tunnel = session.tunnel as unknown as { process: { running: boolean } };
    // End only the provider's side of the service, as a stopped payment would: client-kill HALT.
    await service.closeSession(session.id, "payment stopped");
    await until(() => !tunnel.process.running, "the consumer's openvpn to be halted");
    await session.finish("test cleanup");
  });

  it("refuses a client with a wrong password or a replayed one", async function () {
    const c = consumerSide(0);
    const sessions = await c.sessions;
    // A real session, then its credentials used by someone else's key: the signature does not verify.
    const session = await sessions.connect({ proposal: signProposal(providerKey, rig.current), service: c.svc });
    const impostor = new OpenVpnConsumerService({
      key: consumerKeys[1],
      runDir: path.join(dir, "impostor"),
      netns: topology.consumers[1],
      connectTimeoutMs: 15_000,
    });
    const wrong = await rejectionOf(impostor.connect({ id: session.id, provider: providerKey.address, serviceConfig: session.serviceConfig }));
    expect(wrong.code).to.equal("AUTH_REFUSED");
    await session.destroy();
    // The right key and the right password, replayed after the session ended: no live session.
    const replay = new OpenVpnConsumerService({
      key: consumerKeys[0],
      runDir: path.join(dir, "replay"),
      netns: topology.consumers[0],
      connectTimeoutMs: 15_000,
    });
    const replayed = await rejectionOf(replay.connect({ id: session.id, provider: providerKey.address, serviceConfig: session.serviceConfig }));
    expect(replayed.code).to.equal("AUTH_REFUSED");
  });

  it("restarts the provider's openvpn when it is killed: a connected consumer is back within seconds, and the outage is not billed", async function () {
    const c = consumerSide(0);
    const session = await (await c.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: c.svc });
    try {
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      const before = service.pid!;
      const restarts = service.restarts.length;
      const killedAt = Date.now();
      process.kill(before, "SIGKILL");
      await until(() => service.restarts.length > restarts && service.isRunning(), "the supervisor to restart openvpn", 20_000);
      expect(service.pid).to.not.equal(before);
      // The consumer's openvpn notices the dead server (ping-restart) and connects to the new one in
      // place; its session survives. With `keepalive 10 60` this took a minute.
      await until(
        () => fetchFrom(topology, topology.consumers[0], topology.internetUrl, 1000) === topology.providerUplinkAddress,
        "traffic through the restarted server",
        // Recovery, not its speed, is what this asserts (6.1 s after the kill on a quiet machine; the CI run of
        // 2026-12-07 00:29 UTC at load ~8 went past the 10 s this used to allow): the time is printed below.
        30_000,
      );
      const resumedMs = Date.now() - killedAt;
      console.log(`      (traffic resumed ${resumedMs} ms after the server was killed)`);
      expect(session.state).to.equal("active");
      const usage = service.usage(session.id)!;
      expect(usage.downMs).to.be.greaterThan(0);
      expect(usage.downMs).to.be.at.most(resumedMs);
    } finally {
      await session.destroy();
    }
  });

  it("stops an openvpn a dead node left running (named by its pid file) before starting another", async function () {
    const stale = path.join(dir, "stale");
    fs.mkdirSync(stale, { recursive: true });
    const config = path.join(stale, "server.conf");
    // A minimal server on its own device and port, as a crashed node would have left it.
    fs.writeFileSync(
      config,
      [
        "dev mystst",
        "dev-type tun",
        "proto udp",
        "port 1299",
        "ifconfig 10.99.0.1 10.99.0.2",
        `management ${path.join(stale, "m.sock")} unix`,
        "verb 3",
        "",
      ].join("\n"),
    );
    const options = { configFile: config, managementSocket: path.join(stale, "m.sock"), pidFile: path.join(stale, "openvpn.pid"), netns: topology.provider };
    const left = new OpenVpnProcess(options);
    await left.start();
    const orphan = left.pid!;
    expect(fs.readFileSync(options.pidFile, "utf8").trim()).to.equal(String(orphan));
    const next = new OpenVpnProcess(options);
    await next.start(); // would fail with TUN_BUSY / PORT_IN_USE if the orphan still held them
    try {
      expect(next.pid).to.not.equal(orphan);
      expect(fs.existsSync(`/proc/${orphan}`) && !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${orphan}/status`, "utf8"))).to.equal(false);
      expect(topology.exec(topology.provider, ["/usr/sbin/ip", "link", "show", "mystst"])).to.match(/mystst/);
    } finally {
      await next.stop();
    }
  });

  describe("beside the kill switch's arming (connectBeside: openvpn holds on its management interface until the rules are in force)", function () {
    /** The rules' side in the test's hand (the openvpn, provider and session are real): its arming settles when the test says. */
    function heldArming() {
      let arm!: () => void;
      let refuse!: (err: Error) => void;
      const armed = new Promise<void>((resolve, reject) => {
        arm = resolve;
        refuse = reject;
      });
      armed.catch(() => undefined);
      const calls: string[] = [];
      const protection: SessionProtection = {
        engage: async () => {
          throw new Error("the rules were engaged before the tunnel, not beside it");
        },
        engageBeside: () => {
          calls.push("engageBeside");
          return { routesKept: Promise.resolve(), armed };
        },
        tunnelUp: async () => void calls.push("tunnelUp"),
        abandon: async () => void calls.push("abandon"),
      };
      return { protection, arm, refuse, calls };
    }
    const runDir = () => path.join(dir, "beside");
    /**
     * A consumer whose openvpn's lines the test sees. `holding` resolves once openvpn holds with the node connected to its
     * management socket (from then on the node could release it at once), and 300 ms more have passed: a release sent
     * before the rules are in force would have let openvpn start its handshake by then (what a count then finds).
     */
    function holdingConsumer() {
      let held!: () => void;
      const connected = new Promise<void>((resolve) => (held = resolve));
      const log = pino({ level: "debug" }, { write: (s: string) => /MANAGEMENT: Client connected/.test(s) && held() });
      const svc = new OpenVpnConsumerService({ key: consumerKeys[0], runDir: runDir(), netns: topology.consumers[0], log });
      return { svc, holding: connected.then(() => new Promise<void>((resolve) => setTimeout(resolve, 300))) };
    }
    /**
     * Every datagram or segment the consumer's namespace sends to the provider's address (only openvpn talks to it there),
     * counted as it leaves; not the kernel's ICMP errors to the provider's late packets for an earlier session.
     */
    const COUNT = "table inet myst_t_beside";
    const nftIn = (args: string[], input?: string) =>
      execFileSync("/usr/sbin/ip", ["netns", "exec", topology.consumers[0], "/usr/sbin/nft", ...args], { encoding: "utf8", input });
    const countToProvider = () =>
      nftIn(
        ["-f", "-"],
        `${COUNT} {\n chain out { type filter hook output priority -300; ip daddr ${topology.providerAddress} meta l4proto { udp, tcp } counter; }\n}\n`,
      );
    const countedToProvider = () => Number(/counter packets (\d+)/.exec(nftIn(["list", ...COUNT.split(" ")]))?.[1]);
    const tunDevice = () => topology.exec(topology.consumers[0], ["/usr/sbin/ip", "-o", "link", "show", "type", "tun"]).trim();
    const openvpnsIn = (netns: string) => pidsIn(netns, "openvpn");

    beforeEach(() => countToProvider());
    afterEach(() => nftIn(["delete", ...COUNT.split(" ")]));

    it("reads its config and holds, sending nothing and opening no tun device, until the rules are armed; then the tunnel comes up", async function () {
      const { protection, arm, calls } = heldArming();
      const { svc, holding } = holdingConsumer();
      const sessions = new ConsumerSessions(await rig.dialogsFor(consumerKeys[0], "myst.dialog.e2e-beside"));
      const connecting = sessions.connect({ proposal: signProposal(providerKey, rig.current), service: svc, protection });
      // A connect that ends before its openvpn holds (the rules engaged first, say) says so here.
      await Promise.race([holding, connecting.then(() => Promise.reject(new Error("connected without holding")))]);
      expect(calls).to.deep.equal(["engageBeside"]);
      expect(countedToProvider(), "packets to the provider before the arming").to.equal(0);
      expect(tunDevice(), "tun devices before the arming").to.equal("");
      arm();
      const session = await connecting;
      try {
        expect(calls).to.deep.equal(["engageBeside", "tunnelUp"]);
        expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
        expect(countedToProvider()).to.be.greaterThan(0);
        // Held once: a restart of openvpn's own (a reconnect to a restarted server) does not wait for a release again.
        const { process: openvpn } = session.tunnel as unknown as { process: OpenVpnProcess };
        expect(await openvpn.management!.command("hold")).to.deep.equal(["hold=0"]);
      } finally {
        await session.destroy();
      }
    });

    it("when the arming is refused, the session fails with its error and openvpn is gone, having sent nothing", async function () {
      const { protection, refuse, calls } = heldArming();
      const { svc, holding } = holdingConsumer();
      const sessions = new ConsumerSessions(await rig.dialogsFor(consumerKeys[0], "myst.dialog.e2e-beside"));
      const connecting = rejectionOf(sessions.connect({ proposal: signProposal(providerKey, rig.current), service: svc, protection }));
      await Promise.race([holding, connecting.then((err) => Promise.reject(new Error(`failed before its openvpn held: ${err.message}`)))]);
      refuse(new Error("nftables refused the rule set (the test's)"));
      const err = await connecting;
      // The kill switch's error as it is: not made into openvpn's (review L1 of session 12).
      expect(err.message).to.equal("could not bring the openvpn tunnel up: nftables refused the rule set (the test's)");
      expect(calls).to.deep.equal(["engageBeside", "abandon"]);
      expect(openvpnsIn(topology.consumers[0]), "openvpn processes left").to.deep.equal([]);
      expect(countedToProvider(), "packets to the provider").to.equal(0);
      expect(tunDevice(), "tun devices left").to.equal("");
      expect(fs.readdirSync(runDir()), "the credentials file, FIFO and management socket").to.deep.equal([]);
    });
  });

  it("invoices the bytes the consumer measured, within tolerance, and pays the provider on chain", async function () {
    const paid = await startRigPayments(net, rig);
    const { channels, payments, db } = paid;
    rig.current = makeProposal(providerKey, { serviceType: "openvpn", price: { perHour: "0", perGiB: parseEther("1").toString() } });
    try {
      const c = consumerSide(0);
      const session = await (await c.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: c.svc });
      const pay = new ConsumerPayments(session, new ConsumerPromises(consumerKeys[0], channels));
      pay.start();
      const invoices: { bytes: number; amount: string }[] = [];
      session.dialog.on("payment.invoice", (body) => invoices.push(body as { bytes: number; amount: string }));
      const size = 8 * 1024 * 1024;
      expect(downloadFrom(topology, topology.consumers[0], `${topology.internetUrl}?bytes=${size}`)).to.equal(size);
      // Let the traffic stop and both meters settle, then compare the consumer's meter with the
      // next invoice: the same quantity (link bytes), read at nearly the same moment.
      await until(() => invoices.some((i) => i.bytes >= size), "an invoice covering the download");
      await new Promise((r) => setTimeout(r, 2500));
      const measured = session.tunnel.stats();
      const consumerBytes = measured.bytesIn + measured.bytesOut;
      const seen = invoices.length;
      const invoice = await until(() => invoices[seen], "the next invoice").catch((err) => {
        throw new Error(
          `${err.message}; session ${session.state} (${session.endReason}); invoices ${JSON.stringify(invoices)}; consumer ${consumerBytes}; provider ${JSON.stringify(service.usage(session.id))}`,
        );
      });
      // The stated tolerance (docs/payments.md): 25% or 1 MiB, whichever is larger.
      const slack = Math.max(consumerBytes * 0.25, 1024 * 1024);
      expect(consumerBytes).to.be.greaterThan(size);
      expect(Math.abs(invoice.bytes - consumerBytes)).to.be.at.most(slack);
      await until(() => pay.acknowledged >= BigInt(invoice.amount), "the promise for that invoice");
      await session.destroy();
      await expectSettledAndPaidOut(net, rig, paid);
    } finally {
      payments.stop();
      db.close();
    }
  });

  describe("stage checks through the tunnel, as WireGuard's (docs/quality.md)", function () {
    let broker: Broker;
    let discovery: DiscoveryService;
    let consumer: ConsumerNode;
    const checking = () =>
      new OpenVpnConsumerService({
        key: consumerKeys[0],
        runDir: path.join(dir, "checks"),
        netns: topology.consumers[0],
        tunnelCheck: { name: topology.whoamiName, url: topology.internetUrl },
      });
    /** A connect by the node's own path (discovery, session, checks, receipt): what it reached, and the receipt discovery got. */
    async function connectAndReceipt() {
      const connection = await consumer.connect({ provider: providerKey.address, service: checking() });
      await connection.session.destroy("done");
      await connection.written;
      const answer = (await (await fetch(`${discovery.url}/v1/quality/${providerKey.address}`)).json()) as { receipts: { signed: { receipt: string } }[] };
      const receipt = answer.receipts.map((r) => parseReceipt(r.signed.receipt)).find((r) => r.sessionId === connection.session.id);
      return { checked: connection.checked, receipt };
    }

    before(async function () {
      broker = new Broker({ servers: [net.nats.url], credentials: REPLICA_CREDENTIALS });
      await broker.start();
      discovery = new DiscoveryService({
        broker,
        directory: net.registry,
        port: 0,
        quality: { promiseCheck: promiseCheckOf(net.conn.chainId, net.conn.deployment.contracts.ConsumerVault), store: new LocalReceiptStore() },
      });
      await discovery.start();
      // A modest advertised bandwidth: the throughput test's bar is half of it, through openvpn on a loaded machine.
      rig.current = makeProposal(providerKey, { serviceType: "openvpn", bandwidthMbps: 10 });
      const posted = await fetch(`${discovery.url}/v1/proposals`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(signProposal(providerKey, rig.current)),
      });
      expect(posted.status).to.equal(201);
      consumer = new ConsumerNode({ key: consumerKeys[0], brokerUrls: [net.nats.url], discoveryUrls: [discovery.url], registry: net.registry });
      await consumer.start();
    });

    after(async function () {
      await consumer?.stop();
      await discovery?.stop();
      await broker?.stop();
    });

    it("checks DNS, the first byte and throughput through a working OpenVPN tunnel, and the receipt says it reached throughput", async function () {
      const { checked, receipt } = await connectAndReceipt();
      expect(checked).to.deep.equal({ reached: "throughput", failed: null });
      expect(receipt).to.include({ serviceType: "openvpn", reached: "throughput", failed: null });
    });

    it("names first-byte in the receipt of an OpenVPN provider that blackholes its tunnel after the handshake", async function () {
      // Everything from the provider's tun device dropped (the server itself, its resolver, forwarding): the handshake still works.
      const t = "inet mystblackhole";
      topology.exec(topology.provider, [
        "/usr/sbin/nft",
        [
          `add table ${t}`,
          `add chain ${t} qin { type filter hook input priority -5 ; }`,
          `add chain ${t} qfwd { type filter hook forward priority -5 ; }`,
          `add rule ${t} qin iifname "myst0" drop`,
          `add rule ${t} qfwd iifname "myst0" drop`,
        ].join(" ; "),
      ]);
      try {
        const { checked, receipt } = await connectAndReceipt();
        expect(checked).to.deep.equal({ reached: "tunnel", failed: "first-byte" });
        expect(receipt).to.include({ serviceType: "openvpn", reached: "tunnel", failed: "first-byte" });
      } finally {
        topology.exec(topology.provider, ["/usr/sbin/nft", `delete table ${t}`]);
      }
    });
  });
});
