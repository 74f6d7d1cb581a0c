import { expect } from "chai";
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { testChain, freePort, type LocalChain } from "../../scripts/lib/local-chain";
import { IP, nft } from "../../scripts/lib/netns-exec";
import { requireE2E } from "../../scripts/lib/prereqs";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { tempDir } from "../../scripts/lib/tmp";
import { fetchFrom, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { relayServiceStart } from "../support/relay-service";
import { buildCli, cliEnv, mystBackground, mystJson, onConsumerMachine, startCliDiscovery } from "../support/cli";
import { depositIn, registerIdentityIn } from "../../scripts/lib/data-dir-setup";

const GiB = 1n << 30n;
const RELAY_PRICE_PER_GIB = 10n ** 17n; // 0.1 MYST, the hostile relay's (the cheaper: the consumer picks it)
const SHIM_PORT = 4433;

interface ShimStats {
  genuine: number;
  genuineToClient: number;
  genuineToCoturn: number;
  flipped: number;
  flippedBytes: number;
  junk: number;
  replayed: number;
  forged: number;
  dropped: number;
}

/**
 * A hostile relay (issue 29): a relay node whose real coturn sits behind a proxy on its own
 * machine (test/support/hostile-relay.js, an nft redirect of its public TURN port) that flips
 * bytes, sends junk frames, replays datagrams, forges WireGuard messages and at last drops
 * everything. WireGuard runs end to end, so the tunnel's traffic arrives byte-exact or not at all;
 * the consumer's meter of the relay counts only frames valid for the session and, of those, only
 * as much as WireGuard authenticated (what the relay made up is not its to bill); and a relay that
 * drops everything loses the session to a healthy relay, the same session going on.
 */
describe("e2e: a hostile relay breaks nothing but its own session", function () {
  this.timeout(240_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  let machine: NodeJS.ProcessEnv;
  let shim: ChildProcess | undefined;
  let shimOut = "";
  const background: ReturnType<typeof mystBackground>[] = [];
  const dirs = {
    provider: tempDir("myst-hostile-p-"),
    relays: [tempDir("myst-hostile-r0-"), tempDir("myst-hostile-r1-")],
    consumer: tempDir("myst-hostile-c-"),
  };
  const relayIds: string[] = [];
  let consumerDaemon: ReturnType<typeof mystBackground>;
  let sessionId: string;
  /** How far the set-up got (said when it fails). */
  let step = "starting";

  const json = mystJson;
  const envOf = (d: { dir: string }) => ({ ...machine, MYST_DATA_DIR: d.dir });

  async function daemon(env: NodeJS.ProcessEnv, netns: string, extra: string[] = []): Promise<ReturnType<typeof mystBackground>> {
    const d = mystBackground(["daemon", "--api-port", "0", ...extra], env, { netns });
    background.push(d);
    await until(() => d.output().includes("REST API:") || d.child.exitCode !== null, "a daemon to listen");
    expect(d.child.exitCode, d.output()).to.equal(null);
    return d;
  }

  /** Tells the hostile relay what to do, and waits until it does. */
  async function shimSays(line: string, answer: (out: string) => string | undefined): Promise<string> {
    const from = shimOut.length;
    shim!.stdin!.write(`${line}\n`);
    return until(() => answer(shimOut.slice(from)), `the hostile relay to answer "${line}"`, 10_000);
  }
  const mode = (m: string) => shimSays(`mode ${m}`, (out) => (out.includes(`mode ${m}\n`) ? m : undefined));
  const shimStats = async (): Promise<ShimStats> => JSON.parse(await shimSays("stats", (out) => /^\{.*\}$/m.exec(out)?.[0]));

  /** Downloads `bytes` through the tunnel: how many arrived, and how many are not the 'x' the internet host sent. */
  function download(bytes: number): { length: number; corrupt: number } | null {
    const netns = topology.consumers[0];
    const script = `fetch(${JSON.stringify(`${topology.internetUrl}?bytes=${bytes}`)},{signal:AbortSignal.timeout(90000)}).then(r=>r.arrayBuffer()).then(b=>{const u=new Uint8Array(b);let c=0;for(const x of u)if(x!==120)c++;process.stdout.write(u.length+" "+c)},()=>process.exit(3))`;
    try {
      const [length, corrupt] = topology.exec(netns, [process.execPath, "-e", script], { timeoutMs: 100_000 }).trim().split(" ").map(Number);
      return { length, corrupt };
    } catch {
      return null;
    }
  }
  const seen = () => fetchFrom(topology, topology.consumers[0], topology.internetUrl, 1500);
  const status = () => json(envOf(dirs.consumer), ["status"], topology.consumers[0]);

  before(async function () {
    this.timeout(420_000);
    requireE2E(this);
    step = "building the CLI";
    buildCli();
    step = "chain, broker, namespaces";
    [chain, nats, topology] = await Promise.all([
      testChain(),
      startNatsServer(),
      topologyUp({ consumers: 1, relays: 2, nat: { provider: "symmetric", consumer: ["symmetric"] } }),
    ]);
    const base = cliEnv(chain, nats.url, await freePort());
    step = "registering";
    for (const d of [dirs.provider, ...dirs.relays, dirs.consumer]) {
      const id = await registerIdentityIn(chain, { ...base, MYST_DATA_DIR: d.dir });
      if (dirs.relays.includes(d)) relayIds.push(id.toLowerCase());
    }
    await depositIn({ ...base, MYST_DATA_DIR: dirs.consumer.dir }, "5", "1");
    background.push(await startCliDiscovery(base));
    machine = { ...(await onConsumerMachine(topology, base)), MYST_STUN_SERVERS: topology.nat!.stunServers.join(","), MYST_LOG_LEVEL: "info" };

    step = "the provider and the relays";
    await daemon(envOf(dirs.provider), topology.provider, ["--invoice-every", "1"]);
    await json(
      envOf(dirs.provider),
      ["service", "start", "wireguard", "--public-ip", topology.nat!.publicAddressOf(topology.provider), "--country", "DE", "--device", `mwh${topology.tag}`],
      topology.provider,
    );
    for (const [i, d] of dirs.relays.entries()) {
      await daemon(envOf(d), topology.relays[i], ["--invoice-every", "1"]);
      await json(envOf(d), relayServiceStart(topology, i), topology.relays[i]);
    }
    step = "the hostile relay's proxy";
    // The cheaper relay turns hostile: its public TURN port (UDP) goes to the proxy, which talks to its coturn.
    const relay0 = topology.relays[0];
    const address = topology.relayAddressOf(0);
    shim = spawn(
      IP,
      ["netns", "exec", relay0, process.execPath, path.join(__dirname, "..", "support", "hostile-relay.js"), String(SHIM_PORT), address, "443"],
      {
        stdio: ["pipe", "pipe", "inherit"],
      },
    );
    shim.stdout!.on("data", (d) => (shimOut += d));
    await until(() => shimOut.includes("listening"), "the hostile relay's proxy to listen");
    nft(
      relay0,
      `table ip myst_hostile {\nchain pre {\ntype nat hook prerouting priority -100; policy accept;\niifname "eth0" udp dport 443 redirect to :${SHIM_PORT}\n}\n}\n`,
    );
    step = "both relays in discovery";
    await until(
      async () => (await json(envOf(dirs.consumer), ["proposals", "--service-type", "relay"], topology.consumers[0])).length === 2,
      "both relays in discovery",
    );
    // A relay lets in only the addresses the provider's proposal announces: those come once its
    // reachability is measured (a STUN round and the router asked for a port), which may end after the
    // relays are listed.
    step = "the provider's measured contact in discovery";
    await until(
      async () =>
        ((await json(envOf(dirs.consumer), ["proposals", "--service-type", "wireguard"], topology.consumers[0])) as { contacts?: { type: string }[] }[]).some(
          (p) => p.contacts?.some((c) => c.type === "direct/v1"),
        ),
      "the provider's direct contact in discovery",
    );
    step = "the consumer connects";
    consumerDaemon = await daemon(envOf(dirs.consumer), topology.consumers[0]);
    const connected = await json(envOf(dirs.consumer), ["connect", "--service", "wireguard", "--country", "DE"], topology.consumers[0]);
    expect(connected.path).to.deep.include({ tunnel: "relayed" });
    expect(connected.path.relay.provider.toLowerCase(), "the consumer picked the cheaper (hostile) relay").to.equal(relayIds[0]);
    expect(connected.path.relay).to.deep.include({ address, port: 443, transport: "udp" });
    sessionId = connected.sessionId;
    step = "connected";
  });

  after(async function () {
    if (step !== "connected") console.log(`      the set-up stopped at: ${step}\n${consumerDaemon?.output().slice(-3000) ?? ""}`);
    if (shim?.pid && shim.exitCode === null) process.kill(shim.pid, "SIGKILL");
    await Promise.all(background.map((b) => b.stop()));
    await topology?.down();
    await Promise.all([chain?.stop(), nats?.stop()]);
    for (const d of [dirs.provider, ...dirs.relays, dirs.consumer]) d.cleanup();
  });

  it("a relay that flips bytes and sends junk: the download arrives byte-exact, and the consumer's meter counts none of the junk", async function () {
    await mode("flip");
    const got = download(3_000_000);
    expect(got, consumerDaemon.output().slice(-3000)).to.deep.equal({ length: 3_000_000, corrupt: 0 });
    // A fetch through a relay that spoils one frame in four loses each TCP handshake attempt about half
    // the time (the SYN or its answer): one 20-s curl failed in a loaded CI run. Up to three tries.
    let seen: string | null = null;
    for (let i = 0; i < 3 && seen === null; i++) seen = fetchFrom(topology, topology.consumers[0], topology.internetUrl, 20_000);
    expect(seen).to.equal(topology.nat!.publicAddressOf(topology.provider));
    const shimmed = await shimStats();
    expect(shimmed.flipped, "frames the relay flipped").to.be.above(100);
    expect(shimmed.junk, "junk bytes the relay sent").to.be.above(1_000_000);
    const s = await status();
    expect(s.sessionId).to.equal(sessionId);
    // What the consumer counts of the relay: what the relay really carried (flipped frames are carried, corrupt), never what it made up.
    const meter = Number(s.path.relayBytes);
    expect(meter, JSON.stringify(shimmed)).to.be.at.most(shimmed.genuine + shimmed.flippedBytes + 64_000);
    expect(meter).to.be.at.least(shimmed.genuine * 0.9);
  });

  it("a relay that replays datagrams: the download arrives byte-exact, and the consumer counts each frame once", async function () {
    const before = await shimStats();
    await mode("replay");
    const got = download(3_000_000);
    expect(got, consumerDaemon.output().slice(-3000)).to.deep.equal({ length: 3_000_000, corrupt: 0 });
    await mode("pass");
    const after = await shimStats();
    expect(after.replayed - before.replayed, "bytes the relay replayed").to.be.above(3_000_000);
    const meter = Number((await status()).path.relayBytes);
    expect(meter, JSON.stringify(after)).to.be.at.most(after.genuine + after.flippedBytes + 64_000);
  });

  it("a relay that forges WireGuard messages with fresh counters: the download arrives byte-exact, and the consumer credits it only for what WireGuard authenticated", async function () {
    const before = await shimStats();
    const meterBefore = Number((await status()).path.relayBytes);
    await mode("forge");
    const got = download(3_000_000);
    await mode("pass");
    expect(got, consumerDaemon.output().slice(-3000)).to.deep.equal({ length: 3_000_000, corrupt: 0 });
    const after = await shimStats();
    const forged = after.forged - before.forged;
    const genuine = after.genuine - before.genuine;
    expect(forged, "bytes the relay forged").to.be.above(5_000_000);
    // The forged messages pass the forwarder's tests (shape, fresh counter); WireGuard's counters, which cap the meter, do not count them.
    const metered = Number((await status()).path.relayBytes) - meterBefore;
    expect(metered, JSON.stringify({ before, after })).to.be.at.most(genuine + 64_000);
    // Not all the relay carried reached WireGuard: tripling the packets into the tunnel's socket loses some there (measured 11 %).
    expect(metered).to.be.at.least(genuine * 0.75);
    console.log(`      forged ${forged} bytes; credited ${metered} of ${genuine} genuine (${((metered / genuine) * 100).toFixed(1)} %)`);
  });

  it("a relay that drops everything: the same session moves to the healthy relay, which carries it byte-exact; the hostile one is paid no more than the consumer's meter", async function () {
    const metered = BigInt((await status()).path.relayBytes);
    await mode("drop");
    const droppedAt = Date.now();
    await until(
      () => seen() === topology.nat!.publicAddressOf(topology.provider) && Date.now() - droppedAt > 1500,
      "traffic back through the healthy relay",
      60_000,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}\nconsumer: ${consumerDaemon.output().slice(-4000)}`);
    });
    const backMs = Date.now() - droppedAt;
    const moved = await until(async () => {
      const s = await status();
      return s.path?.relay?.provider?.toLowerCase() === relayIds[1] && s;
    }, "the status to name the healthy relay");
    expect(moved).to.include({ state: "connected", sessionId });
    console.log(`      traffic back ${backMs} ms after the relay dropped everything (issue 29 aims at 5 s; timings belong in the benchmark)`);
    expect(download(2_000_000)).to.deep.equal({ length: 2_000_000, corrupt: 0 });
    // The hostile relay holds the consumer's promises for what its coturn counted, which the consumer's meter bounds
    // (its invoice tolerance, 25 %); what it dropped it never carried, and the consumer ended its session.
    const earned = await json(envOf(dirs.relays[0]), ["earnings"], topology.relays[0]);
    const held = BigInt(earned.unsettledWei) + BigInt(earned.settledWei);
    expect(held > 0n, "the hostile relay was paid for what it carried before").to.equal(true);
    const shimmed = await shimStats();
    const carried = BigInt(shimmed.genuine + shimmed.flippedBytes);
    expect(held * GiB <= ((carried * 125n) / 100n) * RELAY_PRICE_PER_GIB, `held ${held}, carried ${carried}, metered ${metered}`).to.equal(true);
    await json(envOf(dirs.consumer), ["disconnect"], topology.consumers[0]);
  });
});
