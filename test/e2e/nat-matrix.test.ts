import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { requireE2E } from "../../scripts/lib/prereqs";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { tempDir } from "../../scripts/lib/tmp";
import { fetchFrom, topologyUp, type NatKind, type Topology } from "../../scripts/lib/topology";
import { mystJson } from "../../scripts/lib/myst-cli";
import { until } from "../../scripts/lib/until";
import { freePort } from "../../scripts/lib/local-chain";
import { buildCli, cliEnv, myst, mystBackground, onConsumerMachine, startCliDiscovery } from "../support/cli";
import { depositIn, registerIdentityIn } from "../../scripts/lib/data-dir-setup";

/**
 * The NAT matrix (issue 28): no port forwarding anywhere. Every node runs on its own machine (its
 * namespace, behind its home router), measures its router with the STUN server on the internet
 * host, and the two nodes of a session punch a direct path; WireGuard's own packets then punch its
 * tunnel along it. One topology per provider kind holds every consumer kind at once (and, behind a
 * home router, a consumer on the provider's own LAN), so the matrix costs five set-ups.
 *
 * Expected: every pair where one side is public or endpoint-independent, and the same-router pair,
 * connects directly and the internet host sees the provider's public address; symmetric ×
 * symmetric, and a consumer whose network drops all UDP, connect through the relay every topology
 * has (a public node selling `relay`, issue 29). No other cell may be relayed: with a symmetric
 * provider the tunnels meet by a birthday search of their own (docs/direct-channel.md).
 */
const PROVIDERS: NatKind[] = (process.env.MYST_NAT_MATRIX_PROVIDERS?.split(",") as NatKind[] | undefined) ?? ["public", "eim", "symmetric", "cgnat", "upnp"];
const CONSUMERS: NatKind[] = ["public", "eim", "symmetric", "cgnat", "udp-blocked"];
/** The consumers of a provider's topology: one whose network drops UDP only beside a public and a symmetric provider (it is relayed over TLS whoever the provider is). */
const consumersOf = (provider: NatKind): NatKind[] =>
  provider === "public" || provider === "symmetric" ? CONSUMERS : CONSUMERS.filter((c) => c !== "udp-blocked");

