import { Command, Option } from "commander";
import { weiToMyst } from "../values/myst";
import type { NodeClient } from "../api/client";
import { DEFAULT_SERVICE_TYPE, SERVICE_SETTINGS, SERVICE_TYPES, type ConnectBody } from "../api/schemas";
import { controlledServices, withControls } from "./controls";
import { reachabilityOf, withReachability } from "./reachability";
import { qualityOf, withQuality } from "./quality";
import { MystError } from "../errors/MystError";
import type { CommandContext } from "./context";
import type { IdentityFlags } from "../api/launch";

type Ctx = (cmd: Command) => CommandContext;

export function connectCommands(context: Ctx): Command[] {
  return [connectCommand(context), disconnectCommand(context), statusCommand(context)];
}

/** `myst connect`'s own flags, as commander hands them over (beside those of `withConnectOptions`). */
interface ConnectFlags extends IdentityFlags {
  service?: string;
  netns?: string;
  killSwitch?: boolean;
  allowLan?: boolean;
  reconnect?: boolean;
  listen?: string;
  viaRelay?: boolean;
}

function connectCommand(context: Ctx): Command {
  return withConnectOptions(
    new Command("connect")
      .description("connect to a provider (by id, or the cheapest that matches filters) and route all traffic through it, until Ctrl-C or `myst disconnect`")
      .argument("[provider-id]", "the provider's identity (omit to pick from discovery with filters)"),
    "run the tunnel in this network namespace (tests, demo); the kill switch and resolver settings apply there",
  )
    .option("--no-kill-switch", "let traffic out by this machine's own route when the tunnel drops (default: blocked until `myst disconnect`)")
    .option("--allow-lan", "keep the local network (private ranges, link-local) reachable while connected")
    .option("--via-relay", "go through a relay (paid from the same vault) even when a direct path may exist (docs/relay.md)")
    .option(
      "--listen <host:port>",
      "--service proxy: where the local SOCKS5 and HTTP proxy listens (default 127.0.0.1:1080); needs no root; with a connection up, it runs beside it",
    )
    .option(
      "--reconnect",
      "when the provider goes away, keep the kill switch and connect again (the same provider, then the next match): 5 attempts over about 31 s, then blocked until `myst disconnect`",
    )
    .action(async (providerId: string | undefined, opts, cmd: Command) => {
      const ctx = context(cmd);
      const body = connectRequest(connectBody(providerId, opts), opts);
      const running = ctx.runningNode();
      if (running) return connectThroughRunningNode(ctx, running, body);
      await connectInForeground(ctx, opts, body);
    });
}

/** The filters' body with `myst connect`'s own flags added; refuses flags that contradict each other. */
function connectRequest(filters: ConnectBody, opts: ConnectFlags): ConnectBody {
  const body = {
    ...filters,
    ...(opts.killSwitch === false ? { killSwitch: false } : {}),
    ...(opts.allowLan ? { allowLan: true } : {}),
    ...(opts.reconnect ? { reconnect: true } : {}),
    ...(opts.listen ? { listen: opts.listen as string } : {}),
    ...(opts.viaRelay ? { viaRelay: true } : {}),
  };
  if (opts.reconnect && opts.killSwitch === false)
    throw new MystError("BAD_REQUEST", "--reconnect keeps the kill switch between sessions: it cannot be combined with --no-kill-switch");
  return body;
}

/** A node runs for this data dir: it makes and holds the connection; this command only reports it. */
async function connectThroughRunningNode(ctx: CommandContext, running: NodeClient, body: ConnectBody): Promise<void> {
  const status = await running.connect(body);
  return ctx.out.result(status, () => [
    ...describeConnected(status),
    ...(status.listen ? [proxyLine(status.listen)] : []),
    `the node (pid ${running.endpoint.pid}) holds the connection; \`myst disconnect\` ends it`,
  ]);
}

