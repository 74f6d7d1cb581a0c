import { expect } from "chai";
import { type LocalChain, testChain } from "../../scripts/lib/local-chain";
import { requireE2E } from "../../scripts/lib/prereqs";
import { type NatsServer, startNatsServer } from "../../scripts/lib/test-network";
import { tempDir } from "../../scripts/lib/tmp";
import { type Topology, topologyUp } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { buildCli, cliProviderAndConsumer, myst, mystBackground, onConsumerMachine } from "../support/cli";

/**
 * A node measures its reachability itself (issue 28): two `myst daemon`s, each on the machine a
 * namespace stands for — one behind a miniupnpd home router, one behind a miniupnpd router inside a
 * carrier's NAT — reach the chain, the broker and discovery over the routers, measure at start with
 * the STUN server in their settings, show it in `myst status`, and sell with proposals whose direct
 * contact names only what leads to them. Stopping the daemon gives the router's port back.
 */
describe("e2e: a node measures its reachability at start, shows it and puts it in its proposals", function () {
  this.timeout(300_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  const tmps = [tempDir("myst-e2e-"), tempDir("myst-e2e-")];
  const background: ReturnType<typeof mystBackground>[] = [];
  /** [env, netns] of the node behind the UPnP router, then of the one behind the carrier's NAT. */
  let nodes: [NodeJS.ProcessEnv, string][];

  const json = async (env: NodeJS.ProcessEnv, netns: string, args: string[]) => {
    const r = await myst([...args, "--json"], env, 120_000, { netns });
    if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const upnpRules = (router: string) => topology.exec(router, ["/usr/sbin/nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd"]);

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats, topology] = await Promise.all([
      testChain(),
      startNatsServer(),
      topologyUp({ consumers: 1, nat: { provider: "upnp", consumer: "cgnat-upnp" } }),
    ]);
    const made = await cliProviderAndConsumer(chain, nats.url, [tmps[0].dir, tmps[1].dir], {}, { fundVault: false });
    background.push(made.discovery);
    const reachable = { MYST_STUN_SERVERS: topology.nat!.stunServers.join(","), MYST_LOG_LEVEL: "info" };
    // Both nodes use the same chain, broker and discovery, published once on the services host.
    const moved = await onConsumerMachine(topology, made.providerEnv);
    const services = { MYST_RPC_URL: moved.MYST_RPC_URL, MYST_BROKER_URLS: moved.MYST_BROKER_URLS, MYST_DISCOVERY_URLS: moved.MYST_DISCOVERY_URLS };
    nodes = [
      [{ ...moved, ...reachable }, topology.provider],
      [{ ...made.consumerEnv, ...services, ...reachable }, topology.consumers[0]],
    ];
    for (const [env, netns] of nodes) {
      const daemon = mystBackground(["daemon", "--api-port", "0"], env, { netns });
      background.push(daemon);
      await until(() => daemon.output().includes("REST API:") || daemon.child.exitCode !== null, `the daemon in ${netns} to listen`);
      if (daemon.child.exitCode !== null) throw new Error(`the daemon in ${netns} exited: ${daemon.output()}`);
      await json(env, netns, ["service", "start", "noop", "--country", "DE"]);
    }
  });
  after(async function () {
    for (const b of background.reverse()) await b.stop();
    await Promise.all([topology?.down(), nats?.stop(), chain?.stop()]);
    for (const t of tmps) t.cleanup();
  });

  const measured = async (env: NodeJS.ProcessEnv, netns: string) =>
    until(
      async () => {
        const s = await json(env, netns, ["status"]);
        return s.reachability?.state === "measured" ? s.reachability : undefined;
      },
      `the node in ${netns} to measure its reachability`,
      60_000,
      500,
    );

  it("behind a UPnP router: myst status says it is reachable directly on the mapped port, and the router forwards it", async function () {
    const [env, netns] = nodes[0];
    const r = await measured(env, netns);
    expect(r.summary).to.match(/^behind a home router that opened port \d+ for this node on 11\.3\.0\.2: reachable directly$/);
    expect(r.contacts[0]).to.include({ kind: "mapped", address: "11.3.0.2", protocol: "udp" });
    expect(upnpRules(topology.gateway)).to.include(`dport ${r.contacts[0].port}`);
    const human = await myst(["status"], env, 60_000, { netns });
    expect(human.stdout).to.include(`reachable: ${r.summary}`);
  });

  it("its proposal in discovery carries the mapped and punch-only contacts, and no private address", async function () {
    const [env, netns] = nodes[0];
    const r = await measured(env, netns);
    const identity = (await json(env, netns, ["identities", "list"]))[0].address;
    const listed = await until(
      async () => {
        const p = (await json(nodes[1][0], nodes[1][1], ["proposals", "--provider-id", identity]))[0];
        return p?.contacts?.find((c: { type: string }) => c.type === "direct/v1") ? p : undefined;
      },
      "discovery to list the proposal with its direct contact",
      60_000,
      500,
    );
    const direct = listed.contacts.find((c: { type: string }) => c.type === "direct/v1");
    expect(direct.nat).to.deep.equal({ mapping: "endpoint-independent", filtering: "address-and-port-dependent" });
    expect(direct.candidates).to.deep.equal(r.contacts);
    expect(JSON.stringify(listed)).not.to.match(/192\.168\.|100\.64\./);
  });

  it("behind a UPnP router inside a carrier's NAT: the router's port is not advertised, and status says why", async function () {
    const [env, netns] = nodes[1];
    const r = await measured(env, netns);
    expect(r.contacts).to.deep.equal([{ kind: "punch-only", address: "198.18.1.2", port: r.contacts[0].port, protocol: "udp" }]);
    expect(r.details.portMapping).to.include({ advertised: false });
    expect(r.summary).to.include("the internet sees 198.18.1.2");
    expect(upnpRules(topology.nat!.natRoutersOf(netns)[0])).not.to.include("dport");
  });

  it("measures again when the machine's addresses change (a new network)", async function () {
    const [env, netns] = nodes[0];
    const before = (await measured(env, netns)).measuredAt;
    topology.exec(netns, ["/usr/sbin/ip", "addr", "add", "192.168.88.50/24", "dev", "eth0"]);
    const again = await until(
      async () => {
        const r = await measured(env, netns);
        return r.measuredAt > before ? r : undefined;
      },
      "a new measurement after the address change",
      60_000,
      500,
    );
    expect(again.contacts.map((c: { kind: string }) => c.kind)).to.deep.equal(["mapped", "punch-only"]);
  });

  it("a stopped daemon gives the router's port back", async function () {
    const [env, netns] = nodes[0];
    const port = (await measured(env, netns)).contacts[0].port;
    await background[1].stop();
    expect(upnpRules(topology.gateway)).not.to.include(`dport ${port}`);
  });
});