describe("e2e: the NAT matrix (WireGuard, no port forwarding, nodes on their own machines)", function () {
  this.timeout(600_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let base: NodeJS.ProcessEnv;
  const dirs = {
    provider: tempDir("myst-nat-p-"),
    relay: tempDir("myst-nat-r-"),
    consumers: CONSUMERS.map(() => tempDir("myst-nat-c-")),
    same: tempDir("myst-nat-s-"),
  };
  const background: ReturnType<typeof mystBackground>[] = [];
  const results: { provider: string; consumer: string; outcome: string }[] = [];

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats] = await Promise.all([testChain(), startNatsServer()]);
    base = cliEnv(chain, nats.url, await freePort());
    for (const d of [dirs.provider, dirs.relay, ...dirs.consumers, dirs.same]) await registerIdentityIn(chain, { ...base, MYST_DATA_DIR: d.dir });
    for (const d of [...dirs.consumers, dirs.same]) await depositIn({ ...base, MYST_DATA_DIR: d.dir }, "5", "1");
    background.push(await startCliDiscovery(base));
  });

  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await Promise.all([chain?.stop(), nats?.stop()]);
    for (const d of [dirs.provider, dirs.relay, ...dirs.consumers, dirs.same]) d.cleanup();
    if (results.length) console.log(results.map((r) => `      provider ${r.provider.padEnd(9)} × consumer ${r.consumer.padEnd(12)} ${r.outcome}`).join("\n"));
  });

  const json = mystJson;

  for (const providerKind of PROVIDERS)
    describe(`a provider ${providerKind === "public" ? "with a public address" : `behind a ${providerKind} router`}`, function () {
      let topology: Topology;
      const sameRouter = providerKind !== "public";
      let providerEnv: NodeJS.ProcessEnv;
      let providerDaemon: ReturnType<typeof mystBackground>;
      /** Chain, broker and discovery as every node here reaches them: over the routers (published once per topology). */
      let machineEnv: NodeJS.ProcessEnv;
      const cells: { kind: NatKind | "same-router"; netns: string; dir: string }[] = [];

      before(async function () {
        topology = await topologyUp({
          consumers: consumersOf(providerKind).length + (sameRouter ? 1 : 0),
          relays: 1,
          nat: { provider: providerKind, consumer: sameRouter ? ["public", ...consumersOf(providerKind)] : consumersOf(providerKind), sameRouter },
        });
        const nat = topology.nat!;
        const stun = { MYST_STUN_SERVERS: nat.stunServers.join(",") };
        machineEnv = { ...(await onConsumerMachine(topology, base)), ...stun, MYST_LOG_LEVEL: "info" };
        providerEnv = { ...machineEnv, MYST_DATA_DIR: dirs.provider.dir };
        const provider = mystBackground(["daemon", "--api-port", "0", "--invoice-every", "1"], providerEnv, { netns: topology.provider });
        background.push(provider);
        providerDaemon = provider;
        await until(() => provider.output().includes("REST API:") || provider.child.exitCode !== null, "the provider daemon to listen");
        expect(provider.child.exitCode, provider.output()).to.equal(null);
        await json(
          providerEnv,
          ["service", "start", "wireguard", "--public-ip", nat.publicAddressOf(topology.provider), "--country", "DE", "--device", `mwp${topology.tag}`],
          topology.provider,
        );
        // The relay every topology has: a public node selling `relay` (coturn).
        const relayEnv = { ...machineEnv, MYST_DATA_DIR: dirs.relay.dir };
        const relay = mystBackground(["daemon", "--api-port", "0", "--invoice-every", "1"], relayEnv, { netns: topology.relays[0] });
        background.push(relay);
        await until(() => relay.output().includes("REST API:") || relay.child.exitCode !== null, "the relay daemon to listen");
        await json(relayEnv, ["service", "start", "relay", "--public-ip", topology.relayAddressOf(0), "--country", "DE"], topology.relays[0]);
        topology.consumers.forEach((netns, i) => {
          const kind = nat.consumers[i];
          cells.push({ kind, netns, dir: kind === "same-router" ? dirs.same.dir : dirs.consumers[CONSUMERS.indexOf(kind as NatKind)].dir });
        });
      });

      after(async function () {
        const relay = background.pop();
        const provider = background.pop();
        await Promise.all([relay?.stop(), provider?.stop()]);
        // The next topology's provider starts its service afresh (its public address differs): the
        // daemon must not bring this one back from services.json.
        fs.rmSync(path.join(dirs.provider.dir, "services.json"), { force: true });
        fs.rmSync(path.join(dirs.relay.dir, "services.json"), { force: true });
        await topology?.down();
      });

      for (const consumerKind of [...(providerKind === "public" ? [] : ["same-router" as const]), ...consumersOf(providerKind)]) {
        // No direct path can exist: both sides map per destination, or the consumer's network lets no UDP out.
        const mustRelay = (providerKind === "symmetric" && consumerKind === "symmetric") || consumerKind === "udp-blocked";
        // Every cell but these is direct: with a symmetric provider the channel meets by a birthday
        // search and the tunnels by one of their own (the provider's tunnel then sends from the probe
        // that met, punch-route.ts); a public consumer's tunnel answers the provider's from wherever its
        // router mapped it (the kill switch, on here as by default, lets the tunnel's port roam).
        it(
          mustRelay
            ? `a consumer ${consumerKind === "udp-blocked" ? "whose network drops all UDP" : "behind a symmetric router"}: connects through the relay; the internet sees the provider`
            : `a consumer ${consumerKind === "same-router" ? "on the provider's own LAN" : `behind a ${consumerKind} router`}: connects directly; the internet sees the provider`,
          async function () {
            const cell = cells.find((c) => c.kind === consumerKind)!;
            const nat = topology.nat!;
            const env = { ...machineEnv, MYST_DATA_DIR: cell.dir };
            const consumer = mystBackground(["daemon", "--api-port", "0"], env, { netns: cell.netns });
            try {
              await until(() => consumer.output().includes("REST API:") || consumer.child.exitCode !== null, "the consumer daemon to listen");
              expect(consumer.child.exitCode, consumer.output()).to.equal(null);
              await until(async () => (await json(env, ["proposals", "--service-type", "wireguard"], cell.netns)).length === 1, "the proposal in discovery");
              const started = Date.now();
              const r = await myst(["connect", "--service", "wireguard", "--country", "DE", "--json"], env, 120_000, { netns: cell.netns });
              const tookMs = Date.now() - started;
              expect(r.code, `${r.stderr}\nconsumer: ${consumer.output().slice(-2000)}\nprovider: ${providerDaemon.output().slice(-2000)}`).to.equal(0);
              const connected = JSON.parse(r.stdout);
              expect(connected.state).to.equal("connected");
              expect(fetchFrom(topology, cell.netns, topology.internetUrl)).to.equal(nat.publicAddressOf(topology.provider));
              const path = connected.path ?? {};
              const via = path.relay ? ` via the relay over ${path.relay.transport.toUpperCase()}` : "";
              results.push({ provider: providerKind, consumer: consumerKind, outcome: `tunnel ${path.tunnel}${via}, messages ${path.channel} (${tookMs} ms)` });
              if (mustRelay) expect(path.tunnel).to.equal("relayed");
              // A UPnP provider's router maps its tunnel port: no punch needed (nat/monitor.ts keeps it mapped).
              else {
                expect(path.tunnel).to.not.equal("relayed");
                if (consumerKind === "same-router") expect(path.tunnel).to.equal("local");
                else if (providerKind !== "public") expect(path.tunnel).to.be.oneOf(["punched", "mapped"]);
              }
              if (consumerKind === "udp-blocked") expect(path.relay.transport).to.equal("tls");
              await json(env, ["disconnect"], cell.netns);
            } finally {
              await consumer.stop();
            }
          },
        );
      }
    });
});
