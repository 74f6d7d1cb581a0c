import path from "node:path";
import { DaemonClient } from "../api/client";
import { ApiServer } from "../api/server";
import { ensureApiToken, readDaemonEndpoint, removeDaemonEndpoint, writeDaemonEndpoint } from "../api/token";
import { PACKAGE_ROOT } from "../config/config";
import { MystDaemon } from "../daemon/daemon";
import type { ProviderPaymentSettings } from "../daemon/provider-node";
import { MystError } from "../errors/MystError";
import type { CommandContext } from "./context";

/** The socket a foreground node serves its API on (mode 0600). */
export const nodeSocketPath = (dataDir: string) => path.join(dataDir, "node.sock");

export interface RunningNode {
  node: MystDaemon;
  api: ApiServer;
  /** The same client the CLI uses for a daemon: every command is written once, against the API. */
  client: DaemonClient;
  stop(): Promise<void>;
}

/**
 * Builds and starts this data dir's node (the one composition root, `MystDaemon`) with its API:
 * on 127.0.0.1 for `myst daemon`, or on a unix socket for a node that lives for one foreground
 * command (`myst connect`, `myst service start`), which then drives it through the same API as a
 * daemon. Either way `<data-dir>/daemon.json` tells other commands (`status`, `disconnect`) how to
 * reach it. One node per data dir: a second is refused.
 */
export async function runNode(
  ctx: CommandContext,
  flags: { identity?: string; passphrase?: string; passphraseFile?: string },
  options: { policy: ProviderPaymentSettings & { maxSessions: number }; foreground: boolean; keepKillSwitchFor?: { netns?: string } },
): Promise<RunningNode> {
  const { dataDir } = ctx.config;
  const running = readDaemonEndpoint(dataDir);
  if (running)
    throw new MystError(
      "DAEMON_RUNNING",
      `a ${running.url.startsWith("unix:") ? "foreground node" : "daemon"} already runs for ${dataDir} (pid ${running.pid}, ${running.url})`,
    );
  const key = await ctx.identity(flags);
  const version = require(path.join(PACKAGE_ROOT, "package.json")).version as string;
  const node = new MystDaemon({
    config: ctx.config,
    key,
    keystore: ctx.keystore,
    conn: await ctx.chain(),
    registry: await ctx.registry({ follow: true }),
    registrar: await ctx.registrar(),
    policy: options.policy,
    log: ctx.log,
    ephemeral: options.foreground,
    keepKillSwitchFor: options.keepKillSwitchFor,
  });
  const token = ensureApiToken(dataDir);
  // The listener first: a port in use fails before anything else starts.
  const api = new ApiServer({
    daemon: node,
    token,
    host: ctx.config.apiHost,
    port: ctx.config.apiPort,
    socketPath: options.foreground ? nodeSocketPath(dataDir) : undefined,
    version,
    log: ctx.log,
  });
  try {
    await api.start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new MystError("API_PORT_IN_USE", `${ctx.config.apiHost}:${ctx.config.apiPort} is in use: pick another with --api-port`);
    if (code === "EADDRNOTAVAIL") throw new MystError("API_HOST_UNAVAILABLE", `${ctx.config.apiHost} is not an address of this machine (--api-host)`);
    throw err;
  }
  try {
    await node.start();
  } catch (err) {
    await api.stop();
    await node.stop().catch(() => undefined);
    throw err;
  }
  const endpoint = { url: api.url, pid: process.pid, identity: key.address, startedAt: new Date().toISOString() };
  writeDaemonEndpoint(dataDir, endpoint);
  return {
    node,
    api,
    client: new DaemonClient(endpoint, token),
    stop: async () => {
      removeDaemonEndpoint(dataDir);
      await api.stop();
      await node.stop();
    },
  };
}
