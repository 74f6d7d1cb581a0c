import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { startLocalChain, freePort, stopChild, type LocalChain } from "./lib/local-chain";
import { startNatsServer, type NatsServer } from "./lib/nats-server";
import { downloadFrom, fetchFrom, topologyUp, type Topology } from "./lib/topology";
import { missingE2EPrerequisites } from "../test/support/prereqs";
import { until } from "./lib/until";

/**
 * The local demo (`npm run demo`): a whole marketplace on one machine — chain, broker, discovery,
 * a provider selling OpenVPN (or WireGuard: `npm run demo -- --service wireguard`) from its own
 * network namespace, a consumer that finds it, connects, and browses through it — printing each
 * step, and cleaning everything up at the end, on failure and on Ctrl-C.
 */
const ROOT = path.resolve(__dirname, "..");
const MYST = path.join(ROOT, "dist", "node", "cli", "main.js");
const started: { name: string; stop: () => Promise<unknown> }[] = [];
let step = 0;

/** The tunnel type the demo sells and buys: `--service openvpn` (the default) or `--service wireguard`. */
function serviceArgument(argv: string[]): "openvpn" | "wireguard" {
  const i = argv.indexOf("--service");
  const value = i >= 0 ? argv[i + 1] : (argv.find((a) => a.startsWith("--service="))?.slice("--service=".length) ?? "openvpn");
  if (value !== "openvpn" && value !== "wireguard") {
    console.error(`--service must be openvpn or wireguard, not "${value}"`);
    process.exit(2);
  }
  return value;
}
const SERVICE = serviceArgument(process.argv.slice(2));
const LABEL = SERVICE === "openvpn" ? "OpenVPN" : "WireGuard";

const say = (text: string) => console.log(`\n[${++step}] ${text}`);
const ok = (text: string) => console.log(`    ✓ ${text}`);

