import { expect } from "chai";
import { JsonRpcProvider } from "ethers";
import { connectChain, type ChainConnection } from "../../node/chain/connect";
import { ConsumerVaultClient } from "../../node/chain/vault";
import { rpcRequest } from "../../node/chain/rpc-request";
import { downloadFrom, fetchFrom, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { buildCli, cliEnv, depositWithCli, myst, mystBackground, onConsumerMachine, serviceStartArgs, startCliDiscovery } from "../support/cli";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { freePort } from "../../scripts/lib/local-chain";
import { requireE2E } from "../../scripts/lib/prereqs";
import { tempDir } from "../../scripts/lib/tmp";
import { registerIdentityIn } from "../../scripts/lib/data-dir-setup";

describe("e2e: one deposit pays two providers in turn (real openvpn, netns, chain)", function () {
  this.timeout(240_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  let conn: ChainConnection;
  const tmps = [tempDir("myst-e2e-"), tempDir("myst-e2e-"), tempDir("myst-e2e-")];
  const background: ReturnType<typeof mystBackground>[] = [];

  const json = async (env: NodeJS.ProcessEnv, args: string[], netns?: string) => {
    const r = await myst([...args, "--json"], env, 120_000, { netns });
    if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats, topology] = await Promise.all([testChain(), startNatsServer(), topologyUp({ tag: "vlt", consumers: 1, providers: 2 })]);
    conn = await connectChain({ rpcUrl: chain.rpcUrl, deployment: chain.deployment });
  });

  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    conn?.close();
    await topology?.down();
    await Promise.all([chain?.stop(), nats?.stop()]);
    tmps.forEach((t) => t.cleanup());
  });

  it("serves a consumer with one deposit by two providers in turn, the second with no transaction, and both are paid on chain", async function () {
    const base = cliEnv(chain, nats.url, await freePort());
    const [providerA, providerB, consumer] = tmps.map((t) => ({ ...base, MYST_DATA_DIR: t.dir }));
    const ids = [];
    for (const env of [providerA, providerB, consumer]) ids.push(await registerIdentityIn(chain, env));
    const [a, b, c] = ids;
    background.push(await startCliDiscovery(base));
    await depositWithCli(consumer, "5", "1");

    for (const [i, env] of [providerA, providerB].entries()) {
      const at = { provider: topology.providers[i], providerAddress: topology.providerAddressOf(i) };
      const p = mystBackground(serviceStartArgs("openvpn", at, ["--price-per-gib", "0.1", "--invoice-every", "1", "--settle-on-session-end"]), env);
      background.push(p);
    }
    // The consumer's node on its own machine, reaching chain, broker and discovery over the routers.
    const consumerNs = topology.consumers[0];
    const onMachine = await onConsumerMachine(topology, consumer);
    const consumerJson = (args: string[]) => json(onMachine, args, consumerNs);
    await until(async () => (await consumerJson(["proposals", "--service-type", "openvpn"])).length === 2, "both proposals in discovery");
    const node = mystBackground(["daemon", "--api-port", "0"], onMachine, { netns: consumerNs });
    background.push(node);
    await until(() => node.output().includes("REST API:"), "the consumer's node");

    const rpc = new JsonRpcProvider(rpcRequest(chain.rpcUrl), chain.deployment.chainId, { staticNetwork: true });
    try {
      for (const [i, provider] of [a, b].entries()) {
        const nonce = await rpc.getTransactionCount(c);
        const connected = await consumerJson(["connect", provider]);
        expect(connected).to.include({ state: "connected", provider });
        expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerAddressOf(i));
        expect(downloadFrom(topology, topology.consumers[0], `${topology.internetUrl}?bytes=2000000`)).to.equal(2_000_000);
        await until(async () => BigInt((await consumerJson(["status"])).promisedWei) > 0n, `a promise to provider ${i}`);
        await consumerJson(["disconnect"]);
        expect(await rpc.getTransactionCount(c), `the consumer's transactions for its session with provider ${i}`).to.equal(nonce);
      }
    } finally {
      rpc.destroy();
    }

    const vault = new ConsumerVaultClient(conn);
    const settled = await until(async () => {
      const [pa, pb] = await Promise.all([vault.pair(c, a), vault.pair(c, b)]);
      return pa.settled > 0n && pb.settled > 0n && [pa.settled, pb.settled];
    }, "both pairs settled on chain");
    for (const [i, env] of [providerA, providerB].entries()) {
      const earnings = await json(env, ["earnings"]);
      expect(earnings.unsettledWei, `provider ${i}`).to.equal("0");
      expect(BigInt(earnings.settledWei)).to.equal(settled[i]);
      expect(await vault.earnings(ids[i])).to.equal(settled[i]);
    }
    const state = await vault.vault(c);
    expect(state.balance).to.equal(5n * 10n ** 18n - settled[0] - settled[1]);
    expect(state.escrow).to.equal(10n ** 18n);
  });
});
