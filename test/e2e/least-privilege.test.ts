import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { downloadFrom, fetchFrom, onConsumerMachine, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { buildCli, cliProviderAndConsumer, giveTo, myst, mystBackground, unprivilegedUser, type UnprivilegedUser } from "../support/cli";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { requireE2E } from "../../scripts/lib/prereqs";
import { tempDir } from "../../scripts/lib/tmp";
import { registerIdentityIn } from "../../scripts/lib/data-dir-setup";

/** The capabilities of `pid` and its user, from /proc (hex masks as the kernel prints them). */
function credentialsOf(pid: number): { uid: string; eff: string; amb: string; bnd: string } {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, "m").exec(status)![1];
  return { uid: field("Uid"), eff: field("CapEff"), amb: field("CapAmb"), bnd: field("CapBnd") };
}
/** CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12): the set docs/running-without-root.md lists for the tunnels. */
const TUNNEL_CAPS = (1n << 10n) | (1n << 12n);

/**
 * The provider as the systemd unit runs it (packaging/systemd/myst-provider.service): its own uid,
 * no root, only the capabilities its tunnels need (CAP_NET_ADMIN, CAP_NET_BIND_SERVICE), ambient so
 * openvpn, wireguard-go, ip, iptables, tc and dnsmasq get them. Its daemon runs inside the provider's
 * namespace (a user without CAP_SYS_ADMIN cannot enter one), reaching the chain, broker and discovery
 * over the test internet. The consumer is a root daemon as in daemon.test.ts.
 */
