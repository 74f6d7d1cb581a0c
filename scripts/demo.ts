import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startLocalChain, freePort, type LocalChain } from "./lib/local-chain";
import { MYST, background, failureOutput, mystOk, started, stillRunning } from "./lib/demo-processes";
import { replicaEnv, startNatsServer, type NatsServer } from "./lib/nats-server";
import { downloadFrom, fetchFrom, onConsumerMachine, topologyUp, type Topology } from "./lib/topology";
import { missingE2EPrerequisites } from "./lib/prereqs";
import { until } from "./lib/until";
import { JsonRpcProvider, Wallet, formatUnits, parseEther } from "ethers";
import { MystToken__factory } from "../typechain-types";
import { rpcRequest } from "../node/chain/rpc-request";

/**
 * The local demo (`npm run demo`): a whole marketplace on one machine — chain, broker, discovery,
 * two providers selling WireGuard (or OpenVPN: `npm run demo -- --service openvpn`) from behind home
 * routers that forward no port — with WireGuard one router that keeps one port per app
 * (endpoint-independent: reached by hole punching) and one with UPnP (reached on a mapped port);
 * OpenVPN cannot be punched, so with it both routers speak UPnP — a consumer that makes one
 * deposit into its vault and is served by both in turn (the second with no transaction at all),
 * both providers paid on chain (the second through a relayer, holding no ETH) — printing each
 * step, and cleaning everything up at the end, on failure and on Ctrl-C. With WireGuard, a second
 * consumer behind a symmetric router then reaches a third provider behind another one, which no
 * punch can join: through a relay node selling `relay` (coturn), the path and the relay's earnings
 * shown (docs/relay.md). OpenVPN is not relayed, so its demo has no such part.
 */

/** The tunnel type the demo sells and buys: `--service wireguard` (the default) or `--service openvpn`. */
function serviceArgument(argv: string[]): "openvpn" | "wireguard" {
  const i = argv.indexOf("--service");
  const value = i >= 0 ? argv[i + 1] : (argv.find((a) => a.startsWith("--service="))?.slice("--service=".length) ?? "wireguard");
  if (value !== "openvpn" && value !== "wireguard") {
    console.error(`--service must be openvpn or wireguard, not "${value}"`);
    process.exit(2);
  }
  return value;
}
const SERVICE = serviceArgument(process.argv.slice(2));
const LABEL = SERVICE === "openvpn" ? "OpenVPN" : "WireGuard";

let step = 0;

const say = (text: string) => console.log(`\n[${++step}] ${text}`);
const ok = (text: string) => console.log(`    ✓ ${text}`);

/** A proposal as `myst proposals --json` lists it (the fields the demo shows). */
interface Listed {
  provider: string;
  location: { city: string; ipType: string };
  reach?: string;
  contacts: { type: string; candidates?: { kind: string; address: string; port: number }[] }[];
}

/** How the consumer's tunnel reached a provider, in words (`path.tunnel` of `myst connect --json`). */
const PATH_WORDS: Record<string, string> = {
  punched: "by hole punching through both routers",
  mapped: "on the port its router maps for it (UPnP)",
  public: "at its own public address",
  local: "over the shared LAN",
  relayed: "through a relay",
};

/** A stored or live path in words, as `myst sessions` says it: "relayed via 0x… over UDP/443". */
const pathWords = (p?: { tunnel: string; relay?: { provider?: string; address: string; port?: number; transport?: string } } | null) =>
  !p
    ? "(no path)"
    : p.tunnel !== "relayed"
      ? p.tunnel
      : `relayed via ${p.relay?.provider ?? p.relay?.address} over ${p.relay?.transport?.toUpperCase()}${p.relay?.port ? `/${p.relay.port}` : ""}`;

/** The relayed part (WireGuard only): a consumer and a provider behind symmetric routers, and a relay node. */
const RELAYED = SERVICE === "wireguard";

const formatMyst = (wei: string | bigint) => (Number(BigInt(wei)) / 1e18).toFixed(9);

