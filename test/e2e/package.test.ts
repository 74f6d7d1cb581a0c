import { expect } from "chai";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { testChain, type LocalChain } from "../../scripts/lib/local-chain";
import { IP } from "../../scripts/lib/netns-exec";
import { requireE2E, requirePrerequisites } from "../../scripts/lib/prereqs";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";
import { tempDir } from "../../scripts/lib/tmp";
import { onConsumerMachine, topologyUp, type Topology } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { buildCli, cliProviderAndConsumer } from "../support/cli";

const ROOT = path.resolve(__dirname, "..", "..");
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));

/**
 * The npm package as a user gets it: `npm pack`, then `npm install -g` of the tarball into a clean
 * prefix (dependencies from the npm registry, the local cache first; no dev dependency), then the
 * installed `myst`. What the test does not do itself: the build `npm pack` runs first (package.json
 * `prepare`: hardhat compile, tsc, the dashboard, scripts/prepack.ts) is run here as its parts (tsc
 * under the build lock other test files share, scripts/prepack.ts) and the pack with
 * --ignore-scripts, so that no test file rebuilds dist/ui under a dashboard test running beside it.
 * And better-sqlite3's native module, which npm compiles from source when no prebuilt can be
 * downloaded (here: 1.5–3 minutes), comes from a local prebuild made of the dev tree's build of
 * the same version (prebuild-install's `local-prebuilds`, as a mirror would serve it).
 */