function myst(env: NodeJS.ProcessEnv, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MYST, ...args], { env: { ...process.env, ...env }, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function mystOk(env: NodeJS.ProcessEnv, args: string[]): string {
  const r = myst(env, args);
  if (r.code !== 0) throw new Error(`myst ${args.join(" ")} failed: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

function background(name: string, env: NodeJS.ProcessEnv, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [MYST, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  started.push({ name, stop: () => stopChild(child, 10_000) });
  return { child, output: () => output };
}

const formatMyst = (wei: string) => (Number(BigInt(wei)) / 1e18).toFixed(9);

async function cleanup() {
  for (const s of started.reverse().splice(0)) await s.stop().catch(() => undefined);
}

async function main() {
  console.log("myst local demo: a VPN marketplace on this machine");
  const missing = missingE2EPrerequisites();
  if (missing.length) {
    console.error(`\nThe demo needs: ${missing.join(", ")}.\nRun it as root after scripts/install.sh (it makes network namespaces and ${LABEL} tunnels).`);
    process.exit(2);
  }
  if (!fs.existsSync(MYST)) throw new Error("dist/ is missing: run npm ci (or npm run build) first");

  say("Starting a local chain and deploying the contracts, a NATS broker, and the network");
  const chain: LocalChain = await startLocalChain();
  started.push({ name: "chain", stop: () => chain.stop() });
  ok(`chain ${chain.rpcUrl} (chain id ${chain.deployment.chainId}); IdentityRegistry ${chain.deployment.contracts.IdentityRegistry}`);
  const nats: NatsServer = await startNatsServer();
  started.push({ name: "nats", stop: () => nats.stop() });
  ok(`nats-server ${nats.url} (pid ${nats.pid})`);
  const topology: Topology = await topologyUp({ tag: "demo", consumers: 1 });
  started.push({ name: "topology", stop: () => topology.down() });
  ok(`namespaces ${[...topology.consumers, topology.router, topology.gateway, topology.provider, topology.internet, topology.lan].join(", ")}`);

  const base = fs.mkdtempSync(path.join(os.tmpdir(), "myst-demo-"));
  started.push({ name: "files", stop: async () => fs.rmSync(base, { recursive: true, force: true }) });
  const discoveryPort = await freePort();
  const common = {
    MYST_RPC_URL: chain.rpcUrl,
    MYST_DEPLOYMENT: chain.deploymentFile,
    MYST_BROKER_URLS: nats.url,
    MYST_DISCOVERY_URL: `http://127.0.0.1:${discoveryPort}`,
    MYST_PASSPHRASE: "demo passphrase",
    MYST_LIGHT_KDF: "1",
    MYST_LOG_LEVEL: "warn",
  };
  const providerEnv = { ...common, MYST_DATA_DIR: path.join(base, "provider") };
  const consumerEnv = { ...common, MYST_DATA_DIR: path.join(base, "consumer") };

  say("Starting the discovery service");
  const discovery = background("discovery", common, ["discovery", "--port", String(discoveryPort)]);
  await until(() => discovery.output().includes("listening"), "discovery");
  ok(`discovery ${common.MYST_DISCOVERY_URL}`);

  say("Creating, funding and registering a provider and a consumer identity");
  const ids: Record<string, string> = {};
  for (const [who, env] of [
    ["provider", providerEnv],
    ["consumer", consumerEnv],
  ] as const) {
    ids[who] = JSON.parse(mystOk(env, ["identities", "new", "--json"])).address;
    await chain.fund([ids[who]]);
    const status = JSON.parse(mystOk(env, ["identities", "register", ids[who], "--json"]));
    if (status.state !== "registered") throw new Error(`${who} registration: ${JSON.stringify(status)}`);
    ok(`${who} ${ids[who]} registered (tx ${status.txHash})`);
  }

  say(`Starting the provider's ${LABEL} service in its namespace and announcing it`);
  background("provider", providerEnv, [
    "service",
    "start",
    SERVICE,
    "--netns",
    topology.provider,
    "--public-ip",
    topology.providerAddress,
    "--country",
    "DE",
    "--city",
    "Berlin",
    "--ip-type",
    "residential",
    "--price-per-hour",
    "0.05",
    "--price-per-gib",
    "0.1",
    "--bandwidth",
    "500",
    "--invoice-every",
    "2",
    "--min-channel-balance",
    "0.1",
  ]);
  const proposals = await until(() => {
    const list = JSON.parse(mystOk(consumerEnv, ["proposals", "--json", "--service-type", SERVICE, "--country", "DE", "--max-price-per-gib", "0.2"]));
    return list.length > 0 && list;
  }, "the provider's proposal in discovery");
  ok(
    `the consumer finds it with filters (${SERVICE}, DE, ≤ 0.2 MYST/GiB): ${proposals[0].provider}, ${proposals[0].location.city}, ${proposals[0].location.ipType}`,
  );

  say("Before connecting: what the internet host sees of the consumer");
  const before = fetchFrom(topology, topology.consumers[0], topology.internetUrl, 1500);
  ok(
    `visible IP ${before} — the consumer's own address (its ISP's router is ${topology.router}; the provider sits behind its own NAT gateway ${topology.gateway})`,
  );
  if (before !== topology.consumerAddress(0)) throw new Error(`expected ${topology.consumerAddress(0)}, saw ${before}`);

  say("Connecting through the provider (depositing 5 MYST into the payment channel first)");
  const connect = background("consumer", consumerEnv, ["connect", "--service", SERVICE, "--country", "DE", "--topup", "5", "--netns", topology.consumers[0]]);
  await until(() => connect.output().includes("connected: session") || connect.child.exitCode !== null, "the connection", 60_000);
  if (connect.child.exitCode !== null) throw new Error(`myst connect failed: ${connect.output().trim()}`);
  const status = JSON.parse(mystOk(consumerEnv, ["status", "--json"]));
  if (status.deposit)
    ok(`deposited ${Number(status.deposit.amountWei) / 1e18} MYST into the channel (tx ${status.deposit.txHash}, gas ${status.deposit.gasUsed})`);
  ok(`session ${status.sessionId} with ${status.provider}`);
  ok(
    `phases (ms): discovery ${status.phasesMs.discovery}, negotiation ${status.phasesMs.negotiation}, ${SERVICE} up ${status.phasesMs.tunnel}, confirm ${status.phasesMs.confirm}`,
  );

  say("After connecting: what the internet host sees");
  const after = fetchFrom(topology, topology.consumers[0], topology.internetUrl);
  ok(`visible IP ${after} — the provider's address (${topology.providerUplinkAddress}), not the consumer's (${topology.consumerAddress(0)})`);
  if (after !== topology.providerUplinkAddress) throw new Error(`expected ${topology.providerUplinkAddress}, saw ${after}`);
  const lan = fetchFrom(topology, topology.consumers[0], topology.lanUrl, 1500);
  ok(`the provider's private LAN (${topology.lanUrl}) is ${lan === null ? "blocked" : `REACHABLE (${lan})`}`);

  say("Moving 8 MiB through the tunnel");
  const t0 = Date.now();
  const received = downloadFrom(topology, topology.consumers[0], `${topology.internetUrl}?bytes=${8 * 1024 * 1024}`);
  const seconds = (Date.now() - t0) / 1000;
  if (received !== 8 * 1024 * 1024) throw new Error(`downloaded ${received} bytes, expected ${8 * 1024 * 1024}`);
  ok(`${received} bytes downloaded from the internet host in ${seconds.toFixed(2)} s`);
  await new Promise((r) => setTimeout(r, 1500)); // the tunnel's meter is read once a second
  const during = JSON.parse(mystOk(consumerEnv, ["status", "--json"]));
  ok(`consumer's meter: ${during.bytesIn} bytes in, ${during.bytesOut} bytes out, ${during.durationSeconds} s`);

  say("Paying: the provider invoices every 2 s, the consumer checks each invoice and answers with a promise");
  const paid = await until(
    () => {
      const s = JSON.parse(mystOk(consumerEnv, ["status", "--json"]));
      return BigInt(s.promisedWei) > 0n && s.invoices >= 2 && s;
    },
    "promises for the invoices",
    30_000,
  );
  ok(`${paid.invoices} invoice(s) answered; ${formatMyst(paid.promisedWei)} MYST promised (price 0.05 MYST/h + 0.1 MYST/GiB)`);

  say("Disconnecting");
  const done = JSON.parse(mystOk(consumerEnv, ["disconnect", "--json"]));
  ok(`session ${done.sessionId} ended`);
  await until(() => connect.child.exitCode !== null, "myst connect to exit");
  const gone = fetchFrom(topology, topology.consumers[0], topology.internetUrl, 1500);
  ok(gone === topology.consumerAddress(0) ? `visible IP ${gone}: the consumer's own route is back` : `STILL ROUTED (${gone})`);
  if (gone !== topology.consumerAddress(0)) throw new Error("the consumer's own route did not come back after the disconnect");

  say("Settlement: the provider settles the last promise on chain when the session ends");
  const earnings = await until(
    () => {
      const e = JSON.parse(mystOk(providerEnv, ["earnings", "--json"]));
      return BigInt(e.settledWei) > 0n && e;
    },
    "the settlement",
    60_000,
  );
  const settlement = earnings.settlements[earnings.settlements.length - 1];
  ok(`settled ${formatMyst(earnings.settledWei)} MYST of ${formatMyst(earnings.totalPromisedWei)} promised (tx ${settlement.txHash})`);
  const channel = JSON.parse(mystOk(consumerEnv, ["channels", "show", ids.provider, "--json"]));
  ok(`the consumer's channel now holds ${formatMyst(channel.balanceWei)} MYST; spent ${formatMyst(channel.spentWei)} MYST`);

  say("Cleaning up");
  await cleanup();
  ok("processes stopped, namespaces removed");
  console.log("\ndemo complete");
}

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(`\n${signal}: cleaning up…`);
    void cleanup().then(() => process.exit(130));
  });
}

main().catch(async (err) => {
  console.error(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
  await cleanup();
  process.exit(1);
});
