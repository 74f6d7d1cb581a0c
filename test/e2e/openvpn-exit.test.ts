import { expect } from "chai";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DialogsPool } from "../../scripts/lib/dialogs-pool";
import type { IdentityKey } from "../../node/identity/key";
import { signProposal } from "../../node/proposal/proposal";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import type { OpenVpnProcess } from "../../node/services/openvpn/process";
import { OpenVpnProviderService } from "../../node/services/openvpn/provider";
import { OpenVpnSpare } from "../../node/services/openvpn/spare";
import type { ConsumerSession } from "../../node/session/consumer-session";
import { ConsumerSessions } from "../../node/session/consumer";
import { ProviderSessions } from "../../node/session/provider";
import { requireE2E } from "../../scripts/lib/prereqs";
import { makeProposal } from "../../scripts/lib/proposals";
import { TestNetwork } from "../../scripts/lib/test-network";
import { IP } from "../../scripts/lib/netns-exec";
import { fetchFrom, routesOf, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";

/**
 * How an OpenVPN session ends (docs/connect-path.md, "Disconnecting"): the consumer's openvpn exits as soon as its
 * exit notification is out, and the provider closes the client's instance at once on either word of it, the
 * dialog's `session.destroy` or openvpn's exit notification, each alone. The provider runs in this process, so its
 * openvpn's log and its management interface's client list (`status 3`) are read as they are.
 */
describe("e2e: ending an OpenVPN session (real openvpn in namespaces, NATS, registry)", function () {
  this.timeout(90_000);
  const net = new TestNetwork();
  const pool = new DialogsPool(net);
  let topology: Topology;
  let dir: string;
  let providerKey: IdentityKey;
  let consumerKey: IdentityKey;
  let provider: OpenVpnProviderService;
  let providerSessions: ProviderSessions;
  let sessions: ConsumerSessions;
  /** The provider's openvpn's lines since the start. */
  const providerLines: string[] = [];
  const proposal = () => signProposal(providerKey, makeProposal(providerKey, { serviceType: "openvpn" }));
  const providerProcess = () => (provider as unknown as { process: OpenVpnProcess }).process;
  /** The session's client in the provider's `status 3`. */
  const listed = async (session: ConsumerSession) => (await providerProcess().management!.clients()).some((r) => r.username === session.id);
  /** The provider's openvpn logged the session's client's exit notification. */
  const notified = (session: ConsumerSession) => providerLines.some((l) => l.includes(`${session.id}/`) && l.endsWith("CC-EEN exit message received by peer"));
  const tunnelProcess = (session: ConsumerSession) => (session.tunnel as unknown as { process: OpenVpnProcess }).process;
  const connect = (spare?: OpenVpnSpare) =>
    sessions.connect({
      proposal: proposal(),
      service: new OpenVpnConsumerService({
        key: consumerKey,
        runDir: path.join(dir, "run"),
        netns: topology.consumers[0],
        connectTimeoutMs: 15_000,
        ...(spare ? { spare } : {}),
      }),
    });

  before(async function () {
    requireE2E(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-e2e-ovpnexit-"));
    await net.start();
    providerKey = await net.registeredIdentity();
    consumerKey = await net.registeredIdentity();
    topology = await topologyUp({ consumers: 1 });
    // The routes compared below include the link-local ones, whose local route comes once the address's duplicate
    // address detection ends: after it, not during a test.
    await until(() => topology.exec(topology.consumers[0], [IP, "-6", "addr", "show", "tentative"]).trim() === "", "IPv6 duplicate address detection");
    provider = new OpenVpnProviderService({
      dir: path.join(dir, "provider"),
      directory: net.registry,
      publicAddress: topology.providerAddress,
      netns: topology.provider,
    });
    await provider.start();
    providerProcess().on("line", (line) => providerLines.push(line));
    providerSessions = new ProviderSessions({
      dialogs: await pool.dialogsFor(providerKey),
      services: new Map([["openvpn", provider]]),
      currentProposal: () => makeProposal(providerKey, { serviceType: "openvpn" }),
    });
    providerSessions.start();
    sessions = new ConsumerSessions(await pool.dialogsFor(consumerKey, `myst.dialog.ovpnexit-${topology.tag}`));
  });

  after(async function () {
    await providerSessions?.stop();
    await provider?.stop();
    await pool.stop();
    await topology?.down();
    await net.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const withSpare of [false, true]) {
    it(`returns from a disconnect with the consumer's openvpn exited${withSpare ? " (the spare's)" : ""}, its routes back, and the client gone from the provider's client list, the provider having had its exit notification`, async function () {
      const spare = withSpare ? new OpenVpnSpare({ runDir: path.join(dir, "spare"), netns: topology.consumers[0] }) : undefined;
      await spare?.start();
      try {
        const routes = routesOf(topology, topology.consumers[0]);
        if (spare) await until(() => spare.pidIn(topology.consumers[0]), "the spare openvpn");
        const sparePid = spare?.pidIn(topology.consumers[0]);
        const session = await connect(spare);
        if (spare) expect(tunnelProcess(session).pid).to.equal(sparePid);
        expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
        expect(await listed(session)).to.equal(true);
        await session.destroy();
        expect(tunnelProcess(session).running).to.equal(false);
        // What the provider holds of the consumer is gone when the disconnect returns (it stayed 4-5 s: openvpn keeps
        // an instance 5 s after the client's exit notification, and the provider waited 3 s for it before client-kill).
        expect(await listed(session)).to.equal(false);
        expect(routesOf(topology, topology.consumers[0])).to.equal(routes);
        // The notification still went out before the consumer's openvpn exited: the provider's own log says so.
        await until(() => notified(session), "the provider's line for the client's exit notification");
      } finally {
        await spare?.stop();
      }
    });
  }

  it("closes the client's instance at once on the dialog's word alone (no exit notification reached the provider)", async function () {
    const session = await connect();
    try {
      expect(await listed(session)).to.equal(true);
      // The dialog's session.destroy as the provider receives it, while the consumer's openvpn still runs (its
      // notification lost, or the consumer gone without one): the provider's side is over when it returns.
      await providerSessions.end(session.id, "consumer ended it", { tellConsumer: false });
      expect(await listed(session)).to.equal(false);
      expect(notified(session)).to.equal(false);
    } finally {
      await session.finish("test cleanup");
    }
  });

  it("stops a consumer's openvpn that does not answer its management interface (stopped by SIGSTOP): TERM, then KILL", async function () {
    // IPv4's (the tunnel's): a link-local IPv6 route of eth0's came and went once meanwhile (21:13 UTC), unrelated.
    const routes4 = () => topology.exec(topology.consumers[0], [IP, "-4", "route", "show", "table", "all"]);
    const routes = routes4();
    const session = await connect();
    const openvpn = tunnelProcess(session);
    process.kill(openvpn.pid!, "SIGSTOP");
    try {
      await session.tunnel.stop();
      expect(openvpn.running).to.equal(false);
    } finally {
      if (openvpn.running) process.kill(openvpn.pid!, "SIGKILL");
      await session.destroy();
      // Killed, it could not remove its host route to the provider (its tun device's routes went with the device).
      const left = routes4()
        .split("\n")
        .find((r) => r.startsWith(`${topology.providerAddress} via`));
      if (left) topology.exec(topology.consumers[0], [IP, "route", "del", topology.providerAddress]);
    }
    expect(routes4()).to.equal(routes);
  });

  // openvpn's own delayed exit (5 s) closes it: the provider does not act on a log line a client's text can imitate.
  it("the client's instance still goes on its exit notification alone (the dialog says nothing), even while it downloads", async function () {
    for (let i = 0; i < 3; i++) {
      const session = await connect();
      // A download through the tunnel while it stops: openvpn's loop carries it beside the notification.
      const download = spawn(IP, ["netns", "exec", topology.consumers[0], "curl", "-s", "-o", "/dev/null", `${topology.internetUrl}?bytes=500000000`], {
        stdio: "ignore",
      });
      try {
        await until(
          async () => (await providerProcess().management!.clients()).some((r) => r.username === session.id && r.bytesSent > 1_000_000),
          "the download under way",
        );
        await session.tunnel.stop();
        await until(() => notified(session), "the provider's line for the client's exit notification");
        await until(async () => !(await listed(session)), "the client gone from the provider's client list");
        // The provider's session is still live: the dialog said nothing.
        expect(providerSessions.list().find((s) => s.id === session.id)?.state).to.not.equal("ended");
      } finally {
        download.kill("SIGKILL");
        await session.destroy();
      }
    }
  });
});
