import { spawn, type ChildProcess } from "node:child_process";
import os from "node:os";
import { Command, Option } from "commander";
import { MystError } from "../errors/MystError";
import { connectBody, withConnectOptions } from "./connect";
import type { CommandContext } from "./context";

type Ctx = (cmd: Command) => CommandContext;

/**
 * `myst run [filters] -- CMD ...`: a confined connection (`confine: true` through the node's API)
 * and CMD run in its network namespace, whose only route is the tunnel; when CMD exits the
 * connection ends, the namespace goes, and CMD's exit code is myst's.
 */
export function runCommand(context: Ctx): Command {
  return withConnectOptions(
    new Command("run")
      .description(
        "run a command whose only route is a tunnel to a provider (a fresh network namespace); the rest of the machine is untouched; ends when the command does",
      )
      .usage("[options] -- <command> [args...]")
      .argument("<command...>", "the command to run and its arguments (after --)"),
    "run the tunnel in this network namespace (tests, demo): the confined namespace hangs off it",
  )
    .addOption(new Option("--provider <id>", "the provider's identity (omit to pick the cheapest match for the filters)"))
    .addOption(
      new Option(
        "--proxy",
        "through the proxy service instead of a tunnel: no root, no namespace; the command gets http_proxy, https_proxy and ALL_PROXY (apps that ignore them go out directly)",
      ),
    )
    .addOption(new Option("--listen <host:port>", "with --proxy: where the local proxy listens (default 127.0.0.1 on a free port)"))
    .action(async (command: string[], opts, cmd: Command) => {
      const ctx = context(cmd);
      if (command.length === 0) throw new MystError("BAD_REQUEST", "give the command to run after --, e.g. myst run -- curl https://example.com");
      if (opts.proxy) return runProxied(ctx, command, opts, cmd.getOptionValueSource("service") === "default");
      if (opts.listen) throw new MystError("BAD_REQUEST", "--listen goes with --proxy");
      const body = { ...connectBody(opts.provider, opts), confine: true };
      process.exitCode = await whileConnected(ctx, opts, body, false, (status) => {
        const confined = "confined" in status ? status.confined : undefined;
        if (!confined || !("provider" in status)) throw new MystError("NOT_CONFINED", "the node answered without a confined namespace");
        process.stderr.write(
          `myst: running ${command[0]} in network namespace ${confined.netns}, whose only route is the tunnel through provider ${status.provider} (session ${status.sessionId})\n`,
        );
        return runIn(confined.netns, command);
      });
    });
}

type Client = NonNullable<ReturnType<CommandContext["runningNode"]>>;
type Connected = Awaited<ReturnType<Client["connect"]>>;

/**
 * Connects with `body` through the running daemon (or a node started for this command), runs `use`
 * and returns its exit code; then disconnects (only this session with `onlyThis`: a proxy connection
 * beside others) and stops the node it started.
 */
async function whileConnected(
  ctx: CommandContext,
  opts: Record<string, unknown>,
  body: Parameters<Client["connect"]>[0],
  onlyThis: boolean,
  use: (status: Connected) => Promise<number>,
): Promise<number> {
  const daemon = ctx.runningNode();
  const running = daemon ? undefined : await ctx.runNode(opts, { foreground: true });
  const client = daemon ?? running!.client;
  let status: Connected;
  try {
    status = await client.connect(body);
  } catch (err) {
    await running?.stop();
    throw err;
  }
  try {
    return await use(status);
  } finally {
    await client
      .disconnect(onlyThis ? status.sessionId : undefined)
      .catch((err: Error) => process.stderr.write(`myst: disconnecting failed: ${err.message}\n`));
    await running?.stop();
  }
}

/**
 * `myst run --proxy -- CMD`: a proxy connection (beside any other the node holds) and CMD with the
 * proxy variables set, in this process's own network; ends the connection when CMD exits.
 */
async function runProxied(ctx: CommandContext, command: string[], opts: Record<string, string | undefined>, serviceDefaulted: boolean): Promise<void> {
  if (!serviceDefaulted && opts.service !== "proxy") throw new MystError("BAD_REQUEST", `--proxy buys the proxy service, not ${opts.service}`);
  const body = { ...connectBody(opts.provider, { ...opts, service: "proxy" }), listen: opts.listen ?? "127.0.0.1:0" };
  process.exitCode = await whileConnected(ctx, opts, body, true, (status) => {
    if (!status.listen || !status.sessionId) throw new MystError("DAEMON_BAD_RESPONSE", "the node answered without a proxy address");
    process.stderr.write(`myst: running ${command[0]} with its proxy at ${status.listen}, through provider ${status.provider} (session ${status.sessionId})\n`);
    return runWith(proxyEnvironment(status.listen), command);
  });
}

/** The variables curl, wget, git, pip, npm, Go and Python programs read (lower and upper case); SOCKS with names resolved remotely. */
export function proxyEnvironment(listen: string): NodeJS.ProcessEnv {
  const http = `http://${listen}`;
  const socks = `socks5h://${listen}`;
  return { http_proxy: http, https_proxy: http, HTTP_PROXY: http, HTTPS_PROXY: http, ALL_PROXY: socks, all_proxy: socks, no_proxy: "", NO_PROXY: "" };
}

/** Runs `command` here with `env` added, on this terminal; its exit code (128 + signal number when a signal ended it). */
function runWith(env: NodeJS.ProcessEnv, command: string[]): Promise<number> {
  return waitFor(spawn(command[0], command.slice(1), { stdio: "inherit", env: { ...process.env, ...env } }), command);
}

/** Runs `command` in `netns` on this terminal; its exit code (128 + signal number when a signal ended it). */
function runIn(netns: string, command: string[]): Promise<number> {
  return waitFor(spawn("/usr/sbin/ip", ["netns", "exec", netns, ...command], { stdio: "inherit" }), command);
}

/** Waits for `child` (which runs `command`) to exit, passing Ctrl-C and TERM on to it. */
function waitFor(child: ChildProcess, command: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    // Ctrl-C reaches the command (same process group); myst waits for it, then cleans up.
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.on("SIGINT", forward);
    process.on("SIGTERM", forward);
    child.once("error", (err) => reject(new MystError("RUN_FAILED", `could not start ${command[0]}: ${err.message}`, { cause: err })));
    child.once("exit", (code, signal) => {
      process.off("SIGINT", forward);
      process.off("SIGTERM", forward);
      resolve(code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0));
    });
  });
}
