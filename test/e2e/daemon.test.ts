import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { downloadFrom, fetchFrom, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { buildCli, cliProviderAndConsumer, myst, mystBackground, serviceStartArgs } from "../support/cli";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { requireE2E } from "../../scripts/lib/prereqs";
import { tempDir } from "../../scripts/lib/tmp";

/** Reads one sample of a Prometheus metric (0 when the series is absent). */
function sample(metrics: string, series: string): number {
  const line = metrics.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** What differs between the tunnel types, as the daemons leave it on the machine. */
const TUNNELS = [
  { service: "openvpn", process: "openvpn", pidFile: "openvpn.pid", providerDevice: /myst0/, consumerDevice: /tun|mystc0/, chain: /-j MYST-F-MYST0\b/g },
  {
    service: "wireguard",
    process: "wireguard-go",
    pidFile: "wireguard-go.pid",
    // A default name (the first free mystwgN): another test file may hold mystwg0 meanwhile.
    providerDevice: /mystwg\d+/,
    consumerDevice: /mwc/,
    chain: /-j MYST-F-MYSTWG\d+\b/g,
  },
] as const;

for (const t of TUNNELS)
  describe(`e2e: two daemons sell and buy ${t.service} through the CLI and the REST API (real ${t.process}, netns)`, function () {
    this.timeout(180_000);
    let chain: LocalChain;
    let nats: NatsServer;
    let topology: Topology;
    const tmps = [tempDir("myst-e2e-"), tempDir("myst-e2e-")];
    const background: ReturnType<typeof mystBackground>[] = [];
    let providerEnv: NodeJS.ProcessEnv;
    let consumerEnv: NodeJS.ProcessEnv;

    const json = async (env: NodeJS.ProcessEnv, args: string[]) => {
      const r = await myst([...args, "--json"], env, 120_000);
      if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    };
    const api = async (env: NodeJS.ProcessEnv, route: string) => {
      const endpoint = JSON.parse(fs.readFileSync(path.join(env.MYST_DATA_DIR!, "daemon.json"), "utf8"));
      const token = fs.readFileSync(path.join(env.MYST_DATA_DIR!, "api-token"), "utf8").trim();
      return (await fetch(endpoint.url + route, { headers: { authorization: `Bearer ${token}` } })).text();
    };

    before(async function () {
      requireE2E(this);
      buildCli();
      [chain, nats, topology] = await Promise.all([testChain(), startNatsServer(), topologyUp({ consumers: 1 })]);
      const nodes = await cliProviderAndConsumer(chain, nats.url, [tmps[0].dir, tmps[1].dir]);
      ({ providerEnv, consumerEnv } = nodes);
      background.push(nodes.discovery);
    });

    after(async function () {
      await Promise.all(background.map((b) => b.stop()));
      await topology?.down();
      await Promise.all([chain?.stop(), nats?.stop()]);
      tmps.forEach((t) => t.cleanup());
    });

    it("routes the consumer through the provider, meters and pays, and cleans up when the daemons stop", async function () {
      const provider = mystBackground(["daemon", "--api-port", "0", "--invoice-every", "1"], { ...providerEnv, MYST_LOG_LEVEL: "info" });
      const consumer = mystBackground(["daemon", "--api-port", "0"], { ...consumerEnv, MYST_LOG_LEVEL: "info" });
      background.push(provider, consumer);
      await until(() => provider.output().includes("REST API:") && consumer.output().includes("REST API:"), "both daemons to listen");

      // The default device: WireGuard takes the first free mystwgN.
      const started = await json(providerEnv, serviceStartArgs(t.service, topology, ["--price-per-gib", "0.1"]));
      expect(started).to.include({ type: t.service });
      await until(
        async () => (await json(consumerEnv, ["proposals", "--service-type", t.service, "--country", "DE"])).length === 1,
        "the proposal in discovery",
      );

      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.consumerAddress(0));
      const connected = await json(consumerEnv, ["connect", "--service", t.service, "--country", "DE", "--netns", topology.consumers[0]]);
      expect(connected).to.include({ state: "connected", serviceType: t.service });
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      expect(downloadFrom(topology, topology.consumers[0], `${topology.internetUrl}?bytes=4000000`)).to.equal(4_000_000);

      const stats = await until(async () => {
        const s = await json(consumerEnv, ["status"]);
        return s.bytesIn > 4_000_000 && BigInt(s.promisedWei) > 0n && s;
      }, "the download metered and paid for");
      expect(stats.sessionId).to.equal(connected.sessionId);
      const consumerMetrics = await api(consumerEnv, "/metrics");
      expect(sample(consumerMetrics, 'myst_session_bytes_total{role="consumer",direction="in"}')).to.be.greaterThan(4_000_000);
      expect(sample(consumerMetrics, 'myst_sessions_active{role="consumer"}')).to.equal(1);
      const services = await json(providerEnv, ["service", "list"]);
      expect(services[0]).to.include({ type: t.service, sessions: 1 });

      const ended = await json(consumerEnv, ["disconnect"]);
      expect(ended).to.include({ state: "disconnected", sessionId: connected.sessionId });
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.consumerAddress(0));
      await until(
        async () => sample(await api(providerEnv, "/metrics"), `myst_sessions_ended_total{role="provider",service_type="${t.service}"}`) === 1,
        "the provider to end the session",
      );
      const providerMetrics = await api(providerEnv, "/metrics");
      expect(sample(providerMetrics, 'myst_session_bytes_total{role="provider",direction="out"}')).to.be.greaterThan(4_000_000);
      expect(sample(providerMetrics, 'myst_promises_total{role="provider",result="accepted"}')).to.be.greaterThan(0);

      // Connected again, then the consumer daemon stops: it takes its tunnel down with it.
      await json(consumerEnv, ["connect", connected.provider, "--service", t.service, "--netns", topology.consumers[0]]);
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.providerUplinkAddress);
      expect(await consumer.stop()).to.equal(0);
      expect(fetchFrom(topology, topology.consumers[0], topology.internetUrl)).to.equal(topology.consumerAddress(0));
      expect(topology.exec(topology.consumers[0], ["/usr/sbin/ip", "route"])).to.not.match(t.consumerDevice);

      // The provider daemon stops its tunnel process and settles what it was promised.
      expect(await provider.stop()).to.equal(0);
      expect(topology.exec(topology.provider, ["/usr/sbin/ip", "link"])).to.not.match(t.providerDevice);
      const earnings = await json(providerEnv, ["earnings"]);
      expect(earnings.unsettledWei).to.equal("0");
      expect(BigInt(earnings.settledWei)).to.be.greaterThan(0n);
      const history = await json(providerEnv, ["sessions"]);
      expect(history.find((h: { id: string }) => h.id === connected.sessionId).bytes).to.be.greaterThan(4_000_000);
    });
    it(`leaves no ${t.process} behind when the provider daemon is SIGKILLed, and brings its service back at the next start`, async function () {
      const tunnelPids = () =>
        topology
          .exec(topology.provider, ["/usr/sbin/ip", "netns", "pids", topology.provider])
          .split(/\s+/)
          .filter((pid) => pid && fs.existsSync(`/proc/${pid}/comm`) && fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim() === t.process);
      const firewall = () =>
        topology.exec(topology.provider, ["/usr/sbin/iptables", "-S"]) + topology.exec(topology.provider, ["/usr/sbin/iptables", "-t", "nat", "-S"]);
      const first = mystBackground(["daemon", "--api-port", "0"], { ...providerEnv, MYST_LOG_LEVEL: "info" });
      background.push(first);
      await until(() => first.output().includes("REST API:"), "the provider daemon to listen");
      // The test before left the service remembered in services.json; otherwise start it now.
      const running = await json(providerEnv, ["service", "list"]);
      if (!running.some((s: { type: string }) => s.type === t.service)) {
        await json(providerEnv, serviceStartArgs(t.service, topology));
      }
      const pidFile = path.join(providerEnv.MYST_DATA_DIR!, "services", t.service, t.pidFile);
      const orphan = Number(fs.readFileSync(pidFile, "utf8"));
      expect(tunnelPids()).to.deep.equal([String(orphan)]);

      first.child.kill("SIGKILL");
      // Its tunnel process goes with it (parent-death signal): no server carrying unbilled traffic.
      await until(() => tunnelPids().length === 0, "the dead daemon's tunnel process to exit", 15_000);

      const second = mystBackground(["daemon", "--api-port", "0"], { ...providerEnv, MYST_LOG_LEVEL: "info" });
      background.push(second);
      await until(
        async () => second.output().includes("REST API:") && (await json(providerEnv, ["service", "list"])).some((s: { type: string }) => s.type === t.service),
        "the remembered service to start again",
        60_000,
      ).catch((err) => {
        throw new Error(`${err.message}; the daemon said: ${second.output().slice(-3000)}`);
      });
      expect(tunnelPids()).to.have.length(1);
      expect(JSON.parse(fs.readFileSync(path.join(providerEnv.MYST_DATA_DIR!, "services.json"), "utf8"))[0].spec.type).to.equal(t.service);
      // One set of the service's firewall rules, not one per start.
      expect(firewall().match(t.chain)).to.have.length(1);

      // A clean stop takes everything down: the process, the tun device, the firewall chains.
      expect(await second.stop()).to.equal(0);
      expect(tunnelPids()).to.deep.equal([]);
      expect(topology.exec(topology.provider, ["/usr/sbin/ip", "link"])).to.not.match(t.providerDevice);
      expect(firewall()).to.not.match(/MYST-/);
    });
  });
