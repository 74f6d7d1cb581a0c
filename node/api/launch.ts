import fs from "node:fs";
import path from "node:path";
import { connectChain } from "../chain/connect";
import { readDeployment } from "../chain/deployment";
import { IdentityRegistryClient } from "../chain/registry";
import { Broker } from "../broker/broker";
import { PACKAGE_ROOT, type MystConfig } from "../config/config";
import { resolvePassphrase } from "../config/passphrase";
import { MystNode, type NodeIdentity } from "../daemon/node";
import type { ProviderPaymentSettings } from "../daemon/provider-node";
import { JetStreamProposalStore } from "../discovery/jetstream-store";
import { DiscoveryService } from "../discovery/server";
import { SignatureWorkers } from "../discovery/signature-workers";
import { MystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import { Keystore } from "../identity/keystore";
import { startInOrder, type Startable } from "../lifecycle/startable";
import type { Logger } from "../log/logger";
import { toAddress } from "../values/address";
import { mystToWei } from "../values/myst";
import { NodeClient } from "./client";
import { ApiServer } from "./server";
import { ensureApiToken, readDaemonEndpoint, removeDaemonEndpoint, writeDaemonEndpoint } from "./token";

/**
 * How a node is started: for `myst daemon` (the API on 127.0.0.1), for one foreground command (the
 * API on a 0600 unix socket), or offline for a one-shot command (the API in-process). Every CLI
 * command then speaks to it through the same `NodeClient`; nothing else builds a node.
 */

/** The socket a foreground node serves its API on (mode 0600). */
export const nodeSocketPath = (dataDir: string) => path.join(dataDir, "node.sock");

/** Which identity a command runs as, and where its passphrase comes from. */
export interface IdentityFlags {
  identity?: string;
  passphrase?: string;
  passphraseFile?: string;
}

/** The provider's payment policy as flags give it (amounts in MYST, the period in seconds). */
export interface PolicyFlags {
  maxSessions?: string | number;
  invoiceEvery?: string | number;
  invoiceAbove?: string;
  maxUnpaid?: string;
  minVaultBalance?: string;
  minEscrow?: string;
  exposurePercent?: string | number;
  maxExposure?: string;
  settleThreshold?: string;
  settleFeePercent?: string | number;
  settlementFee?: string;
  /** A file holding the relayer account's private key: settlements go through it (the identity needs no ETH). */
  settleViaRelayer?: string;
  settleOnSessionEnd?: boolean;
}

export type NodePolicy = ProviderPaymentSettings & { maxSessions: number };

/** The payment policy of the flags' defaults (a node that sells nothing still has one). */
export const DEFAULT_POLICY_FLAGS = {
  maxSessions: "50",
  invoiceEvery: "10",
  invoiceAbove: "0.01",
  maxUnpaid: "0.05",
  minVaultBalance: "0.1",
  minEscrow: "0.5",
  exposurePercent: "50",
  maxExposure: "1",
  settleThreshold: "1",
  settleFeePercent: "1",
  settlementFee: "0.001",
} as const;

function percent(value: unknown, flag: string): number {
  const n = Number(value);
  if (!(n >= 0 && n <= 100)) throw new MystError("BAD_FLAG", `${flag} "${value}" is not a percentage from 0 to 100`);
  return n;
}

/** The relayer's key from its file (0600 is the operator's to set): 0x + 64 hex, nothing else. */
function relayerKey(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new MystError("BAD_FLAG", `--settle-via-relayer: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  if (!/^0x[0-9a-fA-F]{64}$/.test(text)) throw new MystError("BAD_FLAG", `--settle-via-relayer: ${file} must hold one private key, 0x + 64 hex digits`);
  return text;
}

export function parsePaymentPolicy(flags: PolicyFlags): NodePolicy {
  const o = { ...DEFAULT_POLICY_FLAGS, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) } as typeof DEFAULT_POLICY_FLAGS &
    PolicyFlags;
  const maxSessions = Number(o.maxSessions);
  if (!Number.isInteger(maxSessions) || maxSessions < 1) throw new MystError("BAD_FLAG", "--max-sessions must be a positive whole number");
  const invoiceEvery = Number(o.invoiceEvery);
  if (!(invoiceEvery > 0)) throw new MystError("BAD_FLAG", `--invoice-every "${o.invoiceEvery}" is not a positive number of seconds`);
  return {
    maxSessions,
    invoiceEveryMs: invoiceEvery * 1000,
    invoiceAboveWei: mystToWei(String(o.invoiceAbove), "--invoice-above"),
    maxUnpaid: mystToWei(String(o.maxUnpaid), "--max-unpaid"),
    minVaultBalance: mystToWei(String(o.minVaultBalance), "--min-vault-balance"),
    minEscrow: mystToWei(String(o.minEscrow), "--min-escrow"),
    exposurePercentOfEscrow: percent(o.exposurePercent, "--exposure-percent"),
    maxExposure: mystToWei(String(o.maxExposure), "--max-exposure"),
    settleThreshold: mystToWei(String(o.settleThreshold), "--settle-threshold"),
    settleFeePercent: percent(o.settleFeePercent, "--settle-fee-percent"),
    settlementFeeWei: mystToWei(String(o.settlementFee), "--settlement-fee"),
    settleOnSessionEnd: flags.settleOnSessionEnd === true,
    ...(flags.settleViaRelayer !== undefined ? { relayerKey: relayerKey(flags.settleViaRelayer) } : {}),
  };
}

function keystoreOf(config: MystConfig): Keystore {
  return new Keystore({ dir: path.join(config.dataDir, "keystore"), lightKdf: config.lightKdf });
}

/**
 * The identity named by --identity, or the only one in the keystore; its key is unlocked with the
 * passphrase of the flags (or MYST_PASSPHRASE) when the node first needs it. Without a clear
 * choice an online node is refused; an offline one runs without an identity.
 */
function chooseIdentity(keystore: Keystore, flags: IdentityFlags, required: boolean): NodeIdentity | undefined {
  let address = flags.identity === undefined ? undefined : toAddress(flags.identity, "--identity");
  if (address === undefined) {
    const all = keystore.list();
    if (all.length === 1) address = toAddress(all[0].address, "identity");
    else if (!required) return undefined;
    else
      throw new MystError(
        "IDENTITY_AMBIGUOUS",
        all.length === 0 ? `no identity in ${keystore.dir}: run \`myst identities new\`` : `${all.length} identities in the keystore: pick one with --identity`,
      );
  }
  const passphrase = () =>
    resolvePassphrase({
      flag: flags.passphrase,
      file: flags.passphraseFile,
      env: process.env.MYST_PASSPHRASE,
      hint: "--passphrase-file FILE, MYST_PASSPHRASE or --passphrase",
    });
  const chosen = address;
  let key: Promise<IdentityKey> | undefined;
  const unlock = () => {
    key ??= (async () => keystore.unlock(chosen, passphrase()))();
    key.catch(() => (key = undefined)); // a wrong passphrase may be given again
    return key;
  };
  return { address: chosen, unlock };
}

