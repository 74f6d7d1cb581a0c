import path from "node:path";
import { Command, Option } from "commander";
import { ApiServer } from "../api/server";
import { apiTokenFile, ensureApiToken, readDaemonEndpoint, removeDaemonEndpoint, writeDaemonEndpoint } from "../api/token";
import { PACKAGE_ROOT } from "../config/config";
import { MystDaemon } from "../daemon/daemon";
import { MystError } from "../errors/MystError";
import type { CommandContext } from "./context";
import { untilSignal } from "./long-running";
import { identityOptions, parsePaymentPolicy, paymentPolicyOptions } from "./service";

type Ctx = (cmd: Command) => CommandContext;

/** `myst daemon`: the node as a long-running service, driven over its local REST API. */
export function daemonCommand(context: Ctx): Command {
  const cmd = new Command("daemon")
    .description("run the node as a long-lived service (provider and consumer) with its REST API on 127.0.0.1; the CLI's commands then go through it")
    .addOption(new Option("--api-host <address>", "address of the REST API (default 127.0.0.1, or MYST_API_HOST)"))
    .addOption(new Option("--api-port <port>", "port of the REST API, 0 for any free one (default 4449, or MYST_API_PORT)"));
  paymentPolicyOptions(identityOptions(cmd, "the node's identity")).action(async (opts, command: Command) => {
    const ctx = context(command);
    const { dataDir } = ctx.config;
    const policy = parsePaymentPolicy(opts);
    const running = readDaemonEndpoint(dataDir);
    if (running) throw new MystError("DAEMON_RUNNING", `a daemon already runs for ${dataDir} (pid ${running.pid}, ${running.url})`);
    const key = await ctx.identity(opts);
    const version = require(path.join(PACKAGE_ROOT, "package.json")).version as string;
    const daemon = new MystDaemon({
      config: ctx.config,
      key,
      keystore: ctx.keystore,
      conn: await ctx.chain(),
      registry: await ctx.registry({ follow: true }),
      registrar: await ctx.registrar(),
      policy,
      log: ctx.log,
    });
    // The port first: a port in use fails before anything else starts.
    const api = new ApiServer({ daemon, token: ensureApiToken(dataDir), host: ctx.config.apiHost, port: ctx.config.apiPort, version, log: ctx.log });
    try {
      await api.start();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE") throw new MystError("API_PORT_IN_USE", `${ctx.config.apiHost}:${ctx.config.apiPort} is in use: pick another with --api-port`);
      if (code === "EADDRNOTAVAIL") throw new MystError("API_HOST_UNAVAILABLE", `${ctx.config.apiHost} is not an address of this machine (--api-host)`);
      throw err;
    }
    try {
      await daemon.start();
    } catch (err) {
      await api.stop();
      await daemon.stop().catch(() => undefined);
      throw err;
    }
    if (!/^127\.|^::1$/.test(ctx.config.apiHost)) {
      ctx.log.warn({ apiHost: ctx.config.apiHost }, "the API listens beyond this machine: the token is all that protects the node's keys and money");
    }
    writeDaemonEndpoint(dataDir, { url: api.url, pid: process.pid, identity: key.address, startedAt: new Date().toISOString() });
    ctx.out.result({ identity: key.address, url: api.url, tokenFile: apiTokenFile(dataDir), openapi: `${api.url}/openapi.json` }, () => [
      `daemon of ${key.address} running`,
      `REST API: ${api.url} (token in ${apiTokenFile(dataDir)}; OpenAPI at ${api.url}/openapi.json)`,
      "Ctrl-C or SIGTERM stops it",
    ]);
    await untilSignal(async () => {
      removeDaemonEndpoint(dataDir);
      await api.stop();
      await daemon.stop();
    });
  });
  return cmd;
}
