import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./local-chain";
import { replicaEnv } from "./nats-server";
import { until } from "./until";
import { depositIn, registerIdentityIn } from "./data-dir-setup";
export { onConsumerMachine } from "./topology";

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

/**
 * A user for `myst` to run as instead of root (docs/running-without-root.md): its ids and the only
 * capabilities it holds (setpriv names: "net_admin", "net_bind_service"), as the systemd unit
 * gives them (`AmbientCapabilities`, `CapabilityBoundingSet`). Made by `unprivilegedUser`.
 */
export interface UnprivilegedUser {
  uid: number;
  gid: number;
  capabilities: string[];
  /** A 0666 node of /dev/net/tun (this machine's is 0600 root; a distribution's udev makes it 0666, as here). */
  tun: string;
}

/**
 * A user with no account (uid/gid `id`) holding only `capabilities`, for `myst` started with
 * `{ netns, user }`; its tun node lives in `dir` (root makes it: mknod).
 */
export function unprivilegedUser(dir: string, capabilities: string[], id = 64_999): UnprivilegedUser {
  // One node per user, named for it: a daemon started before keeps the node it bind-mounted.
  const tun = path.join(dir, `tun-${id}`);
  fs.rmSync(tun, { force: true });
  execFileSync("mknod", ["-m", "666", tun, "c", "10", "200"]);
  return { uid: id, gid: id, capabilities, tun };
}

/** Gives `user` the data dir `dir` (made by root, as `registerIdentityIn` does), as systemd's StateDirectory would. */
export function giveTo(user: UnprivilegedUser, dir: string): void {
  execFileSync("chown", ["-R", `${user.uid}:${user.gid}`, dir]);
}

/**
 * `myst args…`, on the machine a namespace stands for when `netns` is given (`ip netns exec`, which
 * execs: the PID is myst's). With `user` (which needs `netns`: its mounts stay in the mount namespace
 * `ip netns exec` makes) it runs as that user with only its capabilities, ambient so openvpn,
 * wireguard-go, ip, iptables and dnsmasq get them too, the bounding set cut to them, in a mount
 * namespace where /dev/net/tun is `user.tun` and /run/wireguard (wireguard-go's socket directory,
 * systemd's RuntimeDirectory=wireguard in the unit) is a tmpfs of its own.
 */
function mystArgv(args: string[], netns?: string, user?: UnprivilegedUser): string[] {
  const node = [process.execPath, MYST_BIN, ...args];
  if (user) {
    if (!netns) throw new Error("mystArgv: an unprivileged user needs a netns (its mounts live in the mount namespace `ip netns exec` makes)");
    const caps = ["-all", ...user.capabilities.map((c) => `+${c}`)].join(",");
    const script = [
      "tun=$1 uid=$2 gid=$3 caps=$4; shift 4",
      'mount --bind "$tun" /dev/net/tun',
      "mkdir -p /run/wireguard",
      'mount -t tmpfs -o "mode=0755,uid=$uid,gid=$gid" myst-wireguard /run/wireguard',
      'exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps="$caps" --ambient-caps="$caps" --bounding-set="$caps" -- "$@"',
    ].join(" && ");
    return ["/usr/sbin/ip", "netns", "exec", netns, "/bin/sh", "-c", script, "myst-as-user", user.tun, String(user.uid), String(user.gid), caps, ...node];
  }
  return netns ? ["/usr/sbin/ip", "netns", "exec", netns, ...node] : node;
}

/** Runs `myst args…` as a user would, in its own process (on the machine `netns` stands for, when given). */
export function myst(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000, o: { netns?: string; user?: UnprivilegedUser } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [bin, ...argv] = mystArgv(args, o.netns, o.user);
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

/** `myst args… --json` (on the machine `netns` stands for, when given): its parsed output, or an error with its stderr. */
// biome-ignore lint/suspicious/noExplicitAny: each caller reads the JSON of its own command field by field
export async function mystJson(env: NodeJS.ProcessEnv, args: string[], netns?: string): Promise<any> {
  const r = await myst([...args, "--json"], env, 120_000, { netns });
  if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/**
 * A long-running `myst` command (discovery, service start, daemon), stopped by PID; on the machine
 * `netns` stands for, when given; as `user` with only its capabilities, when given.
 */
export function mystBackground(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  o: { netns?: string; user?: UnprivilegedUser } = {},
): { child: ChildProcess; output: () => string; stop: () => Promise<number | null> } {
  const [bin, ...argv] = mystArgv(args, o.netns, o.user);
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
 * consumer's vault funded (5 MYST, 1 MYST of escrow; not with `fundVault: false`), made ready in this
 * process as the CLI's commands would (data-dir-setup.ts), and a `myst discovery` both use. The
 * caller stops `discovery`.
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
  for (const env of [providerEnv, consumerEnv]) await registerIdentityIn(chain, env);
  if (options.fundVault !== false) await depositIn(consumerEnv, "5", "1");
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