/**
 * No node runs for this data dir: this command runs one in the foreground, for as long as the
 * connection lasts, and drives it through the same API (on a 0600 unix socket). A kill switch a
 * crashed myst left in the same place holds until this connection's replaces it.
 */
async function connectInForeground(ctx: CommandContext, opts: ConnectFlags, body: ConnectBody): Promise<void> {
  const tunnel = SERVICE_SETTINGS.find((t) => t.type === opts.service)?.network !== false;
  const keepKillSwitchFor = opts.killSwitch !== false && tunnel ? { netns: opts.netns } : undefined;
  const node = await ctx.runNode(opts, { foreground: true, keepKillSwitchFor });
  let first: Connection;
  try {
    first = await node.client.connect(body);
  } catch (err) {
    await node.stop();
    throw err;
  }
  const { client } = node;
  const onSignal = disconnectOnSignal(client);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  ctx.out.result(first, () => [
    ...describeConnected(first),
    first.listen ? proxyLine(first.listen) : (first.protection?.message ?? "all traffic goes through the tunnel"),
    "Ctrl-C or `myst disconnect` ends it",
  ]);
  const reason = await followConnection(client, first);
  await node.stop();
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  process.stderr.write(`myst: disconnected (${reason})\n`);
}

/** The first Ctrl-C (or SIGTERM) disconnects; a second must not kill the process halfway through restoring the routes. */
function disconnectOnSignal(client: NodeClient): (signal: NodeJS.Signals) => void {
  let signalled = false;
  return (signal) => {
    if (signalled) return void process.stderr.write("myst: still disconnecting (restoring routes)…\n");
    signalled = true;
    process.stderr.write(`\nmyst: ${signal}, disconnecting…\n`);
    void client.disconnect().catch(() => undefined);
  };
}

function disconnectCommand(context: Ctx): Command {
  return new Command("disconnect").description("end the running connection and restore the routes").action(async (_opts, cmd: Command) => {
    const ctx = context(cmd);
    // With no node running, the offline node lifts what a myst that died while connected left in force.
    const answer = await ctx.withNode({}, (node) => node.disconnect());
    // Nothing recovered and no session: the first connect, still negotiating, was given up.
    const lines = () => (answer.recovered ? answer.recovered : [`disconnected session ${answer.sessionId}`]);
    ctx.out.result(answer, () => (answer.recovered?.length === 0 ? ["disconnected: the connect in progress was given up"] : lines()));
  });
}

function statusCommand(context: Ctx): Command {
  return new Command("status").description("show the connection: state, session, provider, bytes, duration").action(async (_opts, cmd: Command) => {
    const ctx = context(cmd);
    const answer = await ctx.withNode({}, (node) => node.connection());
    // A node that sells: its caps, schedule and access state too.
    const running = ctx.runningNode();
    const out = withQuality(
      withReachability(withControls(ctx.out, running ? await controlledServices(running) : []), await reachabilityOf(running)),
      await qualityOf(running),
    );
    out.result(answer ?? { state: "disconnected" }, () => statusLines(answer));
  });
}

