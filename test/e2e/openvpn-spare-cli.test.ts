import { expect } from "chai";
import { fetchFrom, routesOf, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { buildCli, cliProviderAndConsumer, mystBackground, mystJson, onConsumerMachine, serviceStartArgs } from "../support/cli";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { requireE2E } from "../../scripts/lib/prereqs";
import { tempDir } from "../../scripts/lib/tmp";
import { pidsIn } from "../support/netns-processes";

/**
 * The spare openvpn (`MYST_OPENVPN_SPARE=true`, services/openvpn/spare.ts) as a user gets it: `myst connect` on the
 * consumer's own machine (its namespace) to a `myst daemon` selling OpenVPN, `myst disconnect`, and what is left.
 */
describe("e2e: the spare openvpn through the CLI (MYST_OPENVPN_SPARE=true, real openvpn, netns)", function () {
  this.timeout(240_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  let consumerNs: string;
  const tmps = [tempDir("myst-e2e-"), tempDir("myst-e2e-")];
  const background: ReturnType<typeof mystBackground>[] = [];
  let providerEnv: NodeJS.ProcessEnv;
  let consumerEnv: NodeJS.ProcessEnv;

  const json = (env: NodeJS.ProcessEnv, args: string[]) => mystJson(env, args, env === consumerEnv ? consumerNs : undefined);
  /** The openvpn processes in the consumer's namespace, by pid. */
  const openvpns = () => pidsIn(consumerNs, "openvpn");
  const withSocket = () => [...topology.exec(consumerNs, ["/usr/bin/ss", "-H", "-uanp"]).matchAll(/"openvpn",pid=(\d+)/g)].map((m) => Number(m[1]));

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats, topology] = await Promise.all([testChain(), startNatsServer(), topologyUp({ consumers: 1 })]);
    consumerNs = topology.consumers[0];
    const nodes = await cliProviderAndConsumer(chain, nats.url, [tmps[0].dir, tmps[1].dir]);
    providerEnv = nodes.providerEnv;
    consumerEnv = { ...(await onConsumerMachine(topology, nodes.consumerEnv)), MYST_OPENVPN_SPARE: "true" };
    background.push(nodes.discovery);
    const provider = mystBackground(["daemon", "--api-port", "0"], { ...providerEnv, MYST_LOG_LEVEL: "info" });
    background.push(provider);
    await until(() => provider.output().includes("REST API:"), "the provider daemon to listen");
    await json(providerEnv, serviceStartArgs("openvpn", topology));
    await until(async () => (await json(consumerEnv, ["proposals", "--service-type", "openvpn"])).length === 1, "the proposal in discovery");
  });

  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await topology?.down();
    await Promise.all([chain?.stop(), nats?.stop()]);
    tmps.forEach((t) => t.cleanup());
  });

  it("connects on an openvpn with a spare beside it, and `myst disconnect` leaves no openvpn, the consumer's routes as before and the provider's session released", async function () {
    const routes = routesOf(topology, consumerNs);
    const consumer = mystBackground(["connect", "--service", "openvpn"], { ...consumerEnv, MYST_LOG_LEVEL: "info" }, { netns: consumerNs });
    background.push(consumer);
    await until(() => consumer.output().includes("connected: session") || consumer.child.exitCode !== null, "myst connect to connect", 60_000);
    expect(consumer.child.exitCode, consumer.output()).to.equal(null);
    expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.providerUplinkAddress);
    // The tunnel's openvpn (its UDP socket) and the next connection's spare, started once this one was settled (none).
    await until(() => openvpns().length === 2, "the tunnel's openvpn and the next spare");
    const tunnel = withSocket();
    expect(tunnel).to.have.length(1);
    expect(openvpns()).to.include(tunnel[0]);
    expect((await json(providerEnv, ["service", "list"]))[0].sessions).to.equal(1);

    expect((await json(consumerEnv, ["disconnect"])).state).to.equal("disconnected");
    // The provider's side of the session is over when the disconnect returns.
    expect((await json(providerEnv, ["service", "list"]))[0].sessions).to.equal(0);
    await until(() => consumer.child.exitCode !== null || consumer.child.signalCode !== null, "myst connect to exit");
    expect({ code: consumer.child.exitCode, signal: consumer.child.signalCode }).to.deep.equal({ code: 0, signal: null });
    // The foreground node stopped its spare with it: no openvpn, no route of the tunnel's left.
    expect(openvpns()).to.deep.equal([]);
    expect(routesOf(topology, consumerNs)).to.equal(routes);
    expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.consumerAddress(0));
  });
});
