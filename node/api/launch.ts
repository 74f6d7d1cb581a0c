import path from "node:path";
import { PACKAGE_ROOT, type MystConfig } from "../config/config";
import { resolvePassphrase } from "../config/passphrase";
import type { PaymentPolicy } from "../config/payment-policy";
import { MystNode, type NodeIdentity } from "../ops/node";
import { MystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import { Keystore } from "../identity/keystore";
import type { Logger } from "../log/logger";
import { toAddress } from "../values/address";
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

// The payment policy's flags live beside the launcher, so commands can read them without loading the node.

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
  options: { policy?: PaymentPolicy; foreground: boolean; keepKillSwitchFor?: { netns?: string } },
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
    client: NodeClient.of(endpoint, token),
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
  const node = new MystNode({ config, identity, keystore, log, offline: true });
  const token = ensureApiToken(config.dataDir);
  const api = new ApiServer({ daemon: node, token, host: "127.0.0.1", port: 0, version: packageVersion(), log });
  try {
    const transport = await api.inProcess();
    const endpoint = { url: "in-process:", pid: process.pid, identity: identity?.address ?? "", startedAt: new Date().toISOString() };
    return await use(NodeClient.of(endpoint, token, transport));
  } finally {
    await api.stop();
    await node.stop();
  }
}

function packageVersion(): string {
  return require(path.join(PACKAGE_ROOT, "package.json")).version as string;
}