export interface RunningNode {
  /** The node's identity. */
  identity: string;
  /** Where its API listens: `http://…` (a daemon) or `unix:/…` (a foreground node). */
  url: string;
  /** The same client the CLI uses for any node. */
  client: NodeClient;
  /** A one-time login link to the dashboard (a daemon's; a foreground node's API is a unix socket). */
  loginLink(): string;
  stop(): Promise<void>;
}

/**
 * Builds and starts this data dir's node with its API: on 127.0.0.1 for `myst daemon`, or on a
 * unix socket for a node that lives for one foreground command (`myst connect`, `myst service
 * start`), which then drives it through the same API. Either way `<data-dir>/daemon.json` tells
 * other commands (`status`, `disconnect`) how to reach it. One node per data dir.
 */
export async function runNode(
  config: MystConfig,
  log: Logger,
  flags: IdentityFlags,
  options: { policy: NodePolicy; foreground: boolean; keepKillSwitchFor?: { netns?: string } },
): Promise<RunningNode> {
  const { dataDir } = config;
  const running = readDaemonEndpoint(dataDir);
  if (running)
    throw new MystError(
      "DAEMON_RUNNING",
      `a ${running.url.startsWith("unix:") ? "foreground node" : "daemon"} already runs for ${dataDir} (pid ${running.pid}, ${running.url})`,
    );
  const keystore = keystoreOf(config);
  const identity = chooseIdentity(keystore, flags, true)!;
  // A wrong passphrase fails here, before anything listens.
  await identity.unlock();
  const node = new MystNode({
    config,
    identity,
    keystore,
    policy: options.policy,
    log,
    ephemeral: options.foreground,
    keepKillSwitchFor: options.keepKillSwitchFor,
  });
  const token = ensureApiToken(dataDir);
  // The listener first: a port in use fails before anything else starts.
  const api = new ApiServer({
    daemon: node,
    token,
    host: config.apiHost,
    port: config.apiPort,
    socketPath: options.foreground ? nodeSocketPath(dataDir) : undefined,
    version: packageVersion(),
    log,
  });
  try {
    await api.start();
  } catch (err) {
    await node.stop();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new MystError("API_PORT_IN_USE", `${config.apiHost}:${config.apiPort} is in use: pick another with --api-port`);
    if (code === "EADDRNOTAVAIL") throw new MystError("API_HOST_UNAVAILABLE", `${config.apiHost} is not an address of this machine (--api-host)`);
    throw err;
  }
  try {
    await node.start();
  } catch (err) {
    await api.stop();
    await node.stop().catch(() => undefined);
    throw err;
  }
  const endpoint = { url: api.url, pid: process.pid, identity: identity.address, startedAt: new Date().toISOString() };
  writeDaemonEndpoint(dataDir, endpoint);
  return {
    identity: identity.address,
    url: api.url,
    client: new NodeClient(endpoint, token),
    loginLink: () => api.loginLink(),
    stop: async () => {
      removeDaemonEndpoint(dataDir);
      await api.stop();
      await node.stop();
    },
  };
}