describe("e2e: a provider daemon with only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE, as its own user, sells OpenVPN and WireGuard", function () {
  this.timeout(180_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  const tmps = [1, 2, 3, 4].map(() => tempDir("myst-e2e-priv-"));
  const background: ReturnType<typeof mystBackground>[] = [];
  let providerEnv: NodeJS.ProcessEnv;
  let consumerEnv: NodeJS.ProcessEnv;
  let user: UnprivilegedUser;
  let provider: ReturnType<typeof mystBackground>;
  let consumer: ReturnType<typeof mystBackground>;

  /** `myst args --json` against the provider daemon: from inside its namespace, where its API listens. */
  const atProvider = async (args: string[]) => {
    const r = await myst([...args, "--json"], providerEnv, 120_000, { netns: topology.provider });
    return { code: r.code, body: r.code === 0 ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
  };
  const json = async (env: NodeJS.ProcessEnv, args: string[]) => {
    const r = await myst([...args, "--json"], env, 120_000);
    if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats, topology] = await Promise.all([testChain(), startNatsServer(), topologyUp({ consumers: 1 })]);
    const nodes = await cliProviderAndConsumer(chain, nats.url, [tmps[0].dir, tmps[1].dir]);
    consumerEnv = nodes.consumerEnv;
    background.push(nodes.discovery);
    // The provider's machine reaches the shared services over the internet, not over a loopback it shares with them.
    // Its own copy of the deployment file: the test chain's is in a directory only root reads.
    const deployment = path.join(tmps[0].dir, "deployment.json");
    fs.copyFileSync(chain.deploymentFile, deployment);
    providerEnv = { ...(await onConsumerMachine(topology, nodes.providerEnv)), HOME: tmps[0].dir, MYST_DEPLOYMENT: deployment };
    user = unprivilegedUser(tmps[2].dir, ["net_admin", "net_bind_service"]);
    giveTo(user, tmps[0].dir);
    provider = mystBackground(
      ["daemon", "--api-port", "0", "--invoice-every", "1"],
      { ...providerEnv, MYST_LOG_LEVEL: "info" },
      { netns: topology.provider, user },
    );
    consumer = mystBackground(["daemon", "--api-port", "0"], { ...consumerEnv, MYST_LOG_LEVEL: "info" });
    background.push(provider, consumer);
    await until(() => provider.output().includes("REST API:") || provider.child.exitCode !== null, "the provider daemon to listen", 60_000);
    if (!provider.output().includes("REST API:")) throw new Error(`the unprivileged provider daemon did not start: ${provider.output()}`);
    await until(() => consumer.output().includes("REST API:"), "the consumer daemon to listen");
  });

  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await topology?.down();
    await Promise.all([chain?.stop(), nats?.stop()]);
    for (const t of tmps) t.cleanup();
  });

  it("runs as its own uid with exactly those capabilities (effective, ambient, bounding) and says so at start", async function () {
    const creds = credentialsOf(provider.child.pid!);
    expect(creds.uid).to.equal(String(user.uid));
    for (const mask of [creds.eff, creds.amb, creds.bnd]) expect(BigInt(`0x${mask}`)).to.equal(TUNNEL_CAPS);
    // The log line goes to stderr, another pipe than the CLI's own "REST API:" on stdout: it may arrive after it.
    await until(() => /capabilities held/.test(provider.output()), "the daemon's line about the capabilities it holds", 10_000).catch(() => undefined);
    expect(provider.output())
      .to.match(/capabilities held/)
      .and.match(/CAP_NET_ADMIN/);
  });

  for (const t of [
    { service: "openvpn", process: "openvpn" },
    { service: "wireguard", process: "wireguard-go" },
  ] as const)
    it(`sells ${t.service}: the consumer's traffic leaves through the provider, metered and paid, with ${t.process} and dnsmasq under the provider's uid`, async function () {
      const started = await atProvider(["service", "start", t.service, "--public-ip", topology.providerAddress, "--country", "DE", "--price-per-gib", "0.1"]);
      expect(started.code, `${started.stderr}\n${provider.output().slice(-3000)}`).to.equal(0);
      try {
        // Its tunnel process and resolver run as the provider's user with no more than its capabilities.
        const children = topology
          .exec(topology.provider, ["/usr/sbin/ip", "netns", "pids", topology.provider])
          .split(/\s+/)
          .filter((pid) => pid && fs.existsSync(`/proc/${pid}/comm`) && [t.process, "dnsmasq"].includes(fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim()));
        expect(children).to.have.length(2);
        for (const pid of children) {
          const creds = credentialsOf(Number(pid));
          expect(creds.uid).to.equal(String(user.uid));
          expect(BigInt(`0x${creds.eff}`) & ~TUNNEL_CAPS).to.equal(0n);
        }
        await until(
          async () => (await json(consumerEnv, ["proposals", "--service-type", t.service, "--country", "DE"])).length === 1,
          "the proposal in discovery",
        );
        const connected = await json(consumerEnv, ["connect", "--service", t.service, "--country", "DE", "--netns", topology.consumers[0]]);
        expect(connected).to.include({ state: "connected", serviceType: t.service });
        try {
          expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
          expect(downloadFrom(topology, topology.consumers[0], `${topology.internetUrl}?bytes=2000000`)).to.equal(2_000_000);
          // The provider's LAN block holds without root too.
          expect(fetchFrom(topology, topology.consumers[0], topology.lanUrl, 1500)).to.equal(null);
          await until(async () => {
            const s = await json(consumerEnv, ["status"]);
            return s.bytesIn > 2_000_000 && BigInt(s.promisedWei) > 0n;
          }, "the download metered and paid for");
        } finally {
          await json(consumerEnv, ["disconnect"]);
        }
        expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.consumerAddress(0));
      } finally {
        await atProvider(["service", "stop", t.service]);
      }
    });

  describe("when it lacks the capabilities a service needs (a second provider with none)", function () {
    let bare: ReturnType<typeof mystBackground>;
    let bareEnv: NodeJS.ProcessEnv;

    before(async function () {
      const deployment = path.join(tmps[3].dir, "deployment.json");
      fs.copyFileSync(chain.deploymentFile, deployment);
      bareEnv = { ...providerEnv, MYST_DATA_DIR: tmps[3].dir, HOME: tmps[3].dir, MYST_DEPLOYMENT: deployment };
      await registerIdentityIn(chain, { ...consumerEnv, MYST_DATA_DIR: tmps[3].dir });
      const none = unprivilegedUser(tmps[2].dir, [], 64_998);
      giveTo(none, tmps[3].dir);
      bare = mystBackground(["daemon", "--api-port", "0"], { ...bareEnv, MYST_LOG_LEVEL: "info" }, { netns: topology.provider, user: none });
      background.push(bare);
      await until(() => bare.output().includes("REST API:") || bare.child.exitCode !== null, "the second provider daemon to listen", 60_000);
      if (!bare.output().includes("REST API:")) throw new Error(`the provider daemon did not start: ${bare.output()}`);
    });

    it("says at start which services it cannot sell and which capability each lacks", async function () {
      // Its log and its "REST API:" line are two streams: under load the log line can come second.
      await until(
        () => (/cannot sell openvpn/.test(bare.output()) && /cannot sell wireguard/.test(bare.output())) || bare.child.exitCode !== null,
        "the start's capability report",
      );
      expect(bare.output()).to.match(/cannot sell wireguard: wireguard needs CAP_NET_ADMIN to create its interface/);
      expect(bare.output()).to.match(/cannot sell openvpn: openvpn needs CAP_NET_ADMIN/);
      expect(bare.output()).to.not.match(/cannot sell noop/);
    });

    it("refuses a WireGuard service naming CAP_NET_ADMIN and how to grant it, not 'run as root', and leaves no process behind", async function () {
      const r = await myst(["service", "start", "wireguard", "--public-ip", topology.providerAddress, "--json"], bareEnv, 60_000, {
        netns: topology.provider,
      });
      expect(r.code).to.not.equal(0);
      expect(r.stderr).to.match(/CAPABILITY_MISSING|wireguard needs CAP_NET_ADMIN to create its interface/);
      expect(r.stderr).to.match(/AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE/);
      expect(r.stderr).to.not.match(/root|sudo/);
      const pids = topology.exec(topology.provider, ["/usr/sbin/ip", "netns", "pids", topology.provider]).split(/\s+/).filter(Boolean);
      expect(pids.filter((pid) => fs.existsSync(`/proc/${pid}/comm`) && fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "wireguard-go")).to.deep.equal(
        [],
      );
    });

    it("sells a service that needs no capability (noop) as any user", async function () {
      const r = await myst(["service", "start", "noop", "--json"], bareEnv, 60_000, { netns: topology.provider });
      expect(r.code, r.stderr).to.equal(0);
      expect(JSON.parse(r.stdout)).to.include({ type: "noop" });
    });
  });
});
