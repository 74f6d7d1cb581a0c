import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { downloadFrom, fetchFrom, routesOf, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { buildCli, cliProviderAndConsumer, myst, mystBackground, onConsumerMachine, serviceStartArgs } from "../support/cli";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { requireE2E } from "../../scripts/lib/prereqs";
import { tempDir } from "../../scripts/lib/tmp";

/**
 * The whole consumer on its own machine (issue 25): its node — not only its tunnel — runs inside the
 * consumer's namespace, with its own default route through a router, and reaches the broker, the
 * chain and discovery over the routers at the services host, never on 127.0.0.1. When its tunnel
 * takes the default route and the kill switch closes, the node's own connections keep working, so
 * the session is confirmed, invoiced and paid — and a broker restart mid-session loses nothing.
 */
for (const service of ["openvpn", "wireguard"] as const)
  for (const shape of ["public", "forwarded"] as const)
    describe(`e2e: a consumer on its own machine (real ${service}, provider ${shape === "public" ? "with a public address" : "behind a router that forwards its port"})`, function () {
      this.timeout(240_000);
      let chain: LocalChain;
      let nats: NatsServer;
      let topology: Topology;
      let consumerNs: string;
      const tmps = [tempDir("myst-e2e-"), tempDir("myst-e2e-")];
      const background: ReturnType<typeof mystBackground>[] = [];
      let providerEnv: NodeJS.ProcessEnv;
      /** The consumer's node on its machine: chain, broker and discovery over the routers. */
      let consumerEnv: NodeJS.ProcessEnv;

      const json = async (env: NodeJS.ProcessEnv, args: string[], netns?: string) => {
        const r = await myst([...args, "--json"], env, 120_000, { netns });
        if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
        return JSON.parse(r.stdout);
      };
      const consumerJson = (args: string[]) => json(consumerEnv, args, consumerNs);
      /** GET on the consumer daemon's REST API, which listens on the consumer machine's loopback. */
      const consumerApi = (route: string) => {
        const endpoint = JSON.parse(fs.readFileSync(path.join(consumerEnv.MYST_DATA_DIR!, "daemon.json"), "utf8"));
        const token = fs.readFileSync(path.join(consumerEnv.MYST_DATA_DIR!, "api-token"), "utf8").trim();
        const script = `fetch(${JSON.stringify(endpoint.url + route)},{headers:{authorization:${JSON.stringify(`Bearer ${token}`)}}}).then(r=>r.text()).then(t=>process.stdout.write(t))`;
        return JSON.parse(topology.exec(consumerNs, [process.execPath, "-e", script], { timeoutMs: 20_000 }));
      };

      before(async function () {
        requireE2E(this);
        buildCli();
        [chain, nats, topology] = await Promise.all([testChain(), startNatsServer(), topologyUp({ consumers: 1, provider: shape })]);
        consumerNs = topology.consumers[0];
        const nodes = await cliProviderAndConsumer(chain, nats.url, [tmps[0].dir, tmps[1].dir]);
        providerEnv = nodes.providerEnv;
        // Its IP check goes where the user's traffic goes: through the tunnel once connected.
        consumerEnv = { ...(await onConsumerMachine(topology, nodes.consumerEnv)), MYST_IP_CHECK_URL: topology.internetUrl };
        expect(consumerEnv.MYST_BROKER_URLS).to.match(/^nats:\/\/198\.18\.9\.2:\d+$/);
        background.push(nodes.discovery);
        const provider = mystBackground(["daemon", "--api-port", "0", "--invoice-every", "1"], { ...providerEnv, MYST_LOG_LEVEL: "info" });
        background.push(provider);
        await until(() => provider.output().includes("REST API:"), "the provider daemon to listen");
        await json(providerEnv, serviceStartArgs(service, topology, ["--price-per-gib", "0.1"], { ownDevice: true }));
      });

      after(async function () {
        await Promise.all(background.map((b) => b.stop()));
        await topology?.down();
        await Promise.all([chain?.stop(), nats?.stop()]);
        tmps.forEach((t) => t.cleanup());
      });

      it("connects, is seen with the provider's address, pays its invoices, survives a broker restart, and disconnect restores everything", async function () {
        const consumer = mystBackground(["daemon", "--api-port", "0"], { ...consumerEnv, MYST_LOG_LEVEL: "info" }, { netns: consumerNs });
        background.push(consumer);
        await until(() => consumer.output().includes("REST API:") || consumer.child.exitCode !== null, "the consumer daemon to listen");
        expect(consumer.child.exitCode, consumer.output()).to.equal(null);
        await until(async () => (await consumerJson(["proposals", "--service-type", service])).length === 1, "the proposal in discovery");

        const before = { routes: routesOf(topology, consumerNs), firewall: topology.exec(consumerNs, ["/usr/sbin/nft", "list", "ruleset"]) };
        expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.consumerAddress(0));
        expect(consumerApi("/v1/connection/visible-ip").ip).to.equal(topology.consumerAddress(0));

        const connected = await consumerJson(["connect", "--service", service, "--country", "DE"]);
        expect(connected).to.include({ state: "connected", serviceType: service });
        // The route to the services host stays outside the tunnel; the internet's goes into it.
        expect(topology.exec(consumerNs, ["/usr/sbin/ip", "route", "get", topology.servicesAddress])).to.match(/ dev eth0 /);
        expect(topology.exec(consumerNs, ["/usr/sbin/ip", "route", "get", topology.internetAddress])).to.not.match(/ dev eth0 /);
        expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.providerUplinkAddress);
        // The node's own IP check, a moment after the one above: on a fresh connection, through the tunnel.
        expect(consumerApi("/v1/connection/visible-ip").ip).to.equal(topology.providerUplinkAddress);
        expect(downloadFrom(topology, consumerNs, `${topology.internetUrl}?bytes=2000000`)).to.equal(2_000_000);
        const paid = await until(async () => {
          const s = await consumerJson(["status"]);
          return s.bytesIn > 2_000_000 && BigInt(s.promisedWei) > 0n && s;
        }, "the download invoiced and paid for");
        expect(paid.sessionId).to.equal(connected.sessionId);

        // The broker goes away and comes back mid-session: the node reconnects over its own route,
        // and the session goes on being invoiced and paid.
        await nats.stop({ keepStore: true });
        await nats.restart();
        expect(downloadFrom(topology, consumerNs, `${topology.internetUrl}?bytes=3000000`)).to.equal(3_000_000);
        const after = await until(
          async () => {
            const s = await consumerJson(["status"]);
            return s.state === "connected" && s.bytesIn > 5_000_000 && BigInt(s.promisedWei) > BigInt(paid.promisedWei) && s;
          },
          "invoices paid after the broker restart",
          60_000,
        );
        expect(after.sessionId).to.equal(connected.sessionId);
        expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.providerUplinkAddress);

        const ended = await consumerJson(["disconnect"]);
        expect(ended).to.include({ state: "disconnected", sessionId: connected.sessionId });
        expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.consumerAddress(0));
        expect(routesOf(topology, consumerNs)).to.equal(before.routes);
        expect(topology.exec(consumerNs, ["/usr/sbin/nft", "list", "ruleset"])).to.equal(before.firewall);

        // Nothing lost: the provider holds every promise the consumer made, across the restart.
        await until(async () => {
          const e = await json(providerEnv, ["earnings"]);
          return BigInt(e.unsettledWei) + BigInt(e.settledWei) >= BigInt(after.promisedWei) && e;
        }, "the provider to hold every promise the consumer made");
        expect(fs.existsSync(`${tmps[1].dir}/protection.json`)).to.equal(false);
      });
    });