/** `myst status`'s lines for the connection in each of its states. */
function statusLines(answer: Connection): string[] {
  const reconnect = answer && "reconnect" in answer && answer.reconnect ? answer.reconnect : undefined;
  const confined = answer && "confined" in answer && answer.confined ? answer.confined : undefined;
  const confinedLine = confined ? [`confined: ${confined.message}`] : [];
  const reconnectLine = reconnect
    ? [
        `reconnect: ${reconnect.state}, attempt ${reconnect.attempts} of ${reconnect.maxAttempts} since ${reconnect.since}${reconnect.nextAttemptAt ? `, next at ${reconnect.nextAttemptAt}` : ""} (last: ${reconnect.lastError})`,
      ]
    : [];
  // No myst runs here, but one that died while connected left its kill switch in force.
  if (answer && "leftBehind" in answer && answer.leftBehind) {
    const left = answer.leftBehind;
    return [`state:    ${left.killSwitch ? "not connected; " : ""}${left.message}`];
  }
  const failed = answer && "lastFailure" in answer ? answer.lastFailure : undefined;
  // Why the last attempt failed: the provider's refusal code and words (a connect while blocked that did not replace the block).
  const failedLine = failed ? [`last attempt (${failed.at}): ${failed.message}`] : [];
  if (answer?.state === "blocked" || answer?.state === "reconnecting")
    return [
      `state:    tunnel down, traffic blocked${answer.state === "reconnecting" ? ", reconnecting" : ""}`,
      `session:  ${answer.sessionId} (${answer.endReason ?? "ended"})`,
      ...reconnectLine,
      ...failedLine,
      ...confinedLine,
      confined
        ? "`myst disconnect` (or the command's exit, with `myst run`) removes the namespace"
        : "the kill switch holds: `myst disconnect` lets traffic out by this machine's own route",
    ];
  // Proxy connections beside the main one, a line each.
  const besideLines = (answer && "beside" in answer ? (answer.beside ?? []) : []).map(
    (b) => `beside:   proxy on ${b.listen}, session ${b.sessionId} with ${b.provider}, ${b.bytesIn} in, ${b.bytesOut} out`,
  );
  if (answer?.state !== "connected") {
    return [answer?.state === "connecting" ? "connecting" : "not connected", ...failedLine, ...besideLines];
  }
  return [...connectedLines(answer), ...reconnectLine, ...confinedLine];
}

function connectedLines(answer: NonNullable<Connection>): string[] {
  return [
    `state:    ${answer.state}`,
    `session:  ${answer.sessionId}`,
    `provider: ${answer.provider} (${answer.serviceType}, ${answer.country})`,
    `bytes:    ${answer.bytesIn} in, ${answer.bytesOut} out`,
    `duration: ${answer.durationSeconds} s`,
    ...("path" in answer && answer.path ? [describePath(answer.path)] : []),
    `paid:     ${weiToMyst(answer.promisedWei ?? 0)} MYST promised over ${answer.invoices} invoice(s)`,
    ...("listen" in answer && answer.listen ? [`proxy:    SOCKS5 and HTTP on ${answer.listen}`] : []),
    ...(answer.protection ? [`guard:    ${answer.protection.message}`] : []),
    ...("paymentRefused" in answer && answer.paymentRefused ? [`payment:  the provider did not take the last promise: ${answer.paymentRefused.message}`] : []),
  ];
}

type Connection = Awaited<ReturnType<NodeClient["connection"]>>;

/** What a proxy connection offers, in words, with a command to try it. */
function proxyLine(listen: string): string {
  return `SOCKS5 and HTTP proxy on ${listen} (names resolved by the provider: curl --proxy socks5h://${listen} …, or myst run --proxy -- CMD); nothing else is routed`;
}

function describeConnected(c: Connection): string[] {
  const phases = c.phasesMs;
  return [
    `connected: session ${c.sessionId}`,
    `provider ${c.provider} (${c.serviceType}, ${c.country}, ${c.ipType}), ${weiToMyst(c.pricePerHourWei ?? 0)} MYST/h + ${weiToMyst(c.pricePerGiBWei ?? 0)} MYST/GiB`,
    ...(phases ? [`phases (ms): discovery ${phases.discovery}, negotiation ${phases.negotiation}, tunnel ${phases.tunnel}, confirm ${phases.confirm}`] : []),
    ...(c.path ? [describePath(c.path)] : []),
  ];
}

/** How the session travels, in words: "path: tunnel punched through both routers; messages over the direct channel". */
export function describePath(p: NonNullable<Connection["path"]>): string {
  const tunnel = {
    public: "to the provider's public address",
    mapped: "to a port the provider's router maps",
    local: "over the shared LAN",
    punched: "punched through both routers",
    relayed: p.relay ? `relayed via ${p.relay.provider} over ${p.relay.transport.toUpperCase()}/${p.relay.port}` : "relayed",
  }[p.tunnel];
  return `path: tunnel ${tunnel}; messages over ${p.channel === "direct" ? "the direct channel" : "the broker"}`;
}

