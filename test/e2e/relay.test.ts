import { expect } from "chai";
import path from "node:path";
import { Broker } from "../../node/broker/broker";
import { connectChain } from "../../node/chain/connect";
import { IdentityRegistryClient } from "../../node/chain/registry";
import { Dialogs } from "../../node/dialog/dialogs";
import { DiscoveryClient } from "../../node/discovery/client";
import { Keystore } from "../../node/identity/keystore";
import { RelayConsumerService } from "../../node/services/relay/consumer";
import { ConsumerSessions } from "../../node/session/consumer";
import { rejectionOf } from "../support/rejection";
import { testChain, freePort, type LocalChain } from "../../scripts/lib/local-chain";
import { requireE2E } from "../../scripts/lib/prereqs";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { tempDir } from "../../scripts/lib/tmp";
import { downloadFrom, fetchFrom, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { relayServiceStart } from "../support/relay-service";
import { buildCli, cliEnv, myst, mystBackground, mystJson, onConsumerMachine, startCliDiscovery } from "../support/cli";
import { depositIn, registerIdentityIn } from "../../scripts/lib/data-dir-setup";

const GiB = 1n << 30n;
const RELAY_PRICE_PER_GIB = 10n ** 17n; // 0.1 MYST

/**
 * Relays (issue 29), every node on its own machine: a provider behind a symmetric NAT, a consumer
 * behind another symmetric NAT (no punch can join them) and a consumer whose network lets no UDP
 * out but DNS (it goes TURN over TLS, pinning the relay's certificate), two public relay nodes selling `relay` (Debian's coturn) on port 443 at different
 * prices. WireGuard runs end to end through the relay; the relay is paid from the consumer's one
 * vault, like the provider; a consumer that cannot pay the relay gets no credential.
 */
describe("e2e: relays (coturn) join pairs no punch can", function () {
  this.timeout(300_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  let machine: NodeJS.ProcessEnv;
  const background: ReturnType<typeof mystBackground>[] = [];
  const dirs = {
    provider: tempDir("myst-relay-p-"),
    relays: [tempDir("myst-relay-r0-"), tempDir("myst-relay-r1-")],
    symmetric: tempDir("myst-relay-cs-"),
    blocked: tempDir("myst-relay-cb-"),
    unpaid: tempDir("myst-relay-cu-"),
  };
  const relayIds: string[] = [];
  let providerId: string;
  let discoveryUrl: string;
  const relayDaemons: ReturnType<typeof mystBackground>[] = [];

  const json = mystJson;
  const providerService = () => [
    "service",
    "start",
    "wireguard",
    "--public-ip",
    topology.nat!.publicAddressOf(topology.provider),
    "--country",
    "DE",
    "--device",
    `mwp${topology.tag}`,
  ];
  const envOf = (d: { dir: string }) => ({ ...machine, MYST_DATA_DIR: d.dir });

  async function daemon(env: NodeJS.ProcessEnv, netns: string, extra: string[] = []): Promise<ReturnType<typeof mystBackground>> {
    const d = mystBackground(["daemon", "--api-port", "0", ...extra], env, { netns });
    background.push(d);
    await until(() => d.output().includes("REST API:") || d.child.exitCode !== null, "a daemon to listen");
    expect(d.child.exitCode, d.output()).to.equal(null);
    return d;
  }

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats, topology] = await Promise.all([
      testChain(),
      startNatsServer(),
      topologyUp({ consumers: 2, relays: 2, nat: { provider: "symmetric", consumer: ["symmetric", "udp-blocked"] } }),
    ]);
    const base = cliEnv(chain, nats.url, await freePort());
    discoveryUrl = base.MYST_DISCOVERY_URLS!;
    const all = [dirs.provider, ...dirs.relays, dirs.symmetric, dirs.blocked, dirs.unpaid];
    for (const d of all) {
      const id = await registerIdentityIn(chain, { ...base, MYST_DATA_DIR: d.dir });
      if (dirs.relays.includes(d)) relayIds.push(id.toLowerCase());
      if (d === dirs.provider) providerId = id;
    }
    for (const d of [dirs.symmetric, dirs.blocked]) await depositIn({ ...base, MYST_DATA_DIR: d.dir }, "5", "1");
    background.push(await startCliDiscovery(base));
    machine = { ...(await onConsumerMachine(topology, base)), MYST_STUN_SERVERS: topology.nat!.stunServers.join(","), MYST_LOG_LEVEL: "info" };

    // The provider asks no deposit (so a consumer with none gets past it and meets the relay's own check).
    await daemon(envOf(dirs.provider), topology.provider, ["--invoice-every", "1", "--min-vault-balance", "0", "--min-escrow", "0"]);
    await json(envOf(dirs.provider), providerService(), topology.provider);
    // Two relays on port 443, the first cheaper: the consumers must pick it.
    for (const [i, d] of dirs.relays.entries()) {
      relayDaemons.push(await daemon(envOf(d), topology.relays[i], ["--invoice-every", "1"]));
      await json(envOf(d), relayServiceStart(topology, i), topology.relays[i]);
    }
    await until(
      async () => (await json(envOf(dirs.symmetric), ["proposals", "--service-type", "relay"], topology.consumers[0])).length === 2,
      "both relays in discovery",
    );
    // A relay relays only to addresses the provider's signed proposal announces: its reachability measured and announced.
    await until(
      async () =>
        JSON.stringify(await json(envOf(dirs.symmetric), ["proposals", "--service-type", "wireguard"], topology.consumers[0])).includes(
          `"${topology.nat!.publicAddressOf(topology.provider)}"`,
        ),
      "the provider's proposal to announce its public address",
    );
  });

  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await topology?.down();
    await Promise.all([chain?.stop(), nats?.stop()]);
    for (const d of [dirs.provider, ...dirs.relays, dirs.symmetric, dirs.blocked, dirs.unpaid]) d.cleanup();
  });

  let consumerDaemon: ReturnType<typeof mystBackground>;

  it("symmetric × symmetric: relayed over UDP through the cheapest relay; the internet sees the provider; the relay is paid for the bytes it carried", async function () {
    const netns = topology.consumers[0];
    const env = envOf(dirs.symmetric);
    consumerDaemon = await daemon(env, netns);
    const connected = await json(env, ["connect", "--service", "wireguard", "--country", "DE"], netns);
    expect(connected.state).to.equal("connected");
    expect(connected.path).to.deep.include({ tunnel: "relayed" });
    expect(connected.path.relay).to.deep.include({ address: topology.relayAddressOf(0), port: 443, transport: "udp" });
    expect(connected.path.relay.provider.toLowerCase()).to.equal(relayIds[0]);
    expect(fetchFrom(topology, netns, topology.internetUrl)).to.equal(topology.nat!.publicAddressOf(topology.provider));
    expect(downloadFrom(topology, netns, `${topology.internetUrl}?bytes=20000000`, 60_000)).to.equal(20_000_000);
    const human = await myst(["status"], env, 30_000, { netns });
    expect(human.stdout).to.match(/relayed via 0x[0-9a-fA-F]{40} over UDP\/443/);
    // The relay invoices what coturn counted; the consumer promises within its own meter of the relay.
    const paid = await until(
      async () => {
        const s = await json(env, ["status"], netns);
        return BigInt(s.path.relayPromisedWei ?? "0") * GiB >= 15_000_000n * RELAY_PRICE_PER_GIB && s;
      },
      "the consumer to pay the relay for most of 20 MB",
      30_000,
    );
    const ended = await json(env, ["disconnect"], netns);
    const relayBytes = BigInt(ended.path.relayBytes);
    expect(relayBytes > 20_000_000n).to.equal(true);
    const promised = BigInt(ended.path.relayPromisedWei);
    expect(promised >= BigInt(paid.path.relayPromisedWei)).to.equal(true);
    // Within the invoice tolerance of the consumer's meter (25 %), and not far under it either.
    const byMeter = (relayBytes * RELAY_PRICE_PER_GIB) / GiB;
    expect(Number(promised) / Number(byMeter)).to.be.within(0.6, 1.25);
    // The relay holds those promises (its earnings), and the provider was paid too, from the same vault.
    const relayEarnings = await until(async () => {
      const e = await json(envOf(dirs.relays[0]), ["earnings"], topology.relays[0]);
      return BigInt(e.unsettledWei) + BigInt(e.settledWei) >= promised && e;
    }, "the relay to hold the consumer's promises");
    expect(BigInt(relayEarnings.unsettledWei) + BigInt(relayEarnings.settledWei) >= promised).to.equal(true);
    // The relay's own history says how the consumer reached it, as its coturn saw the allocation.
    const relayed = await json(envOf(dirs.relays[0]), ["sessions"], topology.relays[0]);
    expect(relayed.find((s: { serviceType: string }) => s.serviceType === "relay")?.path).to.deep.include({ transport: "udp" });
    expect(BigInt(ended.promisedWei) > 0n).to.equal(true);
  });

  it("a consumer whose network drops all UDP: relayed over TLS/443 (a TLS handshake on the wire, no TURN in clear); the internet sees the provider", async function () {
    const netns = topology.consumers[1];
    const env = envOf(dirs.blocked);
    // On the relay's machine, counters of what opens a TCP stream to 443: a TLS handshake record, or a STUN Allocate in clear.
    const relayNs = topology.relays[0];
    const nft = (command: string) => topology.exec(relayNs, ["/usr/sbin/nft", command]);
    nft("add table inet myst_wire");
    nft("add chain inet myst_wire input { type filter hook input priority 0; }");
    nft('add rule inet myst_wire input tcp dport 443 @ih,0,16 0x1603 counter comment "tls-record"');
    nft('add rule inet myst_wire input tcp dport 443 @ih,0,16 0x0003 @ih,32,32 0x2112a442 counter comment "turn-in-clear"');
    const counted = (name: string) => Number(new RegExp(`packets (\\d+) bytes \\d+ comment "${name}"`).exec(nft("list table inet myst_wire"))?.[1]);
    try {
      const d = await daemon(env, netns);
      const connected = await json(env, ["connect", "--service", "wireguard", "--country", "DE"], netns);
      expect(connected.path).to.deep.include({ tunnel: "relayed" });
      expect(connected.path.relay).to.deep.include({ address: topology.relayAddressOf(0), port: 443, transport: "tls" });
      expect(fetchFrom(topology, netns, topology.internetUrl), d.output().slice(-4000)).to.equal(topology.nat!.publicAddressOf(topology.provider));
      expect(downloadFrom(topology, netns, `${topology.internetUrl}?bytes=3000000`, 60_000)).to.equal(3_000_000);
      const human = await myst(["status"], env, 30_000, { netns });
      expect(human.stdout).to.match(/relayed via 0x[0-9a-fA-F]{40} over TLS\/443/);
      expect(counted("tls-record"), "TLS handshakes to 443").to.be.at.least(1);
      expect(counted("turn-in-clear"), "TURN Allocates in clear to 443").to.equal(0);
      await json(env, ["disconnect"], netns);
    } finally {
      nft("delete table inet myst_wire");
    }
  });

  it("a consumer that cannot pay the relay gets no credential: no relay session, NO_RELAY with the relay's refusal", async function () {
    const netns = topology.consumers[0];
    const env = envOf(dirs.unpaid);
    const d = await daemon(env, netns);
    const r = await myst(["connect", "--service", "wireguard", "--country", "DE", "--json"], env, 120_000, { netns });
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.include("no relay joined us");
    expect(r.stderr).to.include("PAYMENT_NOT_COVERED");
    const status = await json(env, ["status"], netns);
    expect(status.connection?.lastFailure ?? status.lastFailure).to.deep.include({ code: "NO_RELAY" });
    await d.stop();
  });

  it("a consumer that names an address its provider does not announce: the relay refuses it, saying so, and gives no credential", async function () {
    // The symmetric consumer's own identity (it has paid into its vault), speaking through the library
    // as a hostile consumer would: the provider's genuine signed proposal, and a peer that is not the provider's.
    const conn = await connectChain({ rpcUrl: chain.rpcUrl, deployment: chain.deployment });
    const registry = new IdentityRegistryClient(conn);
    await registry.start();
    const broker = new Broker({ servers: [nats.url] });
    await broker.start();
    try {
      const keystore = new Keystore({ dir: path.join(dirs.symmetric.dir, "keystore"), lightKdf: true });
      const key = await keystore.unlock(keystore.list()[0].address, "pw");
      const dialogs = new Dialogs({ broker, key, directory: registry, subject: "myst.dialog.e2e-relay-foreign" });
      await dialogs.start();
      const discovery = new DiscoveryClient(discoveryUrl, (id) => registry.publicKeyOf(id));
      const [relay, provider] = await Promise.all([discovery.get(relayIds[0], "relay"), discovery.get(providerId, "wireguard")]);
      const providerAddress = topology.nat!.publicAddressOf(topology.provider);
      const ask = (peers: string[]) =>
        rejectionOf(
          new ConsumerSessions(dialogs).connect({
            proposal: relay!.signed,
            service: new RelayConsumerService({ peers, provider: provider!.signed }),
            direct: false,
          }),
        );
      for (const peers of [[topology.internetAddress], [providerAddress, topology.internetAddress]]) {
        const refused = await ask(peers);
        expect(refused, JSON.stringify(peers)).to.deep.include({ code: "SESSION_REFUSED", refusal: "BAD_REQUEST" });
        expect(refused.message).to.include(
          `a relay session names ${topology.internetAddress}, not an address provider ${provider!.proposal.provider} announces`,
        );
      }
      dialogs.stop();
    } finally {
      await broker.stop();
      await registry.stop();
      conn.close();
    }
  });

  describe("the kill switch on, with --reconnect", function () {
    const provider = () => topology.nat!.publicAddressOf(topology.provider);
    const seen = () => fetchFrom(topology, topology.consumers[0], topology.internetUrl, 1000);
    const env = () => envOf(dirs.symmetric);
    const nft = (command: string) => topology.exec(topology.nat!.natRoutersOf(topology.consumers[0])[0], ["/usr/sbin/nft", command]);
    /** Packets the consumer's uplink (its home router) forwarded anywhere but the two relays and the node's own services (broker, discovery, chain), IPv4 and IPv6. */
    const leaked = () => {
      const listed = nft("list table inet myst_leak");
      return ["elsewhere", "ipv6"].map((name) => Number(new RegExp(`packets (\\d+) bytes \\d+ comment "${name}"`).exec(listed)?.[1]));
    };
    const withLog = (err: unknown) => {
      throw new Error(`${(err as Error).message}\nconsumer: ${consumerDaemon.output().slice(-4000)}`);
    };
    // What `myst connect --json` said of the first session.
    let first: { sessionId: string; state: string; path: { relay: { provider: string } }; protection?: object };

    before(async function () {
      const netns = topology.consumers[0];
      first = await json(env(), ["connect", "--service", "wireguard", "--country", "DE", "--reconnect"], netns);
      const allowed = [topology.relayAddressOf(0), topology.relayAddressOf(1), topology.servicesAddress].join(", ");
      nft("add table inet myst_leak");
      nft("add chain inet myst_leak forward { type filter hook forward priority -10; }");
      nft(`add rule inet myst_leak forward ip saddr ${topology.nat!.localAddressOf(netns)} ip daddr != { ${allowed} } counter comment "elsewhere"`);
      nft('add rule inet myst_leak forward meta nfproto ipv6 counter comment "ipv6"');
    });
    after(async function () {
      nft("delete table inet myst_leak");
      await json(env(), ["disconnect"], topology.consumers[0]).catch(() => undefined);
    });

    it("a relay that dies mid-session: the same session moves to the other relay through the kill switch, and carries traffic again; the uplink sees only the relays and the node's services", async function () {
      const netns = topology.consumers[0];
      expect(first).to.deep.include({ state: "connected" });
      expect(first.path.relay.provider.toLowerCase()).to.equal(relayIds[0]);
      expect(first.protection).to.deep.include({ killSwitch: true, state: "protecting" });
      expect(seen()).to.equal(provider());
      // The relay's machine dies: its daemon is killed, and coturn with it (its parent-death signal).
      const killedAt = Date.now();
      relayDaemons[0].child.kill("SIGKILL");
      await until(() => seen() === provider() && Date.now() - killedAt > 1500, "traffic back through the other relay", 60_000).catch(withLog);
      const backMs = Date.now() - killedAt;
      const moved = await until(async () => {
        const s = await json(env(), ["status"], netns);
        return s.path?.relay?.provider?.toLowerCase() === relayIds[1] && s;
      }, "the status to name the other relay");
      expect(moved).to.include({ state: "connected", sessionId: first.sessionId });
      console.log(`      traffic back ${backMs} ms after the relay died (issue 29 aims at 5 s; timings belong in the benchmark)`);
      expect(leaked(), "packets from the consumer to anywhere but the relays and its services, IPv4 and IPv6").to.deep.equal([0, 0]);
    });

    it("the session ends (the provider's service restarts): the reconnect reaches a relay through the held kill switch, its TURN server alone let out", async function () {
      const netns = topology.consumers[0];
      await json(envOf(dirs.provider), ["service", "stop", "wireguard"], topology.provider);
      await json(envOf(dirs.provider), providerService(), topology.provider);
      const again = await until(
        async () => {
          const s = await json(env(), ["status"], netns);
          return s.state === "connected" && s.sessionId !== first.sessionId && s;
        },
        "the reconnect to a new session through a relay",
        90_000,
      ).catch(withLog);
      expect(again.path).to.deep.include({ tunnel: "relayed" });
      expect(again.path.relay.provider.toLowerCase()).to.equal(relayIds[1]);
      expect(again.protection).to.deep.include({ killSwitch: true, state: "protecting" });
      expect(seen()).to.equal(provider());
      expect(leaked(), "packets from the consumer to anywhere but the relays and its services, IPv4 and IPv6").to.deep.equal([0, 0]);
    });
  });
});