const tokenBalance = (rpc: JsonRpcProvider, chain: LocalChain, address: string) =>
  MystToken__factory.connect(chain.deployment.contracts.MystToken, rpc).balanceOf(address);

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
  // No port forwarding anywhere: provider A behind a home router that keeps one public port per app
  // (nftables masquerade; with OpenVPN, which cannot punch, a UPnP router), provider B behind a UPnP router.
  const kindA = SERVICE === "openvpn" ? "upnp" : "eim";
  // With WireGuard also provider C and consumer 2, each behind a symmetric router (a new port per destination), and a relay host.
  const topology: Topology = await topologyUp(
    RELAYED
      ? {
          tag: "demo",
          consumers: 2,
          providers: 3,
          relays: 1,
          nat: { provider: kindA, secondProvider: "upnp", thirdProvider: "symmetric", consumer: ["public", "symmetric"] },
        }
      : { tag: "demo", consumers: 1, providers: 2, nat: { provider: kindA, secondProvider: "upnp" } },
  );
  started.push({ name: "topology", stop: () => topology.down() });
  ok(`namespaces ${[...topology.consumers, topology.router, topology.gateway, ...topology.providers, topology.internet, topology.lan].join(", ")}`);

  const base = fs.mkdtempSync(path.join(os.tmpdir(), "myst-demo-"));
  started.push({ name: "files", stop: async () => fs.rmSync(base, { recursive: true, force: true }) });
  const discoveryPort = await freePort();
  const common = {
    MYST_RPC_URL: chain.rpcUrl,
    MYST_DEPLOYMENT: chain.deploymentFile,
    MYST_BROKER_URLS: nats.url,
    MYST_DISCOVERY_URLS: `http://127.0.0.1:${discoveryPort}`,
    MYST_PASSPHRASE: "demo passphrase",
    MYST_LIGHT_KDF: "1",
    MYST_LOG_LEVEL: "warn",
  };
  const providerEnv = { ...common, MYST_DATA_DIR: path.join(base, "provider") };
  const provider2Env = { ...common, MYST_DATA_DIR: path.join(base, "provider2") };
  const provider3Env = { ...common, MYST_DATA_DIR: path.join(base, "provider3") };
  const relayEnv = { ...common, MYST_DATA_DIR: path.join(base, "relay") };
  // Every node measures its router with the STUN server on the internet host (coturn, two addresses).
  const stun = { MYST_STUN_SERVERS: topology.nat!.stunServers.join(",") };
  // The consumer is a person's machine: its node runs in the consumer's namespace and reaches the
  // chain, the broker and discovery over the routers, at the network's services host.
  const consumerNs = topology.consumers[0];
  // Chain, broker and discovery as every node's machine reaches them: over the routers (published once).
  const machine: NodeJS.ProcessEnv = { ...(await onConsumerMachine(topology, common)), ...stun };
  const consumerEnv: NodeJS.ProcessEnv = { ...machine, MYST_DATA_DIR: path.join(base, "consumer") };
  const consumer = (args: string[]) => mystOk(consumerEnv, args, consumerNs);
  const consumer2Ns = topology.consumers[1];
  const consumer2Env: NodeJS.ProcessEnv = { ...machine, MYST_DATA_DIR: path.join(base, "consumer2") };
  const consumer2 = (args: string[]) => mystOk(consumer2Env, args, consumer2Ns);

  say("Starting the discovery service");
  // The replica logs in with its own broker credential; providers and consumers present none (docs/security.md).
  const discovery = background("discovery", { ...common, ...replicaEnv() }, ["discovery", "--port", String(discoveryPort)]);
  await until(() => {
    stillRunning();
    return discovery.output().includes("listening");
  }, "discovery");
  ok(`discovery ${common.MYST_DISCOVERY_URLS} (broker user ${replicaEnv().MYST_BROKER_USER}; nodes may not touch JetStream)`);

  say(
    RELAYED
      ? "Creating and registering three providers, a relay and two consumers; provider B holds no ETH at all"
      : "Creating and registering two providers and a consumer; provider B holds no ETH at all",
  );
  const relayerKeyFile = path.join(base, "relayer.key");
  const relayer = Wallet.createRandom();
  fs.writeFileSync(relayerKeyFile, relayer.privateKey, { mode: 0o600 });
  await chain.fund([relayer.address], { eth: parseEther("1"), myst: 0n });
  ok(`a relayer account ${relayer.address} with 1 ETH and no MYST (it submits B's registration and settlements, for a fee)`);
  const ids: Record<string, string> = {};
  for (const [who, env] of [
    ["provider A", providerEnv],
    ["provider B", provider2Env],
    ["consumer", consumerEnv],
    ...(RELAYED
      ? ([
          ["provider C", provider3Env],
          ["relay", relayEnv],
          ["consumer 2", consumer2Env],
        ] as const)
      : []),
  ] as const) {
    const where = who === "consumer" ? consumerNs : who === "consumer 2" ? consumer2Ns : undefined;
    ids[who] = JSON.parse(mystOk(env, ["identities", "new", "--json"], where)).address;
    const relayed = who === "provider B";
    if (!relayed) await chain.fund([ids[who]]);
    const status = JSON.parse(mystOk(env, ["identities", "register", ids[who], "--json", ...(relayed ? ["--relayer-key-file", relayerKeyFile] : [])], where));
    if (status.state !== "registered") throw new Error(`${who} registration: ${JSON.stringify(status)}`);
    ok(`${who} ${ids[who]} registered (tx ${status.txHash})${relayed ? " through the relayer" : ""}`);
  }
  const rpc = new JsonRpcProvider(rpcRequest(chain.rpcUrl), chain.deployment.chainId, { staticNetwork: true });
  started.push({ name: "rpc", stop: async () => rpc.destroy() });

  const homeOf = (i: number) =>
    topology.nat!.upnpRouters.includes(topology.nat!.natRoutersOf(topology.providers[i])[0])
      ? "a UPnP home router"
      : "a home router that keeps one port per app";
  say(
    `Starting both providers' ${LABEL} services, each node on its own machine behind ${SERVICE === "openvpn" ? "a UPnP home router" : "its home router"} (no port forwarded)`,
  );
  // A provider's node runs on its machine (its namespace): it measures its router from there, asks it for a port, and punches from there.
  const sell = (who: string, env: NodeJS.ProcessEnv, i: number, city: string, extra: string[], country = "DE") =>
    background(
      who,
      { ...machine, MYST_DATA_DIR: env.MYST_DATA_DIR },
      [
        "service",
        "start",
        SERVICE,
        "--public-ip",
        topology.providerAddressOf(i),
        "--country",
        country,
        "--city",
        city,
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
        "--min-escrow",
        "0.5",
        // A demo's sessions are short: settle each pair when its session ends, whatever the fee.
        "--settle-on-session-end",
        // wireguard-go's control sockets are named for the device host-wide, whatever the namespace (PLATFORM.md): a name each.
        ...(SERVICE === "wireguard" ? ["--device", `mwpdemo${"abc"[i]}`] : []),
        ...extra,
      ],
      topology.providers[i],
    );
  sell("provider A", providerEnv, 0, "Berlin", []);
  sell("provider B", provider2Env, 1, "Hamburg", ["--settle-via-relayer", relayerKeyFile, "--settlement-fee", "0.0001"]);
  if (RELAYED) {
    // Provider C sells in Austria (the filtered search below finds A and B); the relay is a public node selling `relay` on port 443.
    sell("provider C", provider3Env, 2, "Vienna", [], "AT");
    background(
      "relay",
      { ...machine, MYST_DATA_DIR: relayEnv.MYST_DATA_DIR },
      [
        "service",
        "start",
        "relay",
        "--public-ip",
        topology.relayAddressOf(0),
        "--port",
        "443",
        "--country",
        "DE",
        "--price-per-gib",
        "0.05",
        "--price-per-hour",
        "0",
        "--invoice-every",
        "2",
        "--min-escrow",
        "0.5",
      ],
      topology.relays[0],
    );
  }
  for (const i of [0, 1])
    ok(
      `provider ${"AB"[i]}'s machine ${topology.nat!.localAddressOf(topology.providers[i])} sits behind ${homeOf(i)} (public address ${topology.providerAddressOf(i)})`,
    );
  if (RELAYED) {
    ok(
      `provider C's machine ${topology.nat!.localAddressOf(topology.providers[2])} sits behind a home router that gives each destination a new port (symmetric; public address ${topology.providerAddressOf(2)})`,
    );
    ok(`a relay node on ${topology.relayAddressOf(0)} (its own public address) sells relaying on port 443: coturn, supervised by its node`);
  }
  const proposals = await until(() => {
    stillRunning();
    const list = JSON.parse(consumer(["proposals", "--json", "--service-type", SERVICE, "--country", "DE", "--max-price-per-gib", "0.2"]));
    // Each provider announces again once it has measured how it can be reached (a direct/v1 contact).
    const measured = list.filter((p: Listed) => p.contacts.some((c) => c.type === "direct/v1"));
    return measured.length === 2 && measured;
  }, "both proposals in discovery, with how to reach each provider");
  for (const p of proposals as Listed[]) {
    ok(`the consumer finds it with filters (${SERVICE}, DE, ≤ 0.2 MYST/GiB): ${p.provider}, ${p.location.city}, ${p.location.ipType}`);
    const direct = p.contacts.find((c) => c.type === "direct/v1");
    ok(
      `  how to reach it (its proposal, measured by its node): ${direct?.candidates?.map((c) => `${c.kind} ${c.address}:${c.port}`).join(", ")} — no private address${p.reach ? `; ${SERVICE} needs a provider that is ${p.reach}` : ""}`,
    );
  }

  say("Before connecting: what the internet host sees of the consumer");
  const before = fetchFrom(topology, topology.consumers[0], topology.internetUrl, 1500);
  ok(`visible IP ${before} — the consumer's own address (its ISP's router is ${topology.router}; the providers sit behind their own home routers)`);
  if (before !== topology.consumerAddress(0)) throw new Error(`expected ${topology.consumerAddress(0)}, saw ${before}`);

  say("The consumer's node starts on the consumer's machine and makes its one deposit: 5 MYST into its vault, 1 MYST of escrow");
  const consumerNode = background("consumer", consumerEnv, ["daemon", "--api-port", "0"], consumerNs);
  await until(() => consumerNode.output().includes("REST API:") || consumerNode.child.exitCode !== null, "the consumer's node");
  if (consumerNode.child.exitCode !== null) throw new Error(`myst daemon failed: ${consumerNode.output().trim()}`);
  ok(`its node runs in ${consumerNs}: chain, broker and discovery over the routers (${consumerEnv.MYST_BROKER_URLS}), not on 127.0.0.1`);
  const deposit = JSON.parse(consumer(["vault", "deposit", "5", "--escrow", "1", "--json"]));
  ok(`deposited ${formatMyst(deposit.depositedWei)} MYST + ${formatMyst(deposit.escrowWei)} MYST of escrow (tx ${deposit.txHash}, gas ${deposit.gasUsed})`);

  /**
   * Consumer 2 (behind a symmetric router) and provider C (behind another): no punch can join them,
   * so the session goes through the relay; then each side's history, and what the relay earned.
   */
  const relayedPart = async () => {
    say("A second consumer, behind a symmetric router, reaches provider C behind another one: no punch can join them, a relay does");
    const consumer2Node = background("consumer 2", consumer2Env, ["daemon", "--api-port", "0"], consumer2Ns);
    await until(() => consumer2Node.output().includes("REST API:") || consumer2Node.child.exitCode !== null, "the second consumer's node");
    if (consumer2Node.child.exitCode !== null) throw new Error(`myst daemon failed: ${consumer2Node.output().trim()}`);
    const deposit2 = JSON.parse(consumer2(["vault", "deposit", "2", "--escrow", "1", "--json"]));
    ok(
      `its node runs in ${consumer2Ns}, behind a home router that gives each destination a new port (public address ${topology.consumerAddress(1)}); it deposited ${formatMyst(deposit2.depositedWei)} MYST + ${formatMyst(deposit2.escrowWei)} MYST of escrow`,
    );
    await until(() => {
      stillRunning();
      const relays = JSON.parse(consumer2(["proposals", "--json", "--service-type", "relay"]));
      const providers = JSON.parse(consumer2(["proposals", "--json", "--service-type", SERVICE, "--country", "AT"]));
      return relays.length === 1 && providers.some((p: Listed) => p.contacts.some((c) => c.type === "direct/v1"));
    }, "the relay's proposal and provider C's, measured, in discovery");
    ok(`discovery lists the relay (service type relay, 0.05 MYST/GiB) and provider C (${SERVICE}, AT)`);
    const relayed = await session("provider C", 2, "consumer 2");
    if (relayed.path?.tunnel !== "relayed") throw new Error(`expected a relayed path, got ${JSON.stringify(relayed.path)}`);

    say("The path in each one's session history, and what the relay earned");
    const own = JSON.parse(consumer2(["sessions", "--json"])) as { id: string; peer: string; serviceType: string; path: Parameters<typeof pathWords>[0] }[];
    const mine = own.find((s) => s.id === relayed.sessionId);
    ok(`consumer 2's history: session ${relayed.sessionId} with provider C — ${pathWords(mine?.path)}`);
    const leg = own.find((s) => s.serviceType === "relay");
    if (leg) ok(`  and beside it the relay session ${leg.id} with ${leg.peer}, paid from the same vault`);
    const cSessions = await until(() => {
      const list = JSON.parse(mystOk(provider3Env, ["sessions", "--json"])) as { id: string; endedAt: string | null; path: Parameters<typeof pathWords>[0] }[];
      const s = list.find((x) => x.id === relayed.sessionId);
      return s?.endedAt && s;
    }, "provider C's history of the session");
    ok(`provider C's history: session ${relayed.sessionId} — ${pathWords(cSessions.path)} (the relay's identity as the consumer named it)`);
    const earned = await until(
      () => {
        const e = JSON.parse(mystOk(relayEnv, ["earnings", "--json"]));
        const s = e.sessions.find(
          (x: { serviceType?: string; bytes?: number; promisedWei: string }) => x.serviceType === "relay" && BigInt(x.promisedWei) > 0n && x.bytes,
        );
        return s && { ...s, total: e.totalPromisedWei };
      },
      "the relay's earnings for the session",
      60_000,
    );
    ok(
      `the relay earned ${formatMyst(earned.promisedWei)} MYST for relayed session ${earned.sessionId} (${earned.bytes} bytes of WireGuard ciphertext, for consumer ${earned.consumer}, path ${pathWords(earned.path)})`,
    );
    const cEarnings = JSON.parse(mystOk(provider3Env, ["earnings", "--json"]));
    const cSession = cEarnings.sessions.find((x: { sessionId: string }) => x.sessionId === relayed.sessionId);
    ok(`provider C earned ${formatMyst(cSession?.promisedWei ?? "0")} MYST for the same session — ${pathWords(cSession?.path)}`);
  };

  const session = async (who: "provider A" | "provider B" | "provider C", i: number, by: "consumer" | "consumer 2" = "consumer") => {
    const [run, c] = by === "consumer" ? ([consumer, 0] as const) : ([consumer2, 1] as const);
    const txsBefore = await rpc.getTransactionCount(ids[by]);
    const status = JSON.parse(run(["connect", ids[who], "--service", SERVICE, "--json"]));
    const txs = (await rpc.getTransactionCount(ids[by])) - txsBefore;
    ok(`session ${status.sessionId} with ${who}: ${txs} transaction(s) by the ${by === "consumer" ? "consumer" : "second consumer"} to start it`);
    ok(
      `phases (ms): discovery ${status.phasesMs.discovery}, negotiation ${status.phasesMs.negotiation}, ${SERVICE} up ${status.phasesMs.tunnel}, confirm ${status.phasesMs.confirm}`,
    );
    ok(
      `reached ${who} ${PATH_WORDS[status.path?.tunnel] ?? `by ${status.path?.tunnel}`}; the session's messages go ${status.path?.channel === "direct" ? "over the direct channel between the two nodes" : "over the broker"} (path ${status.path?.tunnel} / ${status.path?.channel})`,
    );
    if (status.path?.relay)
      ok(
        `  ${pathWords(status.path)}: the relay ${status.path.relay.provider.toLowerCase() === ids.relay.toLowerCase() ? "(the relay node above)" : "(ANOTHER node)"} sees only WireGuard's ciphertext`,
      );
    const seen = fetchFrom(topology, topology.consumers[c], topology.internetUrl);
    ok(`visible IP ${seen} — ${who}'s address (${topology.providerAddressOf(i)}), not the consumer's (${topology.consumerAddress(c)})`);
    if (seen !== topology.providerAddressOf(i)) throw new Error(`expected ${topology.providerAddressOf(i)}, saw ${seen}`);
    if (i === 0) {
      const lan = fetchFrom(topology, topology.consumers[0], topology.lanUrl, 1500);
      ok(`the provider's private LAN (${topology.lanUrl}) is ${lan === null ? "blocked" : `REACHABLE (${lan})`}`);
    }
    const t0 = Date.now();
    const received = downloadFrom(topology, topology.consumers[c], `${topology.internetUrl}?bytes=${8 * 1024 * 1024}`);
    if (received !== 8 * 1024 * 1024) throw new Error(`downloaded ${received} bytes, expected ${8 * 1024 * 1024}`);
    ok(`${received} bytes downloaded from the internet host in ${((Date.now() - t0) / 1000).toFixed(2)} s`);
    const paid = await until(
      () => {
        const s = JSON.parse(run(["status", "--json"]));
        // Relayed: the relay's invoices too (coturn reports its counts every few thousand packets and when the allocation ends).
        const relayPaid = !s.path?.relay || BigInt(s.path.relayPromisedWei ?? "0") > 0n;
        return s.bytesIn > 8 * 1024 * 1024 && BigInt(s.promisedWei) > 0n && s.invoices >= 2 && relayPaid && s;
      },
      "promises for the invoices",
      30_000,
    );
    ok(
      `${by === "consumer" ? "consumer" : "second consumer"}'s meter: ${paid.bytesIn} bytes in, ${paid.bytesOut} bytes out; ${paid.invoices} invoice(s) answered; ${formatMyst(paid.promisedWei)} MYST promised${by === "consumer" ? "" : ` to ${who}`}`,
    );
    if (paid.path?.relay)
      ok(
        `its meter of the relay: ${paid.path.relayBytes} bytes both ways; ${formatMyst(paid.path.relayPromisedWei)} MYST promised to the relay, from the same vault`,
      );
    const done = JSON.parse(run(["disconnect", "--json"]));
    ok(`session ${done.sessionId} ended`);
    return { txs, sessionId: status.sessionId as string, path: status.path };
  };

  say("First session: provider A");
  await session("provider A", 0);
  say("Second session: provider B, never used before — no deposit, no transaction");
  const second = await session("provider B", 1);
  if (second.txs !== 0) throw new Error(`the consumer sent ${second.txs} transaction(s) to start a session with a new provider`);
  const gone = fetchFrom(topology, topology.consumers[0], topology.internetUrl, 1500);
  ok(gone === topology.consumerAddress(0) ? `visible IP ${gone}: the consumer's own route is back` : `STILL ROUTED (${gone})`);
  if (gone !== topology.consumerAddress(0)) throw new Error("the consumer's own route did not come back after the disconnect");

  say("Settlement: both providers settle against the same vault when their sessions end");
  const settledOf = (env: NodeJS.ProcessEnv, who: string) =>
    until(
      () => {
        const e = JSON.parse(mystOk(env, ["earnings", "--json"]));
        return BigInt(e.settledWei) > 0n && BigInt(e.unsettledWei) === 0n && e;
      },
      `${who}'s settlement`,
      60_000,
    );
  const a = await settledOf(providerEnv, "provider A");
  ok(
    `provider A settled ${formatMyst(a.settledWei)} MYST of ${formatMyst(a.totalPromisedWei)} promised (tx ${a.settlements[a.settlements.length - 1].txHash}), paying its own gas`,
  );
  const paidOut = JSON.parse(mystOk(providerEnv, ["earnings", "settle", "--json"]));
  ok(
    `provider A's credit in the vault paid out to its account: ${formatMyst(await tokenBalance(rpc, chain, ids["provider A"]))} MYST now (net ${formatMyst(paidOut.netWei)})`,
  );
  const b = await settledOf(provider2Env, "provider B");
  ok(
    `provider B settled ${formatMyst(b.settledWei)} MYST through the relayer (tx ${b.settlements[b.settlements.length - 1].txHash}); fee ${formatMyst(b.feesWei)} MYST, net ${formatMyst(b.netWei)} MYST`,
  );
  const bEth = await rpc.getBalance(ids["provider B"]);
  ok(`provider B holds ${formatUnits(bEth, 18)} ETH and ${formatMyst(await tokenBalance(rpc, chain, ids["provider B"]))} MYST: paid without ever paying gas`);
  if (bEth !== 0n) throw new Error("provider B was expected to hold no ETH");
  const vault = JSON.parse(consumer(["vault", "status", "--json"]));
  ok(`the consumer's one vault now holds ${formatMyst(vault.balanceWei)} MYST (escrow ${formatMyst(vault.escrowWei)} MYST) after paying both providers`);

  if (RELAYED) await relayedPart();

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
  // Before the clean-up stops them (a stopped process's last words are not the failure's).
  const output = failureOutput();
  await cleanup();
  if (output) console.error(output);
  process.exit(1);
});