/**
 * The node for a one-shot command: the one running for this data dir (a daemon or a foreground
 * command's), else an offline node in this process — the keystore, the store and the chain, no
 * broker — reached through the same API, in-process. It is not announced in daemon.json, so a
 * daemon may start meanwhile.
 */
export async function withNode<T>(config: MystConfig, log: Logger, flags: IdentityFlags, use: (client: NodeClient) => Promise<T>): Promise<T> {
  const running = NodeClient.find(config.dataDir);
  if (running) return use(running);
  const keystore = keystoreOf(config);
  const identity = chooseIdentity(keystore, flags, false);
  const node = new MystNode({ config, identity, keystore, policy: parsePaymentPolicy({}), log, offline: true });
  const token = ensureApiToken(config.dataDir);
  const api = new ApiServer({ daemon: node, token, host: "127.0.0.1", port: 0, version: packageVersion(), log });
  try {
    const transport = await api.inProcess();
    const endpoint = { url: "in-process:", pid: process.pid, identity: identity?.address ?? "", startedAt: new Date().toISOString() };
    return await use(new NodeClient(endpoint, token, transport));
  } finally {
    await api.stop();
    await node.stop();
  }
}

/** Whether a node (a daemon or a foreground command's) runs for this data dir. */
export function runningNode(config: MystConfig): NodeClient | null {
  return NodeClient.find(config.dataDir);
}

export interface DiscoveryReplicaOptions {
  host: string;
  port: number;
  ttlMs: number;
  bucket: string;
  replicas: number;
  threads?: number;
}

/** A discovery replica (the other program `myst` can be): its HTTP API over the shared JetStream index. */
export async function startDiscoveryReplica(config: MystConfig, log: Logger, o: DiscoveryReplicaOptions): Promise<{ url: string; stop(): Promise<void> }> {
  const conn = await connectChain({ rpcUrl: config.rpcUrl, deployment: readDeployment(config.deploymentFile) });
  const registry = new IdentityRegistryClient(conn);
  const credentials = config.brokerCredentials;
  const broker = new Broker({ servers: config.brokerUrls, name: "myst-discovery", credentials, log });
  const service = new DiscoveryService({
    broker,
    store: new JetStreamProposalStore({ servers: config.brokerUrls, credentials, bucket: o.bucket, ttlMs: o.ttlMs, replicas: o.replicas, log }),
    signatureWorkers: o.threads === undefined ? undefined : new SignatureWorkers(o.threads),
    directory: registry,
    host: o.host,
    port: o.port,
    maxServiceTypesPerProvider: config.maxServiceTypesPerProvider,
    log,
  });
  const chain: Startable = { start: () => undefined, stop: () => conn.close() };
  const stop = await startInOrder([chain, registry, broker, service]);
  return { url: service.url, stop };
}

function packageVersion(): string {
  return require(path.join(PACKAGE_ROOT, "package.json")).version as string;
}
