import { expect } from "chai";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { IP } from "../../scripts/lib/netns-exec";
import { requireE2E } from "../../scripts/lib/prereqs";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { tempDir } from "../../scripts/lib/tmp";
import { onConsumerMachine, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { MYST_BIN, buildCli, cliProviderAndConsumer } from "../support/cli";
import { registerIdentityIn } from "../../scripts/lib/data-dir-setup";

/** An unprivileged user with no capabilities at all: every myst process and curl of this file run as it. */
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"];

/**
 * The proxy service (issue 32) end to end, nobody root: two providers' nodes each in their own
 * namespace behind their NAT gateway, the consumer's node in its namespace, every one of them (and
 * curl) as uid 65534 without capabilities. The consumer opens local SOCKS5/HTTP proxies with
 * `myst connect --service proxy --listen`, one per provider, and `myst run --proxy`; what the
 * internet host sees, what the providers refuse, what is metered and what is paid on chain.
 */
describe("e2e: the proxy service, as an unprivileged user on both sides (HTTP/2 CONNECT, SOCKS5 and HTTP locally, netns)", function () {
  this.timeout(180_000);
  let chain: LocalChain;
  let nats: NatsServer;
  let topology: Topology;
  let consumerNs: string;
  const tmps = [tempDir("myst-e2e-"), tempDir("myst-e2e-"), tempDir("myst-e2e-")];
  const background: { stop(): Promise<void>; output(): string; exited(): boolean }[] = [];
  let envs: NodeJS.ProcessEnv[];
  let providerIds: string[];
  let foreground: (typeof background)[number];

  /** `myst args` as nobody on the machine `netns` stands for. */
  const argv = (netns: string, args: string[]) => [IP, "netns", "exec", netns, ...NOBODY, process.execPath, MYST_BIN, ...args];
  const childEnv = (env: NodeJS.ProcessEnv) => ({ PATH: process.env.PATH, HOME: env.MYST_DATA_DIR, ...env });

  function mystRun(netns: string, env: NodeJS.ProcessEnv, args: string[]): { code: number | null; stdout: string; stderr: string } {
    const [bin, ...rest] = argv(netns, args);
    const r = spawnSync(bin, rest, { env: childEnv(env), encoding: "utf8", timeout: 90_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }
  function json(netns: string, env: NodeJS.ProcessEnv, args: string[]) {
    const r = mystRun(netns, env, [...args, "--json"]);
    if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }
  function mystBackground(netns: string, env: NodeJS.ProcessEnv, args: string[]) {
    const [bin, ...rest] = argv(netns, args);
    const child = spawn(bin, rest, { env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const b = {
      output: () => output,
      exited: () => child.exitCode !== null || child.signalCode !== null,
      stop: async () => {
        if (!b.exited()) child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      },
    };
    background.push(b);
    return b;
  }
  /** curl in the consumer's namespace as nobody: its exit code and output (never throws). */
  function curl(args: string[]): { code: number | null; stdout: string } {
    const r = spawnSync(IP, ["netns", "exec", consumerNs, ...NOBODY, "curl", "-sS", "--max-time", "15", ...args], { encoding: "utf8" });
    return { code: r.status, stdout: r.stdout.trim() };
  }
  const socks = (port: number, url: string, extra: string[] = []) => curl(["--proxy", `socks5h://127.0.0.1:${port}`, ...extra, url]);
  const connectVia = (port: number, url: string, extra: string[] = []) => curl(["--proxytunnel", "--proxy", `http://127.0.0.1:${port}`, ...extra, url]);

  before(async function () {
    requireE2E(this);
    buildCli();
    [chain, nats, topology] = await Promise.all([testChain(), startNatsServer(), topologyUp({ consumers: 1, providers: 2 })]);
    consumerNs = topology.consumers[0];
    const nodes = await cliProviderAndConsumer(chain, nats.url, [tmps[0].dir, tmps[1].dir]);
    background.push({ stop: async () => void (await nodes.discovery.stop()), output: nodes.discovery.output, exited: () => false });
    const secondEnv = { ...nodes.base, MYST_DATA_DIR: tmps[2].dir };
    await registerIdentityIn(chain, secondEnv);
    // Every node on its own machine (chain, broker, discovery over the routers), its files nobody's.
    const published = await onConsumerMachine(topology, nodes.base);
    // The chain's deployment file sits in root's private temp dir: each node reads its own copy.
    envs = [nodes.providerEnv, nodes.consumerEnv, secondEnv].map((e) => {
      const deployment = path.join(e.MYST_DATA_DIR!, "deployment.json");
      fs.copyFileSync(chain.deploymentFile, deployment);
      return { ...published, MYST_DATA_DIR: e.MYST_DATA_DIR, MYST_DEPLOYMENT: deployment };
    });
    for (const t of tmps) spawnSync("chown", ["-R", "65534:65534", t.dir]);
    // Names the provider's machine resolves into its own networks (its /etc/hosts, as `ip netns exec` mounts it).
    fs.writeFileSync(
      path.join("/etc/netns", topology.provider, "hosts"),
      "127.0.0.1 localhost\n::1 localhost ip6-localhost\n169.254.169.254 metadata.test\nfd00:ec2::254 metadata6.test\n",
    );
    const providers = [
      { netns: topology.providers[0], env: envs[0], address: topology.providerAddressOf(0) },
      { netns: topology.providers[1], env: envs[2], address: topology.providerAddressOf(1) },
    ];
    await Promise.all(
      providers.map(async (p) => {
        const daemon = mystBackground(p.netns, { ...p.env, MYST_LOG_LEVEL: "info" }, ["daemon", "--api-port", "0", "--invoice-every", "1"]);
        await until(() => daemon.output().includes("REST API:") || daemon.exited(), "a provider daemon to listen");
        expect(daemon.exited(), daemon.output()).to.equal(false);
        json(p.netns, p.env, ["service", "start", "proxy", "--public-ip", p.address, "--country", "DE", "--price-per-gib", "0.1"]);
      }),
    );
    providerIds = [envs[0], envs[2]].map((e, i) => json(providers[i].netns, e, ["identities", "list"])[0].address);
    await until(() => json(consumerNs, envs[1], ["proposals", "--service-type", "proxy"]).length === 2, "both proposals in discovery");
  });

  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await topology?.down();
    await Promise.all([chain?.stop(), nats?.stop()]);
    for (const t of tmps) t.cleanup();
  });

  it("opens a local SOCKS5 and HTTP proxy with `myst connect --service proxy --listen`: the internet host sees the provider, names resolve at the provider", function () {
    foreground = mystBackground(consumerNs, { ...envs[1], MYST_LOG_LEVEL: "info" }, [
      "connect",
      providerIds[0],
      "--service",
      "proxy",
      "--listen",
      "127.0.0.1:1080",
    ]);
    return until(() => foreground.output().includes("SOCKS5 and HTTP proxy on 127.0.0.1:1080") || foreground.exited(), "the proxy to listen", 60_000).then(
      () => {
        expect(foreground.exited(), foreground.output()).to.equal(false);
        const queries = topology.lanResolverQueries();
        expect(socks(1080, topology.internetUrl).stdout).to.equal(topology.providerUplinkAddress);
        // A name the provider resolves to both families: either of the provider's addresses is seen.
        const provider = [topology.providerUplinkAddress, topology.providerAddress6];
        expect(socks(1080, topology.whoamiNameUrl).stdout).to.be.oneOf(provider);
        expect(connectVia(1080, topology.whoamiNameUrl).stdout).to.be.oneOf(provider);
        expect(curl(["--proxy", "http://127.0.0.1:1080", topology.whoamiNameUrl]).stdout).to.be.oneOf(provider);
        expect(connectVia(1080, topology.internetUrl).stdout).to.equal(topology.providerUplinkAddress);
        expect(socks(1080, topology.internetUrl6).stdout).to.equal(topology.providerAddress6);
        // Not one query reached the consumer's own resolver: the provider resolved whoami.test.
        expect(topology.lanResolverQueries()).to.equal(queries);
        // Without the proxy the consumer is seen as itself: nothing else was routed.
        expect(curl([topology.internetUrl]).stdout).to.equal(topology.consumerAddress(0));
      },
    );
  });

  it("refuses the provider's LAN, loopback, link-local and metadata addresses, by address, by name and over IPv6, and SMTP", function () {
    const refusedBySocks = [
      topology.lanUrl,
      "http://lan.test:8080/", // the public resolver answers it with the LAN host: an SSRF by DNS
      "http://127.0.0.1:8080/",
      "http://localhost:22/",
      "http://169.254.169.254/latest/meta-data/",
      "http://metadata.test/latest/meta-data/",
      "http://192.168.88.1/",
      "http://[::1]:8080/",
      "http://[fd00:ec2::254]/",
      "http://metadata6.test/",
      "http://[::ffff:192.168.77.2]:8080/",
      `http://[${topology.providerAddress6}]:22/`,
      `http://${topology.internetAddress}:25/`,
      `http://${topology.internetAddress}:587/`,
    ];
    for (const url of refusedBySocks) expect(socks(1080, url).code, url).to.equal(97); // SOCKS5 reply 2: not allowed by ruleset
    for (const url of [topology.lanUrl, "http://lan.test:8080/", "http://metadata.test/", `http://${topology.internetAddress}:465/`])
      expect(connectVia(1080, url, ["-o", "/dev/null", "-w", "%{http_connect}"]).stdout, url).to.equal("403");
    expect(curl(["-o", "/dev/null", "-w", "%{http_code}", "--proxy", "http://127.0.0.1:1080", "http://169.254.169.254/"]).stdout).to.equal("403");
  });

  it("refuses a stream without the session's credential", function () {
    const script = `const h2=require("http2").connect("https://${topology.providerAddress}:8443",{rejectUnauthorized:false});const ask=(c)=>new Promise(r=>{const q=h2.request({":method":"CONNECT",":authority":"${topology.internetAddress}:8080",...(c?{"proxy-authorization":c}:{})});q.on("response",h=>r(h[":status"]));q.on("error",()=>r(-1))});(async()=>{const a=await ask();const b=await ask("Bearer ${"x".repeat(43)}");process.stdout.write(a+" "+b);h2.close()})()`;
    const r = spawnSync(IP, ["netns", "exec", consumerNs, ...NOBODY, process.execPath, "-e", script], { encoding: "utf8", timeout: 20_000 });
    expect(r.stdout).to.equal("407 407");
  });

  it("runs several connections at once, to several providers, each on its own port; `myst run --proxy` sets the proxy for one command", function () {
    const second = json(consumerNs, envs[1], ["connect", providerIds[1], "--service", "proxy", "--listen", "127.0.0.1:1081"]);
    expect(second).to.include({ state: "connected", listen: "127.0.0.1:1081", provider: providerIds[1] });
    expect(socks(1081, topology.internetUrl).stdout).to.equal(topology.providerAddressOf(1));
    expect(socks(1080, topology.internetUrl).stdout).to.equal(topology.providerUplinkAddress);
    const status = json(consumerNs, envs[1], ["status"]);
    expect(status).to.include({ state: "connected", listen: "127.0.0.1:1080", provider: providerIds[0] });
    expect(status.beside).to.have.length(1);
    expect(status.beside[0]).to.include({ listen: "127.0.0.1:1081", provider: providerIds[1], sessionId: second.sessionId });
    const run = mystRun(consumerNs, envs[1], ["run", "--proxy", "--provider", providerIds[1], "--", "curl", "-sS", topology.internetUrl]);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout.trim()).to.equal(topology.providerAddressOf(1));
    // Its connection ended with the command; the other two stay.
    expect(socks(1081, topology.internetUrl).stdout).to.equal(topology.providerAddressOf(1));
  });

  it("meters what curl moved on both sides, and the provider is paid on chain", async function () {
    const before = json(consumerNs, envs[1], ["status"]);
    const download = socks(1080, `${topology.internetUrl}?bytes=4000000`, ["-o", "/dev/null", "-w", "%{size_download} %{size_header} %{size_request}"]);
    const [body, header, request] = download.stdout.split(" ").map(Number);
    expect(body).to.equal(4_000_000);
    const after = json(consumerNs, envs[1], ["status"]);
    const received = after.bytesIn - before.bytesIn;
    console.log(`      (curl received ${body + header} bytes, the consumer metered ${received})`);
    expect(Math.abs(received - (body + header))).to.be.at.most((body + header) * 0.01);
    expect(after.bytesOut - before.bytesOut).to.be.at.least(request);
    const paid = await until(() => {
      const s = json(consumerNs, envs[1], ["status"]);
      return BigInt(s.promisedWei) > 0n && s.bytesIn >= after.bytesIn && s;
    }, "the download invoiced and paid for");
    const ended = json(consumerNs, envs[1], ["disconnect"]);
    expect(ended).to.include({ state: "disconnected", sessionId: paid.sessionId });
    await until(() => foreground.exited(), "the foreground connect to end");
    // The provider's meter of the session, in its history, agrees with the consumer's.
    const sessions = await until((): { bytes: number } | false => {
      const answer = json(topology.provider, envs[0], ["sessions"]);
      const list: { id: string; bytes: number; endedAt: string | null }[] = Array.isArray(answer) ? answer : answer.sessions;
      const s = list.find((x) => x.id === paid.sessionId);
      return !!s?.endedAt && s;
    }, "the provider's history of the session");
    const consumerTotal = ended.bytesIn + ended.bytesOut;
    console.log(`      (provider metered ${sessions.bytes} bytes, consumer ${consumerTotal})`);
    expect(Math.abs(sessions.bytes - consumerTotal)).to.be.at.most(consumerTotal * 0.01);
    const settled = json(topology.provider, envs[0], ["earnings", "settle"]);
    expect(BigInt(settled.settledWei)).to.be.greaterThan(0n);
    expect(settled.settlements.length).to.be.at.least(1);
  });
});
