import { expect } from "chai";
import fs from "node:fs";
import { fetchFrom, resolveFrom, routesOf, topologyUp, type Topology, keepFetching } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { buildCli, cliProviderAndConsumer, myst, mystBackground, onConsumerMachine, serviceStartArgs } from "../support/cli";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { requireE2E } from "../../scripts/lib/prereqs";
import { tempDir } from "../../scripts/lib/tmp";
import { registerIdentityIn } from "../../scripts/lib/data-dir-setup";

/**
 * `myst connect --reconnect` (issue 15, item 4): two providers, each behind its own NAT gateway;
 * the consumer (the `myst` CLI on its own machine: node and tunnel in its namespace, broker and
 * discovery over the routers, also between sessions) connects to the first; the first
 * provider's daemon is SIGKILLed; the consumer ends up on the second, and the internet host counts
 * zero packets from the consumer's own addresses in between.
 */
describe("e2e: --reconnect moves to the next provider without a leak (real openvpn, netns, CLI)", function () {
  this.timeout(300_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  let consumerNs: string;
  const tmps = [tempDir("myst-e2e-"), tempDir("myst-e2e-"), tempDir("myst-e2e-")];
  const background: ReturnType<typeof mystBackground>[] = [];
  let providerEnvs: NodeJS.ProcessEnv[];
  let consumerEnv: NodeJS.ProcessEnv;

  const json = async (env: NodeJS.ProcessEnv, args: string[]) => {
    // The consumer's CLI runs where its node does: on the consumer's machine.
    const r = await myst([...args, "--json"], env, 120_000, { netns: env === consumerEnv ? consumerNs : undefined });
    if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  async function startProvider(i: number) {
    const daemon = mystBackground(["daemon", "--api-port", "0", "--invoice-every", "1"], { ...providerEnvs[i], MYST_LOG_LEVEL: "info" });
    background.push(daemon);
    await until(() => daemon.output().includes("REST API:"), `provider ${i + 1}'s daemon to listen`);
    await json(providerEnvs[i], serviceStartArgs("openvpn", { provider: topology.providers[i], providerAddress: topology.providerAddressOf(i) }));
    return daemon;
  }

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats, topology] = await Promise.all([testChain(), startNatsServer(), topologyUp({ consumers: 1, providers: 2 })]);
    consumerNs = topology.consumers[0];
    const nodes = await cliProviderAndConsumer(chain, nats.url, [tmps[0].dir, tmps[1].dir]);
    background.push(nodes.discovery);
    consumerEnv = await onConsumerMachine(topology, nodes.consumerEnv);
    const secondEnv = { ...nodes.base, MYST_DATA_DIR: tmps[2].dir };
    await registerIdentityIn(chain, secondEnv);
    providerEnvs = [nodes.providerEnv, secondEnv];
  });

  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await topology?.down();
    await Promise.all([chain?.stop(), nats?.stop()]);
    tmps.forEach((t) => t.cleanup());
  });

  it("after SIGKILL of the provider, reconnects to the next matching provider while zero packets from the consumer's own addresses reach the internet host", async function () {
    const before = {
      routes: routesOf(topology, consumerNs),
      resolver: fs.readFileSync(topology.resolvConfOf(consumerNs), "utf8"),
      firewall: topology.exec(consumerNs, ["/usr/sbin/nft", "list", "ruleset"]),
    };
    const first = await startProvider(0);
    await until(async () => (await json(consumerEnv, ["proposals", "--service-type", "openvpn"])).length === 1, "the first proposal in discovery");
    const consumer = mystBackground(["connect", "--country", "DE", "--reconnect"], { ...consumerEnv, MYST_LOG_LEVEL: "info" }, { netns: consumerNs });
    background.push(consumer);
    await until(() => consumer.output().includes("connected: session") || consumer.child.exitCode !== null, "myst connect to connect", 60_000);
    expect(consumer.child.exitCode, consumer.output()).to.equal(null);
    const firstStatus = await json(consumerEnv, ["status"]);
    expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.providerAddressOf(0));

    // The next matching provider appears only now: the consumer picked the first by its filters.
    await startProvider(1);
    const proposals = await until(async () => {
      const list = await json(consumerEnv, ["proposals", "--service-type", "openvpn"]);
      return list.length === 2 && list;
    }, "the second proposal in discovery");
    const secondId = proposals.map((p: { provider: string }) => p.provider).find((id: string) => id !== firstStatus.provider);

    const packets = topology.packetsFrom(0);
    const queries = topology.lanResolverQueries();
    // An application that keeps trying to reach the internet host the whole time (stopped by PID below).
    const app = keepFetching(consumerNs, topology.internetUrl);
    try {
      first.child.kill("SIGKILL");
      const status = await until(
        async () => {
          const s = await json(consumerEnv, ["status"]);
          return s.state === "connected" && s.provider === secondId && s;
        },
        "the consumer to reconnect to the second provider",
        120_000,
      );
      expect(status.reconnect).to.include({ state: "connected", provider: secondId });
      expect(status.reconnect.attempts).to.be.within(1, status.reconnect.maxAttempts);
      expect(status.sessionId).to.not.equal(firstStatus.sessionId);
      expect(consumer.output()).to.match(/reconnecting \(attempt \d+ of 5/);
      // The foreground command reports it on its next look at the node (every 200 ms): wait for the line.
      await until(() => consumer.output().includes(`reconnected: session ${status.sessionId} with provider ${secondId}`), "the reconnect reported", 10_000);
      // The internet host now sees the second provider; names resolve through it.
      expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.providerAddressOf(1));
      // (Once, in a full parallel run, the first lookup right after the reconnect got no answer; the
      // next ones did. Names must resolve through the second provider, and only through it.)
      await until(
        () => resolveFrom(topology, consumerNs, topology.whoamiName)?.join() === topology.internetAddress,
        "names resolved through the second provider",
        20_000,
      );
      expect(resolveFrom(topology, consumerNs, topology.whoamiName)).to.deep.equal([topology.internetAddress]);
    } finally {
      app.kill("SIGKILL");
    }
    expect(topology.packetsFrom(0)).to.deep.equal(packets);
    expect(topology.lanResolverQueries(), "queries to the consumer's LAN resolver").to.equal(queries);

    await json(consumerEnv, ["disconnect"]);
    await until(() => consumer.child.exitCode !== null, "myst connect to exit");
    expect(consumer.child.exitCode).to.equal(0);
    expect({
      routes: routesOf(topology, consumerNs),
      resolver: fs.readFileSync(topology.resolvConfOf(consumerNs), "utf8"),
      firewall: topology.exec(consumerNs, ["/usr/sbin/nft", "list", "ruleset"]),
    }).to.deep.equal(before);
  });
});
