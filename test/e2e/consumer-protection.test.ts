import { expect } from "chai";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { fetchFrom, resolveFrom, routesOf, topologyUp, type Topology, keepFetching } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { buildCli, cliProviderAndConsumer, myst, mystBackground, onConsumerMachine, serviceStartArgs } from "../support/cli";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { requireE2E } from "../../scripts/lib/prereqs";
import { tempDir } from "../../scripts/lib/tmp";

/**
 * The consumer's own address never leaks (issue 15), proven where it would show: packets counted on
 * the internet host, queries counted on the consumer's LAN resolver. The consumer is the `myst` CLI
 * on its own machine: its node, tunnel, kill switch and resolver settings all in the consumer's
 * namespace, reaching the broker, chain and discovery over the routers (issue 25); `myst run` keeps
 * its node in the root namespace and confines the app to a namespace of its own. The provider is a
 * `myst daemon` selling OpenVPN or WireGuard two routers away.
 */
/** The same protection, the same code, for every tunnel type that has a network device. */
for (const service of ["openvpn", "wireguard"] as const)
  describe(`e2e: consumer protection — kill switch, DNS and IPv6 (real ${service}, netns, CLI)`, function () {
    /**
     * What the protection layer does the same whatever the tunnel (restoring the network, a crashed
     * myst's leftovers, no kill switch): run once, with OpenVPN. What depends on the tunnel (leaks
     * while connected, DNS, a dead tunnel process or provider, `myst run`) runs for both.
     */
    const tunnelIndependent = service === "openvpn" ? it : () => undefined;
    this.timeout(240_000);
    let chain: LocalChain;
    let nats: NatsServer;
    let topology: Topology;
    let consumerNs: string;
    const tmps = [tempDir("myst-e2e-"), tempDir("myst-e2e-")];
    const background: ReturnType<typeof mystBackground>[] = [];
    let providerEnv: NodeJS.ProcessEnv;
    /** The consumer's node on its own machine (run in `consumerNs`, services over the routers). */
    let consumerEnv: NodeJS.ProcessEnv;
    /** The same identity's node in the root namespace: `myst run`, which confines the app instead. */
    let rootConsumerEnv: NodeJS.ProcessEnv;
    let provider: ReturnType<typeof mystBackground>;
    /** Confined namespaces `myst run` made: removed here too should a failing test leave one. */
    const confinedSeen: string[] = [];

    const json = async (env: NodeJS.ProcessEnv, args: string[]) => {
      // The consumer's CLI runs where its node does: on the consumer's machine.
      const r = await myst([...args, "--json"], env, 120_000, { netns: env === consumerEnv ? consumerNs : undefined });
      if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    };

    /** `myst connect` in the foreground (as a user runs it), in the background of the test. */
    async function connect(extra: string[] = [], options: { keepCrashed?: boolean; env?: NodeJS.ProcessEnv } = {}) {
      // A session whose consumer died holds one of its two slots at the provider until keepalives
      // lapse: wait for it, unless the test connects while the crashed session still holds one.
      if (!options.keepCrashed)
        await until(async () => (await json(providerEnv, ["service", "list"]))[0]?.sessions === 0, "the provider to release earlier sessions", 60_000);
      const consumer = mystBackground(
        ["connect", "--service", service, ...extra],
        { ...consumerEnv, MYST_LOG_LEVEL: "info", ...options.env },
        { netns: consumerNs },
      );
      background.push(consumer);
      await until(() => consumer.output().includes("connected: session") || consumer.child.exitCode !== null, "myst connect to connect", 60_000);
      if (consumer.child.exitCode !== null) throw new Error(`myst connect exited: ${consumer.output()}`);
      return consumer;
    }

    /** What a disconnect must restore exactly: routes (all tables, both families), the resolver file, the whole firewall. */
    function networkState() {
      return {
        routes: routesOf(topology, consumerNs),
        resolver: fs.readFileSync(topology.resolvConfOf(consumerNs), "utf8"),
        firewall: topology.exec(consumerNs, ["/usr/sbin/nft", "list", "ruleset"]),
      };
    }

    /** Every way out the consumer has: IPv4, IPv6, a name lookup, DNS straight to the LAN resolver. */
    function tryEveryWayOut() {
      return {
        v4: fetchFrom(topology, consumerNs, topology.internetUrl, 1500),
        v6: fetchFrom(topology, consumerNs, topology.internetUrl6, 1500),
        name: resolveFrom(topology, consumerNs, topology.whoamiName),
        lanDns: resolveFrom(topology, consumerNs, topology.whoamiName, { server: topology.lanResolver }),
      };
    }

    /** The consumer's tunnel process (openvpn or wireguard-go), found by PID among the processes in its namespace. */
    function consumerTunnelPid(): number | undefined {
      const pids = execFileSync("/usr/sbin/ip", ["netns", "pids", consumerNs], { encoding: "utf8" }).split(/\s+/).filter(Boolean).map(Number);
      const comm = (pid: number) => {
        try {
          return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
        } catch {
          return null; // exited meanwhile
        }
      };
      return pids.find((pid) => comm(pid) === (service === "openvpn" ? "openvpn" : "wireguard-go"));
    }

    /** `myst connect` exits by itself once it has disconnected: its exit code. */
    const exitOf = (consumer: ReturnType<typeof mystBackground>) =>
      until(
        () => (consumer.child.exitCode !== null || consumer.child.signalCode !== null) && { code: consumer.child.exitCode, signal: consumer.child.signalCode },
        "myst connect to exit",
      );

    before(async function () {
      requireE2E(this);
      buildCli();
      [chain, nats, topology] = await Promise.all([testChain(), startNatsServer(), topologyUp({ consumers: 1 })]);
      consumerNs = topology.consumers[0];
      const nodes = await cliProviderAndConsumer(chain, nats.url, [tmps[0].dir, tmps[1].dir]);
      providerEnv = nodes.providerEnv;
      rootConsumerEnv = nodes.consumerEnv;
      // WireGuard's consumer keeps its kill switch's table between connections (config `killSwitchSpare`): each
      // disconnect disarms it, and the node's exit removes it — every `networkState()` comparison below holds it to that.
      consumerEnv = { ...(await onConsumerMachine(topology, nodes.consumerEnv)), ...(service === "wireguard" ? { MYST_KILL_SWITCH_SPARE: "true" } : {}) };
      background.push(nodes.discovery);
      provider = mystBackground(["daemon", "--api-port", "0", "--invoice-every", "1"], { ...providerEnv, MYST_LOG_LEVEL: "info" });
      background.push(provider);
      await until(() => provider.output().includes("REST API:"), "the provider daemon to listen");
      await json(providerEnv, serviceStartArgs(service, topology, [], { ownDevice: true }));
      await until(async () => (await json(consumerEnv, ["proposals", "--service-type", service])).length === 1, "the proposal in discovery");
    });

    after(async function () {
      await Promise.all(background.map((b) => b.stop()));
      for (const n of confinedSeen) if (fs.existsSync(`/run/netns/${n}`)) execFileSync("/usr/sbin/ip", ["netns", "del", n]);
      await topology?.down();
      await Promise.all([chain?.stop(), nats?.stop()]);
      tmps.forEach((t) => t.cleanup());
    });

    it("while connected, the internet host sees only the provider's IPv4 address, and IPv6 fails instead of leaking", async function () {
      const consumer = await connect();
      try {
        const before = topology.packetsFrom(0);
        expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.providerUplinkAddress);
        expect(fetchFrom(topology, consumerNs, topology.internetUrl6, 1500)).to.equal(null);
        expect(topology.packetsFrom(0)).to.deep.equal(before);
      } finally {
        await json(consumerEnv, ["disconnect"]);
        await exitOf(consumer);
      }
    });

    it("resolves names through the provider while the LAN resolver receives zero queries, and refuses DNS to any other server", async function () {
      const consumer = await connect();
      try {
        const queries = topology.lanResolverQueries();
        const packets = topology.packetsFrom(0);
        expect(resolveFrom(topology, consumerNs, topology.whoamiName)).to.deep.equal([topology.internetAddress]);
        expect(fetchFrom(topology, consumerNs, topology.whoamiNameUrl)).to.equal(topology.providerUplinkAddress);
        // Straight to the LAN resolver, or to a public one through the tunnel: refused before it leaves.
        expect(resolveFrom(topology, consumerNs, topology.whoamiName, { server: topology.lanResolver })).to.equal(null);
        expect(resolveFrom(topology, consumerNs, topology.whoamiName, { server: topology.internetAddress })).to.equal(null);
        // The provider's LAN block holds for names: its resolver does not hand out its private addresses.
        expect(resolveFrom(topology, topology.provider, "lan.test")).to.deep.equal(["192.168.77.2"]);
        expect(resolveFrom(topology, consumerNs, "lan.test")).to.equal(null);
        expect(topology.lanResolverQueries()).to.equal(queries);
        expect(topology.packetsFrom(0)).to.deep.equal(packets);
      } finally {
        await json(consumerEnv, ["disconnect"]);
        await exitOf(consumer);
      }
    });

    tunnelIndependent("after `myst disconnect`, routes, the resolver file and the firewall are exactly as before", async function () {
      const before = networkState();
      const consumer = await connect();
      const during = networkState();
      expect(during.resolver).to.not.equal(before.resolver);
      expect(during.firewall).to.include("myst_guard");
      const answer = await json(consumerEnv, ["disconnect"]);
      expect(answer.state).to.equal("disconnected");
      expect(await exitOf(consumer)).to.deep.equal({ code: 0, signal: null });
      expect(networkState()).to.deep.equal(before);
      expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.consumerAddress(0));
      expect(resolveFrom(topology, consumerNs, topology.whoamiName)).to.have.members([topology.internetAddress, topology.internetAddress6]);
    });

    it(`after SIGKILL of the consumer's ${service === "openvpn" ? "openvpn" : "wireguard-go"}, no packet from the consumer's own addresses reaches the internet host until disconnect`, async function () {
      const before = networkState();
      const consumer = await connect();
      process.kill(consumerTunnelPid()!, "SIGKILL");
      const status = await until(async () => {
        const s = await json(consumerEnv, ["status"]);
        return s.state === "blocked" && s;
      }, "status to say the tunnel is down and traffic blocked");
      expect(status.protection.message).to.match(/^tunnel down, traffic blocked/);
      const packets = topology.packetsFrom(0);
      const queries = topology.lanResolverQueries();
      expect(tryEveryWayOut()).to.deep.equal({ v4: null, v6: null, name: null, lanDns: null });
      expect(topology.packetsFrom(0)).to.deep.equal(packets);
      expect(topology.lanResolverQueries()).to.equal(queries);

      await json(consumerEnv, ["disconnect"]);
      expect(await exitOf(consumer)).to.deep.equal({ code: 0, signal: null });
      // WireGuard's consumer (killSwitchSpare) kept the table disarmed at the disconnect; its exit removed it.
      if (service === "wireguard") expect(consumer.output()).to.include("the table stays disarmed for the next connection");
      expect(networkState()).to.deep.equal(before);
      // The counter does see the consumer's own packets once it is let out again.
      expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.consumerAddress(0));
      expect(topology.packetsFrom(0).v4).to.be.greaterThan(packets.v4);
    });

    tunnelIndependent(
      "after SIGKILL of myst itself (its tunnel goes with it), nothing leaks until `myst disconnect`, which removes what it left and says so",
      async function () {
        const before = networkState();
        const consumer = await connect();
        const packets = topology.packetsFrom(0);
        const queries = topology.lanResolverQueries();
        consumer.child.kill("SIGKILL");
        await until(() => consumer.child.exitCode !== null || consumer.child.signalCode !== null, "myst to die");
        // Its tunnel process dies with it (parent-death signal): no tunnel, and the kill switch holds.
        await until(() => consumerTunnelPid() === undefined, "myst's tunnel process to exit with it");
        expect(tryEveryWayOut()).to.deep.equal({ v4: null, v6: null, name: null, lanDns: null });
        expect(topology.packetsFrom(0).v4).to.equal(packets.v4);
        expect(topology.packetsFrom(0).v6).to.equal(packets.v6);
        expect(topology.lanResolverQueries()).to.equal(queries);

        const answer = await json(consumerEnv, ["disconnect"]);
        expect(answer.recovered[0]).to.match(/removed the kill switch and restored the resolver settings left by a myst \(pid \d+\)/);
        expect(networkState()).to.deep.equal(before);
        expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.consumerAddress(0));
      },
    );

    tunnelIndependent(
      "a new `myst connect` while the kill switch blocks, to a provider whose tunnel comes up and then fails the first-byte check: it blocks again, and `myst disconnect` lifts it",
      async function () {
        const before = networkState();
        // The node checks a first byte through each tunnel it brings up (from the internet host).
        const consumer = await connect([], { env: { MYST_TUNNEL_CHECK_URL: topology.internetUrl } });
        process.kill(consumerTunnelPid()!, "SIGKILL");
        await until(async () => (await json(consumerEnv, ["status"])).state === "blocked", "the kill switch to block");
        const packets = topology.packetsFrom(0);
        // The provider's tunnel comes up but carries nothing on: its namespace forwards nothing (restored below).
        const forwarding = (on: boolean) => topology.exec(topology.provider, ["/usr/sbin/sysctl", "-qw", `net.ipv4.ip_forward=${on ? 1 : 0}`]);
        forwarding(false);
        let failed: Awaited<ReturnType<typeof myst>>;
        try {
          failed = await myst(["connect", "--service", service, "--json"], consumerEnv, 120_000, { netns: consumerNs });
        } finally {
          forwarding(true);
        }
        expect(failed.code, `${failed.stdout}${failed.stderr}`).to.not.equal(0);
        expect(`${failed.stdout}${failed.stderr}`).to.match(/check/);
        const status = await json(consumerEnv, ["status"]);
        expect(status.state).to.equal("blocked");
        expect(status.protection.state, "the failed provider's rules are not left armed").to.equal("blocked");
        expect(tryEveryWayOut()).to.deep.equal({ v4: null, v6: null, name: null, lanDns: null });
        expect(topology.packetsFrom(0)).to.deep.equal(packets);
        // Before, the failed provider's rules stayed armed ("protecting") and this answered NOT_CONNECTED.
        await json(consumerEnv, ["disconnect"]);
        expect(await exitOf(consumer)).to.deep.equal({ code: 0, signal: null });
        expect(networkState()).to.deep.equal(before);
      },
    );

    it("a new `myst connect` while the kill switch blocks keeps it blocking: to a provider that does not answer, and after that connect fails, nothing leaves by the consumer's own route; one that succeeds replaces it with no gap; `myst disconnect` then restores everything", async function () {
      const before = networkState();
      const consumer = await connect();
      process.kill(consumerTunnelPid()!, "SIGKILL");
      await until(async () => (await json(consumerEnv, ["status"])).state === "blocked", "the kill switch to block");
      const packets = topology.packetsFrom(0);
      const queries = topology.lanResolverQueries();
      // An application that keeps trying to reach the internet host the whole time (by PID, stopped below).
      const app = keepFetching(consumerNs, topology.internetUrl);
      try {
        // The provider stalls (SIGSTOP, by its PID): the new connect's dialog gets no answer, and the connect fails.
        provider.child.kill("SIGSTOP");
        let failed: Awaited<ReturnType<typeof myst>>;
        try {
          failed = await myst(["connect", "--service", service, "--json"], consumerEnv, 120_000, { netns: consumerNs });
        } finally {
          provider.child.kill("SIGCONT");
        }
        expect(failed.code, `${failed.stdout}${failed.stderr}`).to.not.equal(0);
        expect(topology.packetsFrom(0), "no packet by the consumer's own route while it negotiated or since").to.deep.equal(packets);
        const status = await json(consumerEnv, ["status"]);
        expect(status.state).to.equal("blocked");
        expect(status.protection.message).to.match(/^tunnel down, traffic blocked/);
        // Why the connect did not replace the block, in the blocked view (before session 12 only the failing `myst connect` said it).
        expect(status.lastFailure, JSON.stringify(status)).to.be.an("object").that.includes.keys("at", "code", "message");
        expect((await myst(["status"], consumerEnv, 60_000, { netns: consumerNs })).stdout).to.include(`last attempt (${status.lastFailure.at})`);
        expect(tryEveryWayOut()).to.deep.equal({ v4: null, v6: null, name: null, lanDns: null });
        expect(topology.packetsFrom(0)).to.deep.equal(packets);
        expect(topology.lanResolverQueries()).to.equal(queries);
        expect(consumer.child.exitCode, "the foreground myst still holds the connection").to.equal(null);

        // Now one that succeeds, with --allow-lan: other rules around the sets, which replace the block in the arming's transaction.
        const next = await json(consumerEnv, ["connect", "--service", service, "--allow-lan"]);
        expect(next.state).to.equal("connected");
        expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.providerUplinkAddress);
        expect(topology.packetsFrom(0), "no packet by the consumer's own route between the two").to.deep.equal(packets);
        expect(topology.lanResolverQueries()).to.equal(queries);
      } finally {
        app.kill("SIGKILL");
      }
      await json(consumerEnv, ["disconnect"]);
      expect(await exitOf(consumer)).to.deep.equal({ code: 0, signal: null });
      // The resolver file as it was before the first session, the host routes and the firewall as before.
      expect(networkState()).to.deep.equal(before);
      expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.consumerAddress(0));
    });

    tunnelIndependent(
      "after SIGKILL of myst, the next `myst connect` keeps the old kill switch until its own replaces it: nothing leaks while it negotiates",
      async function () {
        const before = networkState();
        const crashed = await connect();
        crashed.child.kill("SIGKILL");
        await until(() => crashed.child.signalCode !== null, "myst to die");
        await until(() => consumerTunnelPid() === undefined, "myst's tunnel process to exit with it (parent-death signal)");
        const packets = topology.packetsFrom(0);
        // An application that keeps trying to reach the internet host the whole time (by PID, stopped below).
        const app = keepFetching(consumerNs, topology.internetUrl);
        try {
          const next = await connect([], { keepCrashed: true });
          expect(next.output()).to.include("stays in force until this connection replaces it");
          expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.providerUplinkAddress);
          expect(topology.packetsFrom(0)).to.deep.equal(packets);
          await json(consumerEnv, ["disconnect"]);
          expect(await exitOf(next)).to.deep.equal({ code: 0, signal: null });
        } finally {
          app.kill("SIGKILL");
        }
        // Its disconnect restores the resolver file as it was before the crashed session, not as that one left it.
        expect(networkState()).to.deep.equal(before);
      },
    );

    tunnelIndependent(
      "with --no-kill-switch, DNS and IPv6 still go nowhere but the tunnel while connected, and traffic takes the consumer's own route once the tunnel is gone",
      async function () {
        const before = networkState();
        const consumer = await connect(["--no-kill-switch"]);
        const queries = topology.lanResolverQueries();
        const packets = topology.packetsFrom(0);
        expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.providerUplinkAddress);
        expect(fetchFrom(topology, consumerNs, topology.internetUrl6, 1500)).to.equal(null);
        expect(resolveFrom(topology, consumerNs, topology.whoamiName)).to.deep.equal([topology.internetAddress]);
        expect(topology.lanResolverQueries()).to.equal(queries);
        expect(topology.packetsFrom(0)).to.deep.equal(packets);
        process.kill(consumerTunnelPid()!, "SIGKILL");
        // Without the kill switch the session ends and myst exits, undoing everything, as the user chose.
        expect(await exitOf(consumer)).to.deep.equal({ code: 0, signal: null });
        expect(networkState()).to.deep.equal(before);
        expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.consumerAddress(0));
      },
    );

    it("`myst run -- curl …` sees the provider's address while the consumer namespace keeps its own route; with the tunnel dead the app has no route; the namespace goes with the command, whose exit code is myst's", async function () {
      const before = networkState();
      // Its default routes (the links myst adds — tunnel, veth — bring their own connected routes).
      const mainRoutes = () => ["-4", "-6"].map((f) => topology.exec(consumerNs, ["/usr/sbin/ip", f, "route", "show", "table", "main", "default"]));
      const mainBefore = mainRoutes();
      await until(async () => (await json(providerEnv, ["service", "list"]))[0]?.sessions === 0, "the provider to release earlier sessions", 60_000);
      const flag = `${tmps[1].dir}/run-done`;
      const app = `curl -s --max-time 10 ${topology.internetUrl}; echo; curl -s --max-time 10 ${topology.whoamiNameUrl}; echo; while [ ! -e ${flag} ]; do sleep 0.1; done; exit 7`;
      const run = mystBackground(["run", "--service", service, "--netns", consumerNs, "--", "/bin/sh", "-c", app], {
        ...rootConsumerEnv,
        MYST_LOG_LEVEL: "info",
      });
      background.push(run);
      const netns = (await until(
        () => run.output().match(/network namespace (myst-run-[0-9a-f]{6})/) || run.child.exitCode !== null,
        "myst run to start the command",
        60_000,
      )) as RegExpMatchArray;
      expect(run.child.exitCode, run.output()).to.equal(null);
      const confined = netns[1];
      confinedSeen.push(confined);
      // The app sees the provider, by address and by name (its resolver is the provider's).
      await until(
        () =>
          run
            .output()
            .split("\n")
            .filter((line) => line.trim() === topology.providerUplinkAddress).length === 2,
        "the confined app's two fetches",
      );
      // Meanwhile the consumer namespace itself keeps its own default routes, resolver file and no kill switch.
      expect(fetchFrom(topology, consumerNs, topology.internetUrl)).to.equal(topology.consumerAddress(0));
      expect(mainRoutes()).to.deep.equal(mainBefore);
      expect(fs.readFileSync(topology.resolvConfOf(consumerNs), "utf8")).to.equal(before.resolver);
      expect(topology.exec(consumerNs, ["/usr/sbin/nft", "list", "ruleset"])).to.not.include("myst_guard");
      expect((await json(rootConsumerEnv, ["status"])).confined).to.include({ netns: confined, tunnel: "up" });

      // The tunnel dies: the app has no route at all (nothing leaves by the consumer's own route).
      process.kill(consumerTunnelPid()!, "SIGKILL");
      await until(async () => (await json(rootConsumerEnv, ["status"])).confined?.tunnel === "down", "the node to notice the tunnel is gone");
      const packets = topology.packetsFrom(0);
      expect(fetchFrom(topology, confined, topology.internetUrl, 1500)).to.equal(null);
      expect(fetchFrom(topology, confined, topology.internetUrl6, 1500)).to.equal(null);
      expect(topology.packetsFrom(0)).to.deep.equal(packets);

      fs.writeFileSync(flag, "");
      await until(() => run.child.exitCode !== null, "myst run to exit with its command");
      expect(run.child.exitCode).to.equal(7);
      expect(execFileSync("/usr/sbin/ip", ["netns", "list"], { encoding: "utf8" })).to.not.include(confined);
      expect(fs.existsSync(`/etc/netns/${confined}`)).to.equal(false);
      expect(networkState()).to.deep.equal(before);
    });

    it("after SIGKILL of the provider, no packet from the consumer's own addresses reaches the internet host until disconnect", async function () {
      const before = networkState();
      const consumer = await connect();
      provider.child.kill("SIGKILL");
      const packets = topology.packetsFrom(0);
      const queries = topology.lanResolverQueries();
      // The provider's keepalives stop: the session ends, the tunnel goes, the kill switch holds.
      await until(async () => (await json(consumerEnv, ["status"])).state === "blocked", "the consumer to notice the provider is gone", 60_000);
      expect(tryEveryWayOut()).to.deep.equal({ v4: null, v6: null, name: null, lanDns: null });
      expect(topology.packetsFrom(0)).to.deep.equal(packets);
      expect(topology.lanResolverQueries()).to.equal(queries);
      await json(consumerEnv, ["disconnect"]);
      expect(await exitOf(consumer)).to.deep.equal({ code: 0, signal: null });
      expect(networkState()).to.deep.equal(before);
    });
  });
