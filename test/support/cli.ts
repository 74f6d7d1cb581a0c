import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { freePort } from "../../scripts/lib/local-chain";
import { replicaEnv } from "../../scripts/lib/nats-server";
import { until } from "../../scripts/lib/until";
export { onConsumerMachine } from "../../scripts/lib/topology";

const ROOT = path.resolve(__dirname, "..", "..");
export const MYST_BIN = path.join(ROOT, "dist", "node", "cli", "main.js");

let built = false;

/**
 * Compiles the node (incrementally, once per test process) so tests drive the same `myst` binary
 * users run. Under a lock: the test workers of a parallel run would otherwise write dist/ at once.
 */
export function buildCli(): void {
  if (built) return;
  built = true;
  const tsc = require.resolve("typescript/bin/tsc", { paths: [ROOT] });
  execFileSync("flock", [path.join(os.tmpdir(), "myst-build-cli.lock"), process.execPath, tsc, "-p", "tsconfig.build.json"], {
    cwd: ROOT,
    stdio: "inherit",
  });
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `myst args…`, on the machine a namespace stands for when `netns` is given (`ip netns exec`, which execs: the PID is myst's). */
function mystArgv(args: string[], netns?: string): string[] {
  return netns ? ["/usr/sbin/ip", "netns", "exec", netns, process.execPath, MYST_BIN, ...args] : [process.execPath, MYST_BIN, ...args];
}

/** Runs `myst args…` as a user would, in its own process (on the machine `netns` stands for, when given). */
export function myst(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000, o: { netns?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [bin, ...argv] = mystArgv(args, o.netns);
    const child = spawn(bin, argv, {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A long-running `myst` command (discovery, service start, daemon), stopped by PID; on the machine `netns` stands for, when given. */
export function mystBackground(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  o: { netns?: string } = {},
): { child: ChildProcess; output: () => string; stop: () => Promise<number | null> } {
  const [bin, ...argv] = mystArgv(args, o.netns);
  const child = spawn(bin, argv, {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** The environment a spawned `myst` needs to use a test chain, NATS server and discovery port. */
export function cliEnv(
  chain: { rpcUrl: string; deploymentFile: string },
  natsUrl: string,
  discoveryPort: number,
  extra: NodeJS.ProcessEnv = {},
): NodeJS.ProcessEnv {
  return {
    MYST_RPC_URL: chain.rpcUrl,
    MYST_DEPLOYMENT: chain.deploymentFile,
    MYST_BROKER_URLS: natsUrl,
    MYST_DISCOVERY_URLS: `http://127.0.0.1:${discoveryPort}`,
    MYST_LIGHT_KDF: "1",
    MYST_PASSPHRASE: "pw",
    MYST_LOG_LEVEL: "warn",
    ...extra,
  };
}

/** Creates an identity in `env`'s data dir with `myst identities new`, funds it and registers it with `myst identities register`. */
export async function registerWithCli(chain: { fund(addresses: string[]): Promise<void> }, env: NodeJS.ProcessEnv): Promise<string> {
  const created = await myst(["identities", "new", "--json"], env);
  if (created.code !== 0) throw new Error(`myst identities new failed: ${created.stderr}`);
  const address: string = JSON.parse(created.stdout).address;
  await chain.fund([address]);
  const registered = await myst(["identities", "register", address], env);
  if (registered.code !== 0) throw new Error(`myst identities register failed: ${registered.stderr}`);
  return address;
}

/**
 * Starts `myst discovery` on the port of `env`'s MYST_DISCOVERY_URLS and waits until it listens. It
 * logs in as the discovery replica of the servers this process started (scripts/lib/nats-server.ts).
 */
export async function startCliDiscovery(env: NodeJS.ProcessEnv): Promise<ReturnType<typeof mystBackground>> {
  const discovery = mystBackground(["discovery", "--port", new URL(env.MYST_DISCOVERY_URLS!).port], { ...env, ...replicaEnv(), MYST_LOG_LEVEL: "info" });
  await until(() => discovery.output().includes("discovery listening") || discovery.child.exitCode !== null, "myst discovery to listen");
  if (discovery.child.exitCode !== null) throw new Error(`myst discovery did not start: ${discovery.output()}`);
  return discovery;
}

/** Funds the vault of `env`'s identity as a user does: `myst vault deposit` (through a running node, or an offline one). */
export async function depositWithCli(env: NodeJS.ProcessEnv, amount: string, escrow: string): Promise<void> {
  const r = await myst(["vault", "deposit", amount, "--escrow", escrow, "--json"], env);
  if (r.code !== 0) throw new Error(`myst vault deposit failed: ${r.stderr}`);
}

/**
 * A provider and a consumer as CLI users: one data dir each, a registered identity in each, the
 * consumer's vault funded with `myst vault deposit` (5 MYST, 1 MYST of escrow; not with
 * `fundVault: false`), and a `myst discovery` both use. The caller stops `discovery`.
 */
export async function cliProviderAndConsumer(
  chain: { rpcUrl: string; deploymentFile: string; fund(addresses: string[]): Promise<void> },
  natsUrl: string,
  dirs: [string, string],
  extra: NodeJS.ProcessEnv = {},
  options: { fundVault?: boolean } = {},
): Promise<{ base: NodeJS.ProcessEnv; providerEnv: NodeJS.ProcessEnv; consumerEnv: NodeJS.ProcessEnv; discovery: ReturnType<typeof mystBackground> }> {
  const base = cliEnv(chain, natsUrl, await freePort(), extra);
  const providerEnv = { ...base, MYST_DATA_DIR: dirs[0] };
  const consumerEnv = { ...base, MYST_DATA_DIR: dirs[1] };
  for (const env of [providerEnv, consumerEnv]) await registerWithCli(chain, env);
  if (options.fundVault !== false) await depositWithCli(consumerEnv, "5", "1");
  return { base, providerEnv, consumerEnv, discovery: await startCliDiscovery(base) };
}

/**
 * `myst service start <service>` in the topology's provider namespace, on its public address, in
 * DE, then `extra`. `ownDevice`: a WireGuard device named for the topology, since wireguard-go's
 * control socket is named for the device host-wide and another test file may run beside this one.
 */
export function serviceStartArgs(
  service: string,
  topology: { provider: string; providerAddress: string; tag?: string },
  extra: string[] = [],
  o: { ownDevice?: boolean } = {},
): string[] {
  const device = o.ownDevice && service === "wireguard" ? ["--device", `mwp${topology.tag}`] : [];
  return ["service", "start", service, "--netns", topology.provider, "--public-ip", topology.providerAddress, "--country", "DE", ...extra, ...device];
}
