import { expect } from "chai";
import { buildCli, cliProviderAndConsumer, myst, mystBackground } from "../../support/cli";
import { testChain, type LocalChain } from "../../../scripts/lib/local-chain";
import { startNatsServer, type NatsServer } from "../../../scripts/lib/test-network";
import { tempDir } from "../../../scripts/lib/tmp";
import { until } from "../../../scripts/lib/until";

describe("myst prober (spawned processes)", function () {
  this.timeout(180_000);
  let chain: LocalChain;
  let nats: NatsServer;
  const dirs = [tempDir(), tempDir()];
  const background: ReturnType<typeof mystBackground>[] = [];

  before(async function () {
    buildCli();
    [chain, nats] = await Promise.all([testChain(), startNatsServer()]);
  });
  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await Promise.all([chain?.stop(), nats?.stop()]);
    dirs.forEach((d) => d.cleanup());
  });

  it("probes a provider as a consumer (paying its price), publishes the signed probe result, and the provider reads it in `myst quality`", async function () {
    const { providerEnv, consumerEnv, discovery } = await cliProviderAndConsumer(chain, nats.url, [dirs[0].dir, dirs[1].dir]);
    background.push(discovery);
    const provider = mystBackground(["service", "start", "noop", "--country", "SE"], providerEnv);
    background.push(provider);
    await until(
      async () => JSON.parse((await myst(["proposals", "--json", "--service-type", "noop"], consumerEnv)).stdout).length === 1,
      "the provider in discovery",
    );
    const id = JSON.parse((await myst(["identities", "list", "--json"], providerEnv)).stdout)[0].address.toLowerCase();

    // A tunnel type is refused with a reason (it would route this machine); bad flags too.
    const tunnel = await myst(["prober", "--service-type", "wireguard", "--once"], consumerEnv);
    expect(tunnel.code).to.not.equal(0);
    expect(tunnel.stderr).to.match(/would route this machine/);
    expect((await myst(["prober", "--service-type", "noop", "--sample", "0", "--once"], consumerEnv)).stderr).to.match(/--sample must be a whole number/);

    // No node runs for the consumer's data dir: the command runs one in the foreground for the round.
    const r = await myst(["prober", "--service-type", "noop", "--once", "--hold", "5", "--json"], consumerEnv);
    expect(r.code, r.stderr).to.equal(0);
    const round = JSON.parse(r.stdout);
    expect(round.probes).to.have.length(1);
    expect(round.probes[0]).to.include({ provider: id, serviceType: "noop" });
    // The noop service without a data path checks up to the tunnel.
    expect(round.probes[0].reached).to.equal("tunnel");
    expect(round.probes[0].failed).to.equal(null);

    const q = await until(async () => {
      const out = await myst(["quality", "--json"], providerEnv);
      const parsed = out.code === 0 ? JSON.parse(out.stdout) : undefined;
      return parsed?.services?.[0]?.probe?.results === 1 && parsed;
    }, "the probe result in the provider's quality");
    expect(q.rejected).to.equal(0);
    // One prober is no median: the score waits for three.
    expect(q.services[0].probe.score).to.equal(null);
    expect(q.services[0].history.at(-1).probes).to.equal(1);
  });
});
