import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { testChain, freePort, type LocalChain } from "../../scripts/lib/local-chain";
import { IP } from "../../scripts/lib/netns-exec";
import { requireE2E } from "../../scripts/lib/prereqs";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { tempDir } from "../../scripts/lib/tmp";
import { topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { relayServiceStart } from "../support/relay-service";
import { buildCli, cliEnv, mystBackground, mystJson, onConsumerMachine, startCliDiscovery } from "../support/cli";
import { depositIn, registerIdentityIn } from "../../scripts/lib/data-dir-setup";

const GiB = 1n << 30n;
const RELAY_PRICE_PER_GIB = 10n ** 17n; // 0.1 MYST

/**
 * The proxy through a relay (issue 32), every node on its own machine: a proxy provider behind a
 * home router that maps nothing and drops what it did not ask for, a consumer whose network drops
 * all UDP, one relay node on port 443 (Debian's coturn). The provider holds a TCP allocation
 * (RFC 6062) on the relay over TLS with the credential of the relay session the consumer pays; the
 * consumer's proxy connection goes to the relayed TCP address, TLS end to end with the provider.
 */
describe("e2e: the proxy through a relay's TCP allocation (provider behind a NAT that maps nothing, consumer without UDP)", function () {
  this.timeout(240_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  let machine: NodeJS.ProcessEnv;
  const background: ReturnType<typeof mystBackground>[] = [];
  const dirs = { provider: tempDir("myst-prx-p-"), relay: tempDir("myst-prx-r-"), consumer: tempDir("myst-prx-c-"), only443: tempDir("myst-prx-4-") };
  let provider: ReturnType<typeof mystBackground>;
  let relayNode: ReturnType<typeof mystBackground>;
  const envOf = (d: { dir: string }) => ({ ...machine, MYST_DATA_DIR: d.dir });

  async function daemon(env: NodeJS.ProcessEnv, netns: string, extra: string[] = []): Promise<ReturnType<typeof mystBackground>> {
    const d = mystBackground(["daemon", "--api-port", "0", ...extra], env, { netns });
    background.push(d);
    await until(() => d.output().includes("REST API:") || d.child.exitCode !== null, "a daemon to listen");
    expect(d.child.exitCode, d.output()).to.equal(null);
    return d;
  }
  /** curl in consumer `i`'s namespace (never throws). */
  function curl(args: string[], i = 0): { code: number | null; stdout: string } {
    const r = spawnSync(IP, ["netns", "exec", topology.consumers[i], "curl", "-sS", "--max-time", "60", ...args], { encoding: "utf8", maxBuffer: 1 << 20 });
    return { code: r.status, stdout: r.stdout.trim() };
  }
  /**
   * Consumer `i`'s status once it has promised the relay at least 10 MB after a 20 MB download. Both
   * TCP legs keep coturn's counters reporting (TcpRelayedListener #evenCounters, #flipParity), but coturn brings
   * them up to date only every 4,096 reads it splices, and under load it reads in bigger chunks: one
   * 20 MB download may be fewer reads than that (a CI run at load 5-8 timed out after one). Another
   * 20 MB (at most 3 more) until they show; quiet, the first is enough.
   */
  async function relayPaid(i: number, env: NodeJS.ProcessEnv): Promise<Awaited<ReturnType<typeof mystJson>>> {
    const download = () =>
      curl(["--proxy", "socks5h://127.0.0.1:1080", "-o", "/dev/null", "-w", "%{size_download}", `${topology.internetUrl}?bytes=20000000`], i);
    expect(download().stdout).to.equal("20000000");
    for (let more = 0; ; more++) {
      const paid = await until(
        async () => {
          const s = await mystJson(env, ["status"], topology.consumers[i]);
          return BigInt(s.path.relayPromisedWei ?? "0") * GiB >= 10_000_000n * RELAY_PRICE_PER_GIB && s;
        },
        "the consumer to pay the relay for at least 10 MB of what it carried",
        more < 3 ? 20_000 : 60_000,
      ).catch((err) => {
        if (more >= 3) throw err;
        expect(download().stdout).to.equal("20000000");
        return false as const;
      });
      if (paid) return paid;
    }
  }

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats, topology] = await Promise.all([
      testChain(),
      startNatsServer(),
      topologyUp({ consumers: 2, relays: 1, nat: { provider: "eim", consumer: ["udp-blocked", "tcp443-only"] } }),
    ]);
    const base = cliEnv(chain, nats.url, await freePort());
    for (const d of Object.values(dirs)) await registerIdentityIn(chain, { ...base, MYST_DATA_DIR: d.dir });
    for (const d of [dirs.consumer, dirs.only443]) await depositIn({ ...base, MYST_DATA_DIR: d.dir }, "5", "1");
    background.push(await startCliDiscovery(base));
    machine = { ...(await onConsumerMachine(topology, base)), MYST_STUN_SERVERS: topology.nat!.stunServers.join(","), MYST_LOG_LEVEL: "info" };
    provider = await daemon(envOf(dirs.provider), topology.provider, ["--invoice-every", "1"]);
    const publicIp = topology.nat!.publicAddressOf(topology.provider);
    await mystJson(
      envOf(dirs.provider),
      ["service", "start", "proxy", "--public-ip", publicIp, "--country", "DE", "--price-per-gib", "0.1"],
      topology.provider,
    );
    relayNode = await daemon(envOf(dirs.relay), topology.relays[0], ["--invoice-every", "1"]);
    await mystJson(envOf(dirs.relay), relayServiceStart(topology, 0), topology.relays[0]);
    const consumerNs = topology.consumers[0];
    await daemon(envOf(dirs.consumer), consumerNs);
    await daemon(envOf(dirs.only443), topology.consumers[1]);
    // The proxy's proposal once the provider has measured its reachability: it can be reached only by punching (which TCP cannot).
    await until(
      async () => {
        const proxy = JSON.stringify(await mystJson(envOf(dirs.consumer), ["proposals", "--service-type", "proxy"], consumerNs));
        const relays = await mystJson(envOf(dirs.consumer), ["proposals", "--service-type", "relay"], consumerNs);
        return relays.length === 1 && proxy.includes('"punch-only"') && !/"kind":"(public|mapped)"/.test(proxy);
      },
      "the relay, and the proxy's proposal saying its provider cannot be dialled, in discovery",
      60_000,
    );
  });

  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await topology?.down();
    await Promise.all([chain?.stop(), nats?.stop()]);
    for (const d of Object.values(dirs)) d.cleanup();
  });

  it("the provider is not reachable directly: without UDP and without a mapping, curl over socks5h still sees the provider's address; the relay is paid for the bytes it carried", async function () {
    const netns = topology.consumers[0];
    const env = envOf(dirs.consumer);
    const connected = await mystJson(env, ["connect", "--service", "proxy", "--listen", "127.0.0.1:1080"], netns);
    expect(connected.state).to.equal("connected");
    expect(connected.path).to.deep.include({ tunnel: "relayed" });
    expect(connected.path.relay).to.deep.include({ address: topology.relayAddressOf(0), port: 443, transport: "tcp" });
    const providerAddress = topology.nat!.publicAddressOf(topology.provider);
    expect(curl(["--proxy", "socks5h://127.0.0.1:1080", topology.internetUrl]).stdout).to.equal(providerAddress);
    // Without the proxy the internet host sees the consumer's own network.
    const consumerAddress = curl([topology.internetUrl]).stdout;
    expect(consumerAddress).to.not.equal(providerAddress);
    // The relay took the one peer the provider's allocation may have from the consumer's proof, on its own socket.
    const proven = relayNode
      .output()
      .split("\n")
      .filter((l) => l.includes("proved its address"))
      .map((l) => /"peer":"([0-9.]+)"/.exec(l)?.[1]);
    expect(proven, "the relay's proven peer: the consumer's public address").to.deep.equal([consumerAddress]);
    const paid = await relayPaid(0, env);
    expect(BigInt(paid.path.relayBytes) >= 20_000_000n, "the consumer's meter of the relay").to.equal(true);
    // The relay node holds those promises (its earnings).
    const promised = BigInt(paid.path.relayPromisedWei);
    await until(async () => {
      const e = await mystJson(envOf(dirs.relay), ["earnings"], topology.relays[0]);
      return BigInt(e.unsettledWei) + BigInt(e.settledWei) >= promised;
    }, "the relay to hold the consumer's promises");
  });

  it("refuses a stream through the relayed address that carries no session credential (407)", async function () {
    const m = /"relayed":\{"address":"([0-9.]+)","port":(\d+)\}/.exec(provider.output());
    expect(m, "the provider logged its relayed address").to.not.equal(null);
    // An HTTP/2 CONNECT from the consumer's machine (whose address the allocation lets in) without proxy-authorization.
    const script = `const h=require("http2").connect("https://${m![1]}:${m![2]}",{rejectUnauthorized:false});h.on("error",e=>{console.log("error "+e.message);process.exit(0)});const r=h.request({":method":"CONNECT",":authority":"198.18.2.2:8080"});r.on("response",x=>{console.log(x[":status"]);process.exit(0)});r.on("error",e=>{console.log("error "+e.message);process.exit(0)})`;
    const r = spawnSync(IP, ["netns", "exec", topology.consumers[0], process.execPath, "-e", script], { encoding: "utf8", timeout: 30_000 });
    expect(r.stdout.trim()).to.equal("407");
    await mystJson(envOf(dirs.consumer), ["disconnect"], topology.consumers[0]);
  });

  it("a consumer allowed only TCP/443 holds the TCP allocation itself and the provider dials back: curl over socks5h sees the provider's address; the relay is paid", async function () {
    const netns = topology.consumers[1];
    const env = envOf(dirs.only443);
    // The network lets out nothing but TCP/443 (and DNS, and the marketplace's services): the internet host's HTTP port is out of reach.
    expect(curl(["--max-time", "5", topology.internetUrl], 1).code, "a direct request from the TCP/443-only network").to.not.equal(0);
    const connected = await mystJson(env, ["connect", "--service", "proxy", "--listen", "127.0.0.1:1080"], netns);
    expect(connected.state).to.equal("connected");
    expect(connected.path).to.deep.include({ tunnel: "relayed" });
    expect(connected.path.relay).to.deep.include({ address: topology.relayAddressOf(0), port: 443, transport: "tcp" });
    expect(provider.output()).to.include("dialled the consumer's TCP allocation");
    expect(curl(["--proxy", "socks5h://127.0.0.1:1080", topology.internetUrl], 1).stdout).to.equal(topology.nat!.publicAddressOf(topology.provider));
    const paid = await relayPaid(1, env);
    expect(BigInt(paid.path.relayBytes) >= 20_000_000n, "the consumer's meter of the relay").to.equal(true);
    await mystJson(env, ["disconnect"], netns);
  });
});