/**
 * Follows a foreground connection through the node's event stream (`/v1/events`, the connection
 * topic: sent at once when it changes) until it is over, telling of a reconnect or a tunnel down
 * behind the kill switch (which holds until the user disconnects); returns why the last session
 * ended.
 */
async function followConnection(client: NodeClient, first: Connection): Promise<string> {
  let session = first.sessionId;
  let told = "";
  const stop = new AbortController();
  try {
    for await (const { event, data } of client.events({ topics: ["connection"] }, stop.signal)) {
      if (event !== "connection") continue;
      const now = data as Connection;
      if (now.state === "connected" || now.state === "connecting") {
        if (now.state === "connected" && now.sessionId !== session) {
          session = now.sessionId;
          process.stderr.write(`myst: reconnected: session ${session} with provider ${now.provider}\n`);
          told = "";
        }
        continue;
      }
      if (now.state === "disconnected") return now.endReason ?? "disconnected";
      const reason = now.endReason ?? "ended";
      const r = now.reconnect;
      const news =
        now.state === "reconnecting"
          ? `myst: tunnel down (${reason}), traffic blocked by the kill switch; reconnecting${r ? ` (attempt ${r.attempts} of ${r.maxAttempts}${r.attempts ? `, last: ${r.lastError}` : ""})` : ""}\n`
          : `myst: tunnel down (${r ? `gave up reconnecting: ${r.lastError}` : reason}), traffic blocked by the kill switch: \`myst disconnect\` lets it out by this machine's own route\n`;
      if (news !== told) process.stderr.write((told = news));
    }
  } finally {
    stop.abort();
  }
  return "the node stopped";
}

/** The options `myst connect` and `myst run` share: the service, the identity, the filters, the namespace (the vault pays; `myst vault deposit` funds it). */
export function withConnectOptions(cmd: Command, netnsHelp: string): Command {
  return cmd
    .option("--service <type>", SERVICE_TYPES.join(" | "), DEFAULT_SERVICE_TYPE)
    .addOption(new Option("--identity <address>", "the consumer identity (default: the only one in the keystore)"))
    .addOption(new Option("--passphrase-file <file>", "keystore passphrase file (or MYST_PASSPHRASE)"))
    .addOption(new Option("--passphrase <passphrase>", "keystore passphrase"))
    .addOption(new Option("--country <code>", "filter: country"))
    .addOption(new Option("--ip-type <type>", "filter: IP type"))
    .addOption(new Option("--ipv6", "filter: only providers whose tunnel carries IPv6 (else IPv6 is blocked while connected)"))
    .addOption(new Option("--max-price-per-hour <myst>", "refuse providers above this price per hour"))
    .addOption(new Option("--max-price-per-gib <myst>", "refuse providers above this price per GiB"))
    .addOption(new Option("--netns <name>", netnsHelp));
}

/** The PUT /v1/connection body for those options. */
export function connectBody(providerId: string | undefined, opts: Record<string, string | undefined> & { ipv6?: boolean }): ConnectBody {
  // Strings as given: the node's API checks each against its schema and names what is wrong.
  return {
    ...(providerId ? { provider: providerId } : {}),
    serviceType: opts.service as ConnectBody["serviceType"],
    ...(opts.country ? { country: opts.country as string } : {}),
    ...(opts.ipType ? { ipType: opts.ipType as ConnectBody["ipType"] } : {}),
    ...(opts.ipv6 ? { ipv6: true } : {}),
    ...(opts.maxPricePerHour ? { maxPricePerHour: opts.maxPricePerHour } : {}),
    ...(opts.maxPricePerGib ? { maxPricePerGiB: opts.maxPricePerGib } : {}),
    ...(opts.netns ? { netns: opts.netns } : {}),
  };
}
