import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { buildCli, cliEnv, cliProviderAndConsumer, myst, mystBackground, registerWithCli, startCliDiscovery } from "../../support/cli";
import { testChain, type LocalChain } from "../../../scripts/lib/local-chain";
import { startNatsServer, type NatsServer } from "../../../scripts/lib/test-network";
import { freePort } from "../../../scripts/lib/local-chain";
import { tempDir } from "../../../scripts/lib/tmp";
import { until } from "../../../scripts/lib/until";

describe("myst discovery, service start and proposals (spawned processes)", function () {
  let chain: LocalChain;
  let nats: NatsServer;
  const tmp = tempDir();
  const background: ReturnType<typeof mystBackground>[] = [];
  let env: NodeJS.ProcessEnv;

  before(async function () {
    buildCli();
    [chain, nats] = await Promise.all([testChain(), startNatsServer()]);
    env = cliEnv(chain, nats.url, await freePort(), { MYST_DATA_DIR: tmp.dir });
  });
  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await Promise.all([chain?.stop(), nats?.stop()]);
    tmp.cleanup();
  });

  it("shows a started provider in `myst proposals` with matching filters, and not after it stops", async function () {
    const id = await registerWithCli(chain, env);
    const discovery = await startCliDiscovery(env);
    background.push(discovery);

    const provider = mystBackground(
      ["service", "start", "noop", "--country", "DE", "--ip-type", "residential", "--price-per-hour", "0.02", "--price-per-gib", "0.1", "--bandwidth", "250"],
      env,
    );
    background.push(provider);

    const found = await until(async () => {
      const r = await myst(["proposals", "--json", "--country", "de", "--service-type", "noop", "--max-price-per-gib", "0.1"], env);
      const list = JSON.parse(r.stdout);
      return list.length === 1 && list;
    }, "the provider to appear in discovery").catch((e) => {
      throw new Error(`${e.message}\nprovider: ${provider.output()}\ndiscovery: ${discovery.output()}`);
    });
    expect(found[0]).to.include({ provider: id, serviceType: "noop", bandwidthMbps: 250 });
    expect(found[0].price).to.deep.equal({ currency: "MYST", perHour: "20000000000000000", perGiB: "100000000000000000" });

    const human = await myst(["proposals", "--country", "DE"], env);
    expect(human.stdout).to.include(id);
    expect(human.stdout).to.include("0.02 MYST/h");
    const none = await myst(["proposals", "--json", "--country", "FR"], env);
    expect(JSON.parse(none.stdout)).to.deep.equal([]);
    const cheaper = await myst(["proposals", "--json", "--max-price-per-hour", "0.01"], env);
    expect(JSON.parse(cheaper.stdout)).to.deep.equal([]);
    // Several replicas in the config: a dead first one is passed over, in the environment or by flags.
    const failover = await myst(["proposals", "--json", "--country", "DE"], { ...env, MYST_DISCOVERY_URLS: `http://127.0.0.1:9,${env.MYST_DISCOVERY_URLS}` });
    expect(JSON.parse(failover.stdout).map((p: { provider: string }) => p.provider)).to.deep.equal([id]);
    const flags = await myst(["--discovery-url", "http://127.0.0.1:9", "--discovery-url", env.MYST_DISCOVERY_URLS!, "proposals", "--json"], env);
    expect(JSON.parse(flags.stdout).map((p: { provider: string }) => p.provider)).to.deep.equal([id]);

    expect(await provider.stop()).to.equal(0);
    await until(async () => JSON.parse((await myst(["proposals", "--json"], env)).stdout).length === 0, "the proposal to vanish");
    expect(await discovery.stop()).to.equal(0);
  });

  it("connects in the foreground, answers status through the node's API on its unix socket, and a second Ctrl-C does not cut the disconnect short", async function () {
    const dirs = [tempDir(), tempDir()];
    try {
      const { providerEnv, consumerEnv, discovery } = await cliProviderAndConsumer(chain, nats.url, [dirs[0].dir, dirs[1].dir]);
      background.push(discovery);
      const provider = mystBackground(["service", "start", "noop", "--country", "SE"], providerEnv);
      background.push(provider);
      await until(
        async () => JSON.parse((await myst(["proposals", "--json", "--service-type", "noop"], consumerEnv)).stdout).length === 1,
        "the provider in discovery",
      );

      const consumer = mystBackground(["connect", "--service", "noop", "--country", "SE"], consumerEnv);
      background.push(consumer);
      await until(() => consumer.output().includes("Ctrl-C") || consumer.child.exitCode !== null, "the connection").catch((e) => {
        throw new Error(`${e.message}\nconsumer: ${consumer.output()}`);
      });
      const status = await myst(["status", "--json"], consumerEnv);
      expect(JSON.parse(status.stdout)).to.include({ state: "connected", serviceType: "noop" });

      // Ctrl-C twice while the provider does not answer (stopped): the consumer waits for its
      // acknowledgement, and the second Ctrl-C must not kill it halfway through the teardown.
      provider.child.kill("SIGSTOP");
      try {
        consumer.child.kill("SIGINT");
        await until(() => consumer.output().includes("SIGINT, disconnecting"), "the first Ctrl-C to be taken");
        consumer.child.kill("SIGINT");
        expect(await consumer.stop(), consumer.output()).to.equal(0);
      } finally {
        provider.child.kill("SIGCONT");
      }
      expect(consumer.output()).to.include("still disconnecting");
      expect(consumer.output()).to.include("myst: disconnected (consumer disconnected)");
      expect(fs.existsSync(path.join(dirs[1].dir, "node.sock"))).to.equal(false);
      const after = await myst(["status", "--json"], consumerEnv);
      expect(JSON.parse(after.stdout)).to.deep.equal({ state: "disconnected" });
      expect(await provider.stop()).to.equal(0);
      expect(await discovery.stop()).to.equal(0);
    } finally {
      for (const d of dirs) d.cleanup();
    }
  });

  it("names bad flags and an unreachable discovery service in one line", async function () {
    let r = await myst(["proposals", "--max-price-per-hour", "cheap"], env);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/--max-price-per-hour "cheap" is not an amount of MYST/);
    r = await myst(["proposals", "--ip-type", "satellite"], env);
    expect(r.stderr).to.match(/--ip-type must be one of/);
    r = await myst(["proposals"], { ...env, MYST_DISCOVERY_URLS: "http://127.0.0.1:9" });
    expect(r.code).to.equal(1);
    expect(r.stderr.trim()).to.equal("myst: cannot reach discovery at http://127.0.0.1:9");
    r = await myst(["service", "start", "teleport"], env);
    expect(r.stderr).to.match(/unknown service type "teleport"/);
  });
});
