import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { parseEther } from "ethers";
import type { IdentityKey } from "../../node/identity/key";
import { ConsumerPayments } from "../../node/payments/consumer-payments";
import { ConsumerPromises } from "../../node/payments/consumer-promises";
import { signProposal } from "../../node/proposal/proposal";
import { WireGuardConsumerService } from "../../node/services/wireguard/consumer";
import type { WireGuardServiceConfig } from "../../node/services/wireguard/config";
import { generateKeyPair } from "../../node/services/wireguard/keys";
import { WireGuardProcess } from "../../node/services/wireguard/process";
import { WireGuardProviderService } from "../../node/services/wireguard/provider";
import type { HostedProvider } from "../../scripts/lib/provider-host";
import { ConsumerSessions } from "../../node/session/consumer";
import { downloadFrom, fetchFrom, resolveFrom, routesOf, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { TestNetwork } from "../../scripts/lib/test-network";
import { requireE2E } from "../../scripts/lib/prereqs";
import { makeProposal } from "../../scripts/lib/proposals";
import { rejectionOf } from "../support/rejection";
import { expectSettledAndPaidOut, startRigPayments, startHostedServiceRig, type HostedServiceRig } from "../support/hosted-service";

describe("e2e: WireGuard sessions through network namespaces (real wireguard-go, NATS, chain)", function () {
  this.timeout(120_000);
  const net = new TestNetwork();
  let rig: HostedServiceRig;
  let topology: Topology;
  let dir: string;
  let providerKey: IdentityKey;
  let consumerKeys: IdentityKey[];
  /** The provider's service as its own user with only the capabilities wireguard declares (scripts/lib/provider-host.ts). */
  let service: HostedProvider;

  function consumerSide(i: number) {
    const svc = new WireGuardConsumerService({ runDir: path.join(dir, `c${i}`), netns: topology.consumers[i] });
    return { svc, sessions: rig.dialogsFor(consumerKeys[i], `myst.dialog.wg-e2e-c${i}`).then((d) => new ConsumerSessions(d)) };
  }

  before(async function () {
    requireE2E(this);
    rig = await startHostedServiceRig(net, {
      type: "wireguard",
      settings: (t) => ({ publicIp: t.providerAddress, device: `mwp${t.tag}` }),
      uid: 64_992,
      dirPrefix: "myst-e2e-wg-",
    });
    ({ topology, dir, providerKey, consumerKeys, service } = rig);
  });

  after(async function () {
    await rig?.stop();
  });

  it("gives two consumers their own sessions and addresses at once, meters each, and restores each consumer's routes after", async function () {
    const [a, b] = [consumerSide(0), consumerSide(1)];
    // The namespaces are fresh: wait for IPv6 link-local addresses (and their routes) to settle first.
    for (const ns of topology.consumers) await until(() => routesOf(topology, ns).includes("local fe80::"), "the consumer's link-local address");
    const routesBefore = [routesOf(topology, topology.consumers[0]), routesOf(topology, topology.consumers[1])];
    const [s1, s2] = await Promise.all([
      (await a.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: a.svc }),
      (await b.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: b.svc }),
    ]);
    try {
      const [c1, c2] = [s1.serviceConfig, s2.serviceConfig] as WireGuardServiceConfig[];
      expect(c1.address).to.match(/^10\.9\.0\.\d+\/32$/);
      expect(c1.address).to.not.equal(c2.address);
      expect(c1.clientPublicKey).to.not.equal(c2.clientPublicKey);
      expect(c1.publicKey).to.equal(service.publicKey);
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      expect(fetchFrom(topology, topology.consumers[1], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      expect(downloadFrom(topology, topology.consumers[1], `${topology.internetUrl}?bytes=2000000`)).to.equal(2_000_000);
      // The tunnel's own packets still reach the provider by the consumer's gateway.
      expect(topology.exec(topology.consumers[1], ["/usr/sbin/ip", "-4", "route", "get", topology.providerAddress])).to.match(/ via 198\.18\.1\.1 dev eth0/);
      await service.meter();
      const [u1, u2] = [service.usage(s1.id)!, service.usage(s2.id)!];
      expect(u2.bytesOut).to.be.greaterThan(2_000_000);
      expect(u1.bytesOut).to.be.lessThan(u2.bytesOut);
    } finally {
      await Promise.all([s1.destroy(), s2.destroy()]);
    }
    expect(routesOf(topology, topology.consumers[0])).to.equal(routesBefore[0]);
    expect(routesOf(topology, topology.consumers[1])).to.equal(routesBefore[1]);
    expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.consumerAddress(0));
  });

  it("keeps the consumer out of the provider's private LAN, by address and by name", async function () {
    const c = consumerSide(0);
    const session = await (await c.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: c.svc });
    try {
      const { dns } = session.serviceConfig as WireGuardServiceConfig;
      expect(fetchFrom(topology, topology.provider, topology.lanUrl)).to.equal("192.168.77.1");
      expect(fetchFrom(topology, topology.consumers[0], topology.lanUrl, 1500)).to.equal(null);
      // The provider's resolver answers through the tunnel, but not with its private LAN host.
      expect(resolveFrom(topology, topology.consumers[0], topology.whoamiName, { server: dns[0] })).to.deep.equal([topology.internetAddress]);
      expect(resolveFrom(topology, topology.consumers[0], "lan.test", { server: dns[0] })).to.equal(null);
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
    } finally {
      await session.destroy();
    }
  });

  it("refuses a session request without a WireGuard key, or with the key of a live session", async function () {
    const missing = await rejectionOf(
      service.openSession({ id: "a".repeat(32), consumer: consumerKeys[0].address, consumerData: { client: "myst-openvpn/1" } }),
    );
    expect(missing.code).to.equal("BAD_CONSUMER_DATA");
    const { publicKey } = generateKeyPair();
    await service.openSession({ id: "b".repeat(32), consumer: consumerKeys[0].address, consumerData: { publicKey } });
    try {
      const taken = await rejectionOf(service.openSession({ id: "c".repeat(32), consumer: consumerKeys[1].address, consumerData: { publicKey } }));
      expect(taken.code).to.equal("KEY_IN_USE");
    } finally {
      await service.closeSession("b".repeat(32), "test");
    }
  });

  it("refuses to start on a UDP port another program holds, saying so (PORT_IN_USE), and leaves nothing behind, every time", async function () {
    // Twenty starts: wireguard-go answers errno=0 to a listen_port given before its device came up
    // (8 of 100 starts measured), and a check that trusted its answer let about one start in
    // twelve run listening on nothing (process.ts, `listening`).
    const device = `mwx${topology.tag}`;
    for (let i = 0; i < 20; i++) {
      const second = new WireGuardProviderService({
        dir: path.join(dir, "second"),
        publicAddress: topology.providerAddress,
        netns: topology.provider,
        device,
        subnet: "10.19.0.0",
      });
      const err = await rejectionOf(second.start().finally(() => second.stop()));
      expect(err.code, `start ${i + 1}`).to.equal("PORT_IN_USE");
      expect(err.message).to.match(/UDP port 51820.*--port/);
      expect(topology.exec(topology.provider, ["/usr/sbin/iptables", "-S"])).to.not.include(`MYST-F-${device.toUpperCase()}`);
      expect(topology.exec(topology.provider, ["/usr/sbin/ip", "link"])).to.not.include(device);
    }
    expect(service.isRunning()).to.equal(true);
  });

  describe("when two providers start with the default interface name (the demo's case)", function () {
    const providers: WireGuardProviderService[] = [];
    const defaults = (i: number) =>
      new WireGuardProviderService({
        dir: path.join(dir, `default${i}`),
        publicAddress: topology.providerAddress,
        netns: topology.provider,
        port: 51830 + i,
        subnet: `10.${30 + i}.0.0`,
      });

    before(async function () {
      providers.push(defaults(0), defaults(1));
    });

    after(async function () {
      for (const p of providers) await p.stop();
    });

    it("starts both at once, each on its own free mystwgN, each control socket served by its own wireguard-go", async function () {
      await Promise.all(providers.map((p) => p.start()));
      const [a, b] = providers;
      expect(a.isRunning() && b.isRunning()).to.equal(true);
      expect(a.device).to.match(/^mystwg\d+$/);
      expect(b.device).to.match(/^mystwg\d+$/);
      expect(a.device).to.not.equal(b.device);
      const links = topology.exec(topology.provider, ["/usr/sbin/ip", "-o", "link"]);
      expect(links).to.include(`: ${a.device}:`).and.include(`: ${b.device}:`);
      // Each answers with its own listen port: neither configured the other's wireguard-go.
      const ports = await Promise.all(providers.map((p) => new WireGuardProcess({ device: p.device }).uapi.get().then((s) => s.listenPort)));
      expect(ports).to.deep.equal([51830, 51831]);
    });

    it("refuses a provider that names a taken interface with --device, saying so (DEVICE_IN_USE), and leaves the holder running", async function () {
      const taken = providers[0].device;
      const third = new WireGuardProviderService({
        dir: path.join(dir, "named-taken"),
        publicAddress: topology.providerAddress,
        netns: topology.provider,
        device: taken,
        port: 51839,
        subnet: "10.39.0.0",
      });
      const err = await rejectionOf(third.start());
      expect(err.code).to.equal("DEVICE_IN_USE");
      expect(err.message).to.include(taken).and.include("--device");
      expect(providers[0].isRunning()).to.equal(true);
      expect(topology.exec(topology.provider, ["/usr/sbin/iptables", "-S"])).to.not.include("10.39.0.0");
      expect((await new WireGuardProcess({ device: taken }).uapi.get()).listenPort).to.equal(51830);
    });

    it("gives a restarted provider the name it had last time while that is free, not merely the first free one", async function () {
      const byNumber = [...providers].sort((x, y) => Number(x.device.slice(6)) - Number(y.device.slice(6)));
      const [lower, higher] = byNumber;
      const had = higher.device;
      await Promise.all(providers.map((p) => p.stop()));
      await higher.start();
      expect(higher.device).to.equal(had);
      expect(lower.isRunning()).to.equal(false);
    });
  });

  it("starts one of two wireguard-go given one name at the same moment in two namespaces; the other fails (DEVICE_IN_USE) instead of taking the winner's socket", async function () {
    const device = `mwr${topology.tag}`;
    const processes = [topology.provider, topology.consumers[1]].map((netns) => new WireGuardProcess({ device, netns }));
    const results = await Promise.allSettled(processes.map((p) => p.start()));
    try {
      expect(results.map((r) => r.status).sort()).to.deep.equal(["fulfilled", "rejected"]);
      const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      expect(lost.reason.code).to.equal("DEVICE_IN_USE");
      const won = processes[results.findIndex((r) => r.status === "fulfilled")];
      expect(won.running).to.equal(true);
      expect(processes.filter((p) => p.running)).to.have.length(1);
    } finally {
      for (const p of processes) await p.stop();
    }
  });

  it("stops a wireguard-go a dead node left running (named by its pid file) before starting another", async function () {
    const options = { device: `mws${topology.tag}`, pidFile: path.join(dir, "stale-wireguard-go.pid"), netns: topology.provider };
    const left = new WireGuardProcess(options);
    await left.start();
    const orphan = left.pid!;
    expect(fs.readFileSync(options.pidFile, "utf8").trim()).to.equal(String(orphan));
    const next = new WireGuardProcess(options);
    await next.start(); // would fail: another wireguard-go would still serve the interface's socket
    try {
      expect(next.pid).to.not.equal(orphan);
      expect(fs.existsSync(`/proc/${orphan}`) && !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${orphan}/status`, "utf8"))).to.equal(false);
      expect((await next.uapi.get()).peers).to.deep.equal([]);
    } finally {
      await next.stop();
    }
  });

  it("invoices the bytes the consumer measured, within tolerance, and pays the provider on chain", async function () {
    const paid = await startRigPayments(net, rig);
    const { channels, payments, db } = paid;
    rig.current = makeProposal(providerKey, { serviceType: "wireguard", price: { perHour: "0", perGiB: parseEther("1").toString() } });
    try {
      const c = consumerSide(0);
      const session = await (await c.sessions).connect({ proposal: signProposal(providerKey, rig.current), service: c.svc });
      const pay = new ConsumerPayments(session, new ConsumerPromises(consumerKeys[0], channels));
      pay.start();
      const invoices: { bytes: number; amount: string }[] = [];
      session.dialog.on("payment.invoice", (body) => invoices.push(body as { bytes: number; amount: string }));
      const size = 8 * 1024 * 1024;
      expect(downloadFrom(topology, topology.consumers[0], `${topology.internetUrl}?bytes=${size}`)).to.equal(size);
      await until(() => invoices.some((i) => i.bytes >= size), "an invoice covering the download");
      await new Promise((r) => setTimeout(r, 1500));
      await session.tunnel.refresh?.();
      const measured = session.tunnel.stats();
      const consumerBytes = measured.bytesIn + measured.bytesOut;
      const seen = invoices.length;
      const invoice = await until(() => invoices[seen], "the next invoice");
      // Both sides count the same thing (the peer's encrypted bytes): no drop at a 2 MiB receive buffer.
      console.log(`      (invoiced ${invoice.bytes} bytes, the consumer measured ${consumerBytes})`);
      expect(consumerBytes).to.be.greaterThan(size);
      expect(Math.abs(invoice.bytes - consumerBytes)).to.be.at.most(consumerBytes * 0.02);
      await until(() => pay.acknowledged >= BigInt(invoice.amount), "the promise for that invoice");
      await session.destroy();
      await expectSettledAndPaidOut(net, rig, paid);
    } finally {
      payments.stop();
      db.close();
    }
  });
});