describe("the npm package: npm pack, npm install -g, a working myst", function () {
  this.timeout(240_000);
  let tmp: ReturnType<typeof tempDir>;
  let prefix: string;
  let installed: string;
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync(path.join(prefix, "bin", "myst"), args, {
      encoding: "utf8",
      timeout: 60_000,
      // A clean environment: no HOME with a .myst, no dev tree on the module path.
      env: { PATH: `${path.join(prefix, "bin")}:/usr/bin:/bin`, HOME: tmp.dir, ...env },
      cwd: tmp.dir,
    });

  before(async function () {
    requirePrerequisites(this, "package", fs.existsSync(path.join(ROOT, "dist", "ui", "index.html")) ? [] : ["dist/ui (npm run build:ui)"]);
    tmp = tempDir("myst-package-");
    prefix = path.join(tmp.dir, "prefix");
    buildCli();
    execFileSync(process.execPath, [require.resolve("ts-node/dist/bin.js"), "--transpile-only", path.join(ROOT, "scripts", "prepack.ts")], { cwd: ROOT });
    const packed = JSON.parse(
      execFileSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", tmp.dir], {
        cwd: ROOT,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      }),
    )[0];
    const tarball = path.join(tmp.dir, packed.filename);

    // better-sqlite3's prebuild, named as prebuild-install looks for it (node ABI, platform, arch).
    const sqlite = JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules", "better-sqlite3", "package.json"), "utf8")).version;
    const prebuilds = path.join(tmp.dir, "prebuilds");
    fs.mkdirSync(prebuilds);
    execFileSync("tar", [
      "czf",
      path.join(prebuilds, `better-sqlite3-v${sqlite}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`),
      "-C",
      path.join(ROOT, "node_modules", "better-sqlite3"),
      "build/Release/better_sqlite3.node",
    ]);
    const install = spawnSync("npm", ["install", "-g", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", "--loglevel", "error", tarball], {
      encoding: "utf8",
      cwd: tmp.dir,
      env: { ...process.env, npm_config_better_sqlite3_local_prebuilds: prebuilds },
    });
    if (install.status !== 0) throw new Error(`npm install -g failed (${install.status}): ${install.stderr}`);
    installed = path.join(prefix, "lib", "node_modules", pkg.name);
  });

  after(() => tmp?.cleanup());

  it("holds the built node, the dashboard, the contracts' ABIs and the systemd units, and no sources or tests", function () {
    const files = (dir: string): string[] =>
      fs
        .readdirSync(dir, { withFileTypes: true })
        .flatMap((e) => (e.name === "node_modules" ? [] : e.isDirectory() ? files(path.join(dir, e.name)) : [path.join(dir, e.name)]));
    const all = files(installed).map((f) => path.relative(installed, f));
    expect(all).to.include.members([
      "bin/myst",
      "dist/node/cli/main.js",
      "dist/node/discovery/signature-worker.js",
      "dist/ui/index.html",
      "dist/abi/ConsumerVault.json",
      "dist/abi/IdentityRegistry.json",
      "dist/abi/MystToken.json",
      "packaging/systemd/myst-provider.service",
      "docs/running-without-root.md",
    ]);
    expect(JSON.parse(fs.readFileSync(path.join(installed, "dist", "abi", "ConsumerVault.json"), "utf8")).abi).to.be.an("array").that.is.not.empty;
    expect(all.filter((f) => /\.ts$|^test\/|^contracts\/|^scripts\//.test(f))).to.deep.equal([]);
  });

  it("installs no dev dependency: no hardhat, ts-node, typescript or playwright next to it", function () {
    for (const dev of ["hardhat", "ts-node", "typescript", "playwright-core", "vite", "solc"])
      expect(fs.existsSync(path.join(installed, "node_modules", dev)), dev).to.equal(false);
  });

  it("runs `myst --help` and `myst --version` from the prefix's bin", function () {
    const help = run(["--help"]);
    expect(help.status, help.stderr).to.equal(0);
    expect(help.stdout)
      .to.match(/Usage: myst/)
      .and.match(/daemon/)
      .and.match(/identities/);
    expect(run(["--version"]).stdout.trim()).to.equal(pkg.version);
  });

  it("makes an identity with `myst identities new` in a fresh data dir (keystore, SQLite: the native module loads)", function () {
    const dataDir = path.join(tmp.dir, "data");
    const r = run(["identities", "new", "--json"], { MYST_DATA_DIR: dataDir, MYST_PASSPHRASE: "pw", MYST_LIGHT_KDF: "1", MYST_LOG_LEVEL: "warn" });
    expect(r.status, r.stderr).to.equal(0);
    const { address, keystoreFile } = JSON.parse(r.stdout);
    expect(address).to.match(/^0x[0-9a-fA-F]{40}$/);
    expect(fs.statSync(keystoreFile).mode & 0o777).to.equal(0o600);
    const list = run(["identities", "list", "--json"], { MYST_DATA_DIR: dataDir, MYST_LOG_LEVEL: "warn" });
    expect(list.status, list.stderr).to.equal(0);
    expect(list.stdout).to.include(address);
    // The session history is SQLite (better-sqlite3's native module, from the install).
    const sessions = run(["sessions", "--json"], { MYST_DATA_DIR: dataDir, MYST_LOG_LEVEL: "warn" });
    expect(sessions.status, sessions.stderr).to.equal(0);
    expect(JSON.parse(sessions.stdout)).to.deep.equal([]);
    expect(fs.existsSync(path.join(dataDir, "myst.db"))).to.equal(true);
  });

  describe("a proxy session between two installed myst, each run as nobody on its own machine (real chain, broker, discovery, netns)", function () {
    let chain: LocalChain;
    let nats: NatsServer;
    let topology: Topology;
    let envs: NodeJS.ProcessEnv[];
    const dirs = [tempDir("myst-package-p-"), tempDir("myst-package-c-")];
    const background: { stop(): Promise<void> }[] = [];
    const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"];
    /** The installed `myst args` as nobody in `netns`, with a clean environment. */
    const spawnInstalled = (netns: string, env: NodeJS.ProcessEnv, args: string[]) =>
      spawn(IP, ["netns", "exec", netns, ...NOBODY, path.join(prefix, "bin", "myst"), ...args], {
        env: { PATH: `${path.join(prefix, "bin")}:/usr/bin:/bin`, HOME: env.MYST_DATA_DIR, ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
    function inBackground(netns: string, env: NodeJS.ProcessEnv, args: string[]): () => string {
      const child = spawnInstalled(netns, { ...env, MYST_LOG_LEVEL: "info" }, args);
      let output = "";
      child.stdout!.on("data", (d) => (output += d));
      child.stderr!.on("data", (d) => (output += d));
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      background.push({
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
          await exited;
          clearTimeout(timer);
        },
      });
      return () => output + (child.exitCode !== null ? `\n(exited ${child.exitCode})` : "");
    }
    function json(netns: string, env: NodeJS.ProcessEnv, args: string[]) {
      const r = spawnSync(IP, ["netns", "exec", netns, ...NOBODY, path.join(prefix, "bin", "myst"), ...args, "--json"], {
        env: { PATH: `${path.join(prefix, "bin")}:/usr/bin:/bin`, HOME: env.MYST_DATA_DIR, ...env },
        encoding: "utf8",
        timeout: 60_000,
      });
      if (r.status !== 0) throw new Error(`installed myst ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    }

    before(async function () {
      requireE2E(this);
      [chain, nats, topology] = await Promise.all([testChain(), startNatsServer(), topologyUp({ consumers: 1 })]);
      // Identities, registration and the vault deposit with the dev tree's CLI (set-up, not under test); discovery too.
      const nodes = await cliProviderAndConsumer(chain, nats.url, [dirs[0].dir, dirs[1].dir]);
      background.push({ stop: async () => void (await nodes.discovery.stop()) });
      const published = await onConsumerMachine(topology, nodes.base);
      envs = [nodes.providerEnv, nodes.consumerEnv].map((e) => {
        const deployment = path.join(e.MYST_DATA_DIR!, "deployment.json");
        fs.copyFileSync(chain.deploymentFile, deployment);
        return { ...published, MYST_DATA_DIR: e.MYST_DATA_DIR, MYST_DEPLOYMENT: deployment };
      });
      for (const d of dirs) spawnSync("chown", ["-R", "65534:65534", d.dir]);
      // nobody runs the installed tree: the prefix's parents (mkdtemp's 0700) open to it, read-only.
      fs.chmodSync(tmp.dir, 0o755);
    });

    after(async function () {
      for (const b of background.reverse()) await b.stop();
      await topology?.down();
      await Promise.all([chain?.stop(), nats?.stop()]);
      for (const d of dirs) d.cleanup();
    });

    it("sells the proxy from the installed `myst daemon` and buys it with the installed `myst connect --service proxy --listen`: curl through it is seen as the provider", async function () {
      const daemon = inBackground(topology.provider, envs[0], ["daemon", "--api-port", "0"]);
      await until(() => daemon().includes("REST API:") || daemon().includes("(exited"), "the installed daemon to listen", 60_000);
      expect(daemon()).to.not.include("(exited");
      json(topology.provider, envs[0], ["service", "start", "proxy", "--public-ip", topology.providerAddress, "--country", "DE", "--price-per-gib", "0.1"]);
      const providerId = json(topology.provider, envs[0], ["identities", "list"])[0].address;
      const consumerNs = topology.consumers[0];
      await until(() => json(consumerNs, envs[1], ["proposals", "--service-type", "proxy"]).length === 1, "the proxy proposal in discovery", 60_000);
      const connect = inBackground(consumerNs, envs[1], ["connect", providerId, "--service", "proxy", "--listen", "127.0.0.1:1080"]);
      await until(
        () => connect().includes("SOCKS5 and HTTP proxy on 127.0.0.1:1080") || connect().includes("(exited"),
        "the installed consumer's proxy to listen",
        60_000,
      );
      expect(connect()).to.not.include("(exited");
      const curl = spawnSync(
        IP,
        ["netns", "exec", consumerNs, ...NOBODY, "curl", "-sS", "--max-time", "15", "--proxy", "socks5h://127.0.0.1:1080", topology.internetUrl],
        {
          encoding: "utf8",
        },
      );
      expect(curl.stdout.trim(), curl.stderr).to.equal(topology.providerUplinkAddress);
      // Without the proxy the consumer is itself.
      expect(
        spawnSync(IP, ["netns", "exec", consumerNs, "curl", "-sS", "--max-time", "15", topology.internetUrl], { encoding: "utf8" }).stdout.trim(),
      ).to.equal(topology.consumerAddress(0));
    });
  });
});
