import { expect } from "chai";
import { testChain, type LocalChain, freePort } from "../../scripts/lib/local-chain";
import { requireE2E } from "../../scripts/lib/prereqs";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { tempDir } from "../../scripts/lib/tmp";
import { downloadFrom, fetchFrom, topologyUp, type Topology } from "../../scripts/lib/topology";
import { mystJson } from "../../scripts/lib/myst-cli";
import { until } from "../../scripts/lib/until";
import { buildCli, cliEnv, mystBackground, onConsumerMachine, startCliDiscovery } from "../support/cli";
import { depositIn, registerIdentityIn } from "../../scripts/lib/data-dir-setup";

// Its own file (was the NAT matrix's second half): mocha's parallel runner gives it a worker of its own, so its
// 5 minutes of broker outage wait beside the matrix's cells instead of after them.
/**
 * A session behind routers that forget idle UDP mappings after 30 s: it stays up through 3 idle
 * minutes (keepalives hold the mappings), comes back within 5 s after the provider's router loses
 * every mapping (conntrack flushed, as a reboot does), and keeps running and paying while the broker
 * is down for 5 minutes (its messages take the direct channel). About 5.5 minutes, by its nature.
 */
describe("e2e: a punched session outlives idle routers, a lost mapping and a 5-minute broker outage", function () {
  this.timeout(900_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  const tmps = [tempDir("myst-nat-p-"), tempDir("myst-nat-c-")];
  const background: ReturnType<typeof mystBackground>[] = [];
  let consumerEnv: NodeJS.ProcessEnv;
  let providerEnv: NodeJS.ProcessEnv;

  const json = mystJson;

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats, topology] = await Promise.all([
      testChain(),
      startNatsServer(),
      topologyUp({ consumers: 1, nat: { provider: "eim", consumer: "eim", udpTimeoutSeconds: 30 } }),
    ]);
    const base = cliEnv(chain, nats.url, await freePort());
    for (const d of tmps) await registerIdentityIn(chain, { ...base, MYST_DATA_DIR: d.dir });
    await depositIn({ ...base, MYST_DATA_DIR: tmps[1].dir }, "5", "1");
    background.push(await startCliDiscovery(base));
    const machine = { ...(await onConsumerMachine(topology, base)), MYST_STUN_SERVERS: topology.nat!.stunServers.join(","), MYST_LOG_LEVEL: "info" };
    providerEnv = { ...machine, MYST_DATA_DIR: tmps[0].dir };
    consumerEnv = { ...machine, MYST_DATA_DIR: tmps[1].dir };
    const provider = mystBackground(["daemon", "--api-port", "0", "--invoice-every", "1"], providerEnv, { netns: topology.provider });
    background.push(provider);
    await until(() => provider.output().includes("REST API:") || provider.child.exitCode !== null, "the provider daemon to listen");
    await json(
      providerEnv,
      [
        "service",
        "start",
        "wireguard",
        "--public-ip",
        topology.nat!.publicAddressOf(topology.provider),
        "--country",
        "DE",
        "--price-per-gib",
        "0.1",
        "--device",
        `mwp${topology.tag}`,
      ],
      topology.provider,
    );
    const consumer = mystBackground(["daemon", "--api-port", "0"], consumerEnv, { netns: topology.consumers[0] });
    background.push(consumer);
    await until(() => consumer.output().includes("REST API:") || consumer.child.exitCode !== null, "the consumer daemon to listen");
  });

  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await topology?.down();
    await Promise.all([chain?.stop(), nats?.stop()]);
    tmps.forEach((t) => t.cleanup());
  });

  it("stays up idle, is re-punched after a conntrack flush, and runs and pays through a broker outage", async function () {
    const c = topology.consumers[0];
    const nat = topology.nat!;
    const seen = () => fetchFrom(topology, c, topology.internetUrl);
    await until(async () => (await json(consumerEnv, ["proposals", "--service-type", "wireguard"], c)).length === 1, "the proposal in discovery");
    const connected = await json(consumerEnv, ["connect", "--service", "wireguard", "--country", "DE"], c);
    expect(connected.path).to.include({ tunnel: "punched", channel: "direct" });
    expect(seen()).to.equal(nat.publicAddressOf(topology.provider));

    // The provider's router forgets every mapping: traffic is back within the 5 s.
    for (const router of nat.natRoutersOf(topology.provider)) nat.flushConntrack(router);
    await until(() => seen() === nat.publicAddressOf(topology.provider), "traffic back after the provider's router lost its mappings", 5_000);

    // The broker goes away for 5 minutes; the first 3 of them the tunnel carries nothing at all.
    const before = await json(consumerEnv, ["status"], c);
    await nats.stop({ keepStore: true });
    const outageStarted = Date.now();
    await new Promise((r) => setTimeout(r, 180_000)); // idle: the routers' 30 s UDP timeout passes six times
    expect(seen()).to.equal(nat.publicAddressOf(topology.provider));
    expect(downloadFrom(topology, c, `${topology.internetUrl}?bytes=3000000`)).to.equal(3_000_000);
    const paying = await until(
      async () => {
        const s = await json(consumerEnv, ["status"], c);
        return s.state === "connected" && BigInt(s.promisedWei) > BigInt(before.promisedWei) && s;
      },
      "a promise for the download while the broker is down",
      30_000,
    );
    expect(paying.sessionId).to.equal(connected.sessionId);
    expect(paying.path.channel).to.equal("direct");
    await new Promise((r) => setTimeout(r, Math.max(0, 300_000 - (Date.now() - outageStarted))));
    const still = await json(consumerEnv, ["status"], c);
    expect(still).to.include({ state: "connected", sessionId: connected.sessionId });
    await nats.restart();
    expect(seen()).to.equal(nat.publicAddressOf(topology.provider));
    await json(consumerEnv, ["disconnect"], c);
  });
});
