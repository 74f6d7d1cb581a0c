import { expect } from "chai";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { Broker } from "../../node/broker/broker";
import { connectChain, type ChainConnection } from "../../node/chain/connect";
import { IdentityRegistryClient } from "../../node/chain/registry";
import { DiscoveryClient, type FoundProposal } from "../../node/discovery/client";
import { Dialogs } from "../../node/dialog/dialogs";
import type { IdentityKey } from "../../node/identity/key";
import { natsContactOf, type Proposal, signProposal } from "../../node/proposal/proposal";
import type { DialBack } from "../../node/services/relay/tcp-held";
import { SESSION_CREATE } from "../../node/session/messages";
import { depositIn, registerIdentityIn, unlockedIn } from "../../scripts/lib/data-dir-setup";
import { freePort, stopChild, testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { IP } from "../../scripts/lib/netns-exec";
import { requireE2E } from "../../scripts/lib/prereqs";
import { makeProposal } from "../../scripts/lib/proposals";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { tempDir } from "../../scripts/lib/tmp";
import { topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { buildCli, cliEnv, mystBackground, mystJson, onConsumerMachine, startCliDiscovery } from "../support/cli";
import { relayServiceStart } from "../support/relay-service";

/** A host on the internet that is no relay: an address of the internet host's that nothing else uses. */
const TARGET = "198.18.2.9";
/** The "relayed port" the hostile consumer names there, and the TURN port the provider's proof would knock on. */
const RELAYED_PORT = 50123;
const TURN_PORT = 443;

/**
 * A hostile consumer and the proxy's dial-back (issue 32, docs/proxy.md "A consumer allowed only
 * TCP/443"): a registered consumer with a funded vault speaks the real signed dialog to a real
 * provider daemon (`session.create` over the broker, sealed and signed with its own key) and asks it
 * to dial back to a host that runs no relay. The provider must refuse with a clear code and send
 * nothing there: counted by nftables on that host (every packet to its address) and by a listener on
 * the named ports (every connection). Unit tests (proxy-dial-back.test.ts, proxy-relay.test.ts) check
 * the checks; this checks the daemon as deployed, on the network.
 */
describe("e2e: a hostile proxy consumer cannot make the provider dial a host that runs no relay", function () {
  this.timeout(240_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  let conn: ChainConnection;
  let registry: IdentityRegistryClient;
  let broker: Broker;
  let dialogs: Dialogs;
  let listener: ChildProcess | undefined;
  let accepted = "";
  const background: ReturnType<typeof mystBackground>[] = [];
  const dirs = {
    provider: tempDir("myst-pdb-p-"),
    relay: tempDir("myst-pdb-r-"),
    consumer: tempDir("myst-pdb-c-"),
    secondIdentity: tempDir("myst-pdb-2-"),
  };
  let base: NodeJS.ProcessEnv;
  let provider: ReturnType<typeof mystBackground>;
  let proxyProposal: FoundProposal;
  let relayProposal: FoundProposal;
  let secondKey: IdentityKey;

  async function daemon(env: NodeJS.ProcessEnv, netns: string): Promise<ReturnType<typeof mystBackground>> {
    const d = mystBackground(["daemon", "--api-port", "0"], env, { netns });
    background.push(d);
    await until(() => d.output().includes("REST API:") || d.child.exitCode !== null, "a daemon to listen");
    expect(d.child.exitCode, d.output()).to.equal(null);
    return d;
  }

  /** What reached the target so far: packets to its address (nftables, before anything else sees them) and connections its listener accepted, per port. */
  function atTarget(): { packets: number; relayedPackets: number; connections: Record<number, number> } {
    const out = JSON.parse(topology.exec(topology.internet, ["/usr/sbin/nft", "-j", "list", "counters", "table", "inet", "myst_target"]));
    const packets = (name: string) => out.nftables.find((e: { counter?: { name: string } }) => e.counter?.name === name)?.counter.packets as number;
    const connections: Record<number, number> = { [RELAYED_PORT]: 0, [TURN_PORT]: 0 };
    for (const m of accepted.matchAll(/^accepted (\d+)$/gm)) connections[Number(m[1])]++;
    return { packets: packets("to_target"), relayedPackets: packets("to_relayed"), connections };
  }

  /** The hostile consumer's `session.create` with `dialBack` in its consumer data: the provider's answer. */
  async function sessionCreate(dialBack: DialBack): Promise<{ refused?: { code: string; message: string }; accepted?: unknown }> {
    const dialog = await dialogs.open(proxyProposal.proposal.provider, natsContactOf(proxyProposal.proposal)!.subject);
    try {
      return (await dialog.request(
        SESSION_CREATE,
        { proposal: proxyProposal.signed, correlationId: "hostile", consumerData: { dialBack } },
        { timeoutMs: 30_000 },
      )) as { refused?: { code: string; message: string } };
    } finally {
      dialog.close();
    }
  }

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats, topology] = await Promise.all([
      testChain(),
      startNatsServer(),
      topologyUp({ consumers: 1, relays: 1, nat: { provider: "eim", consumer: ["public"] } }),
    ]);
    base = cliEnv(chain, nats.url, await freePort());
    for (const d of Object.values(dirs)) await registerIdentityIn(chain, { ...base, MYST_DATA_DIR: d.dir });
    await depositIn({ ...base, MYST_DATA_DIR: dirs.consumer.dir }, "5", "1");
    background.push(await startCliDiscovery(base));
    const machine = { ...(await onConsumerMachine(topology, base)), MYST_STUN_SERVERS: topology.nat!.stunServers.join(","), MYST_LOG_LEVEL: "info" };
    const envOf = (d: { dir: string }) => ({ ...machine, MYST_DATA_DIR: d.dir });
    provider = await daemon(envOf(dirs.provider), topology.provider);
    await mystJson(
      envOf(dirs.provider),
      ["service", "start", "proxy", "--public-ip", topology.nat!.publicAddressOf(topology.provider), "--country", "DE", "--price-per-gib", "0.1"],
      topology.provider,
    );
    await daemon(envOf(dirs.relay), topology.relays[0]);
    await mystJson(envOf(dirs.relay), relayServiceStart(topology, 0), topology.relays[0]);

    // The hostile consumer: this process, on the broker with its own registered key, no node of its own.
    conn = await connectChain({ rpcUrl: chain.rpcUrl, deployment: chain.deployment, pollingIntervalMs: 200 });
    registry = new IdentityRegistryClient(conn);
    await registry.start();
    const discovery = new DiscoveryClient(base.MYST_DISCOVERY_URLS!, (id) => registry.publicKeyOf(id));
    // The relay's proposal once it announces an address it can be reached at (what a dial-back must name).
    [proxyProposal, relayProposal] = await until(
      async () => {
        const [proxy, relay] = await Promise.all([discovery.search({ serviceType: "proxy" }), discovery.search({ serviceType: "relay" })]);
        const reachable = relay.proposals.find((p) => JSON.stringify(p.proposal.contacts).includes(`"${topology.relayAddressOf(0)}"`));
        return proxy.proposals.length === 1 && reachable && ([proxy.proposals[0], reachable] as const);
      },
      "the proxy's and the relay's proposals in discovery",
      60_000,
    );
    broker = new Broker({ servers: [nats.url] });
    await broker.start();
    dialogs = new Dialogs({ broker, key: await unlockedIn({ ...base, MYST_DATA_DIR: dirs.consumer.dir }), directory: registry });
    await dialogs.start();
    secondKey = await unlockedIn({ ...base, MYST_DATA_DIR: dirs.secondIdentity.dir });

    // The target: an address of the internet host's, every packet to it counted; a listener on both ports counts connections.
    topology.exec(topology.internet, ["/usr/sbin/ip", "addr", "add", `${TARGET}/24`, "dev", "eth0"]);
    const r = spawnSync(IP, ["netns", "exec", topology.internet, "/usr/sbin/nft", "-f", "-"], {
      input: `table inet myst_target {\ncounter to_target { }\ncounter to_relayed { }\nchain arrivals {\ntype filter hook prerouting priority -400; policy accept;\nip daddr ${TARGET} counter name to_target\nip daddr ${TARGET} tcp dport ${RELAYED_PORT} counter name to_relayed\n}\n}\n`,
      encoding: "utf8",
    });
    expect(r.status, r.stderr).to.equal(0);
    const script = `const net=require("node:net");let n=0;for(const p of [${RELAYED_PORT},${TURN_PORT}])net.createServer(s=>{console.log("accepted "+p);s.destroy()}).listen(p,"${TARGET}",()=>{if(++n===2)console.log("listening")})`;
    listener = spawn(IP, ["netns", "exec", topology.internet, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    listener.stdout!.on("data", (d) => (accepted += d));
    await until(() => accepted.includes("listening"), "the target's listener");
    // The instruments count: one connection from the provider's machine to the relayed port shows on both.
    const probe = spawnSync(IP, ["netns", "exec", topology.provider, "curl", "-s", "--max-time", "5", `http://${TARGET}:${RELAYED_PORT}/`]);
    expect(probe.status, "curl from the provider's machine to the target").to.not.equal(null);
    await until(() => atTarget().connections[RELAYED_PORT] === 1, "the target's listener to count the provider's own connection");
    expect(atTarget().relayedPackets, "packets counted to the relayed port").to.be.greaterThan(0);
    await new Promise((r) => setTimeout(r, 1000)); // the probe's last packets, before any case reads its baseline
  });

  after(async function () {
    if (listener) await stopChild(listener);
    await dialogs?.stop();
    await broker?.stop();
    await registry?.stop();
    conn?.close();
    await Promise.all(background.map((b) => b.stop()));
    await topology?.down();
    await Promise.all([chain?.stop(), nats?.stop()]);
    for (const d of Object.values(dirs)) d.cleanup();
  });

  it("a real relay's signed proposal, and a dial-back to another host: refused before anything is sent (BAD_REQUEST, the address is not one the relay announces)", async function () {
    const before = atTarget();
    const answer = await sessionCreate({
      relay: relayProposal.proposal.provider,
      address: TARGET,
      port: RELAYED_PORT,
      turnPort: TURN_PORT,
      proposal: relayProposal.signed,
    });
    await new Promise((r) => setTimeout(r, 1000));
    const after = atTarget();
    expect(after.packets - before.packets, "packets that reached the target").to.equal(0);
    expect(after.connections, "connections the target accepted").to.deep.equal(before.connections);
    expect(answer.accepted, "the provider accepted the session").to.equal(undefined);
    expect(answer.refused?.code).to.equal("BAD_REQUEST");
    expect(answer.refused?.message).to.include(`dial-back address ${TARGET} is not one relay`);
    expect(provider.output()).to.include("proxy dial-back refused");
  });

  it("a relay proposal the consumer's second identity signed for that host: its TURN port gets the one TLS hello of the proof, the relayed port nothing (BAD_REQUEST, not shown to run the relay)", async function () {
    const own = makeProposal(secondKey, { serviceType: "relay" });
    const announcing: Proposal = {
      ...own,
      contacts: [
        ...own.contacts,
        {
          type: "direct/v1",
          nat: { mapping: "none", filtering: "endpoint-independent" },
          candidates: [{ kind: "public", address: TARGET, port: TURN_PORT, protocol: "udp" }],
        },
      ],
    } as Proposal;
    const before = atTarget();
    const answer = await sessionCreate({
      relay: secondKey.address,
      address: TARGET,
      port: RELAYED_PORT,
      turnPort: TURN_PORT,
      proposal: signProposal(secondKey, announcing),
    });
    await new Promise((r) => setTimeout(r, 1000));
    const after = atTarget();
    expect(after.relayedPackets - before.relayedPackets, "packets to the relayed port").to.equal(0);
    expect(after.connections[RELAYED_PORT] - before.connections[RELAYED_PORT], "connections to the relayed port").to.equal(0);
    expect(answer.accepted, "the provider accepted the session").to.equal(undefined);
    expect(answer.refused?.code).to.equal("BAD_REQUEST");
    expect(answer.refused?.message).to.include(`${TARGET}:${TURN_PORT} is not shown to run relay ${secondKey.address}`);
    // The proof (docs/proxy.md "What is not closed"): one connection to the TURN port, a TLS hello, no more.
    expect(after.connections[TURN_PORT] - before.connections[TURN_PORT], "connections to the TURN port (the proof's)").to.equal(1);
  });
});
