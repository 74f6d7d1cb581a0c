import { Command, Option } from "commander";
import { formatUnits } from "ethers";
import { recoverConfinement } from "../consumer-protection/confined";
import { recoverProtection } from "../consumer-protection/protection";
import type { ProtectedStatus } from "../daemon/protected-status";
import type { ConnectionStatus } from "../daemon/consumer-node";
import type { ConnectionView } from "../daemon/daemon";
import { controlledServices, withControls } from "./controls";
import { MystError } from "../errors/MystError";
import type { CommandContext } from "./context";
import { runNode } from "./run-node";
import { DEFAULT_POLICY } from "./service";

type Ctx = (cmd: Command) => CommandContext;

export function connectCommands(context: Ctx): Command[] {
  const connect = withConnectOptions(
    new Command("connect")
      .description("connect to a provider (by id, or the cheapest that matches filters) and route all traffic through it, until Ctrl-C or `myst disconnect`")
      .argument("[provider-id]", "the provider's identity (omit to pick from discovery with filters)"),
    "run the tunnel in this network namespace (tests, demo); the kill switch and resolver settings apply there",
  )
    .option("--no-kill-switch", "let traffic out by this machine's own route when the tunnel drops (default: blocked until `myst disconnect`)")
    .option("--allow-lan", "keep the local network (private ranges, link-local) reachable while connected")
    .option(
      "--reconnect",
      "when the provider goes away, keep the kill switch and connect again (the same provider, then the next match): 5 attempts over about 31 s, then blocked until `myst disconnect`",
    )
    .action(async (providerId: string | undefined, opts, cmd: Command) => {
      const ctx = context(cmd);
      const body = {
        ...connectBody(providerId, opts),
        ...(opts.killSwitch === false ? { killSwitch: false } : {}),
        ...(opts.allowLan ? { allowLan: true } : {}),
        ...(opts.reconnect ? { reconnect: true } : {}),
      };
      if (opts.reconnect && opts.killSwitch === false)
        throw new MystError("BAD_REQUEST", "--reconnect keeps the kill switch between sessions: it cannot be combined with --no-kill-switch");
      const daemon = ctx.daemon();
      if (daemon) {
        const status = await daemon.put<ConnectionStatus>("/v1/connection", body);
        return ctx.out.result(status, () => [
          ...describeConnected(status),
          `the node (pid ${daemon.endpoint.pid}) holds the connection; \`myst disconnect\` ends it`,
        ]);
      }
      // No node runs for this data dir: this command runs one in the foreground, for as long as
      // the connection lasts, and drives it through the same API (on a 0600 unix socket). A kill
      // switch a crashed myst left in the same place holds until this connection's replaces it.
      const keepKillSwitchFor = opts.killSwitch !== false && opts.service !== "noop" ? { netns: opts.netns } : undefined;
      const running = await runNode(ctx, opts, { policy: DEFAULT_POLICY, foreground: true, keepKillSwitchFor });
      let first: ProtectedStatus;
      try {
        first = await running.client.put<ProtectedStatus>("/v1/connection", body);
      } catch (err) {
        await running.stop();
        throw err;
      }
      const { node, client } = running;
      // A second Ctrl-C must not kill the process halfway through restoring the routes.
      let signalled = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (signalled) return void process.stderr.write("myst: still disconnecting (restoring routes)…\n");
        signalled = true;
        process.stderr.write(`\nmyst: ${signal}, disconnecting…\n`);
        void client.delete("/v1/connection").catch(() => undefined);
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      ctx.out.result(first, () => [
        ...describeConnected(first),
        first.protection?.message ?? "all traffic goes through the tunnel",
        "Ctrl-C or `myst disconnect` ends it",
      ]);
      let session = node.consumer.current!.session;
      let reason = await session.ended;
      // The session ended by itself (tunnel down, provider gone): the kill switch holds until the
      // user disconnects, and with --reconnect the node negotiates a new session meanwhile.
      for (let told = ""; ; ) {
        const now = node.connection();
        if (now.state === "connected" && node.consumer.current!.session !== session) {
          session = node.consumer.current!.session;
          process.stderr.write(`myst: reconnected: session ${session.id} with provider ${session.provider}\n`);
          told = "";
          reason = await session.ended;
          continue;
        }
        if (now.state !== "blocked" && now.state !== "reconnecting") break;
        const news =
          now.state === "reconnecting"
            ? `myst: tunnel down (${reason}), traffic blocked by the kill switch; reconnecting (attempt ${now.reconnect?.attempts ?? 0} of ${now.reconnect?.maxAttempts}${now.reconnect?.attempts ? `, last: ${now.reconnect.lastError}` : ""})\n`
            : `myst: tunnel down (${now.reconnect ? `gave up reconnecting: ${now.reconnect.lastError}` : reason}), traffic blocked by the kill switch: \`myst disconnect\` lets it out by this machine's own route\n`;
        if (news !== told) process.stderr.write((told = news));
        await new Promise((r) => setTimeout(r, 200));
      }
      await running.stop();
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.stderr.write(`myst: disconnected (${reason})\n`);
    });

  const disconnect = new Command("disconnect").description("end the running connection and restore the routes").action(async (_opts, cmd: Command) => {
    const ctx = context(cmd);
    const node = ctx.daemon();
    if (!node) {
      // Nothing running: a myst that died while connected may have left its kill switch in force.
      const recovered = await recoverProtection(ctx.config.dataDir, ctx.log);
      const confined = await recoverConfinement(ctx.config.dataDir, ctx.log);
      if (recovered || confined)
        return ctx.out.result({ state: "disconnected", ...(recovered ? { recovered } : {}), ...(confined ? { confined } : {}) }, () =>
          [recovered, confined].filter((m): m is string => !!m),
        );
      throw new MystError("NOT_CONNECTED", "not connected (no node runs for this data dir)");
    }
    const answer = await node.delete<{ sessionId: string }>("/v1/connection");
    ctx.out.result(answer, () => [`disconnected session ${answer.sessionId}`]);
  });

  const status = new Command("status").description("show the connection: state, session, provider, bytes, duration").action(async (_opts, cmd: Command) => {
    const ctx = context(cmd);
    const node = ctx.daemon();
    const answer = node ? await node.get<ConnectionView>("/v1/connection") : null;
    // A node that sells: its caps, schedule and access state too.
    const out = withControls(ctx.out, node ? await controlledServices(node) : []);
    const reconnect = answer && "reconnect" in answer && answer.reconnect ? answer.reconnect : undefined;
    const confined = answer && "confined" in answer && answer.confined ? answer.confined : undefined;
    const confinedLine = confined ? [`confined: ${confined.message}`] : [];
    const reconnectLine = reconnect
      ? [
          `reconnect: ${reconnect.state}, attempt ${reconnect.attempts} of ${reconnect.maxAttempts} since ${reconnect.since}${reconnect.nextAttemptAt ? `, next at ${reconnect.nextAttemptAt}` : ""} (last: ${reconnect.lastError})`,
        ]
      : [];
    if (answer?.state === "blocked" || answer?.state === "reconnecting")
      return out.result(answer, () => [
        `state:    tunnel down, traffic blocked${answer.state === "reconnecting" ? ", reconnecting" : ""}`,
        `session:  ${answer.sessionId} (${answer.endReason ?? "ended"})`,
        ...reconnectLine,
        ...confinedLine,
        confined
          ? "`myst disconnect` (or the command's exit, with `myst run`) removes the namespace"
          : "the kill switch holds: `myst disconnect` lets traffic out by this machine's own route",
      ]);
    if (answer?.state !== "connected")
      return out.result(answer ?? { state: "disconnected" }, () => [answer?.state === "connecting" ? "connecting" : "not connected"]);
    out.result(answer, () => [
      `state:    ${answer.state}`,
      `session:  ${answer.sessionId}`,
      `provider: ${answer.provider} (${answer.serviceType}, ${answer.country})`,
      `bytes:    ${answer.bytesIn} in, ${answer.bytesOut} out`,
      `duration: ${answer.durationSeconds} s`,
      `paid:     ${formatUnits(answer.promisedWei, 18)} MYST promised over ${answer.invoices} invoice(s)`,
      ...(answer.protection ? [`guard:    ${answer.protection.message}`] : []),
      ...reconnectLine,
      ...confinedLine,
    ]);
  });
  return [connect, disconnect, status];
}

function describeConnected(c: Omit<ConnectionStatus, "state">): string[] {
  return [
    `connected: session ${c.sessionId}`,
    `provider ${c.provider} (${c.serviceType}, ${c.country}, ${c.ipType}), ${formatUnits(c.pricePerHourWei, 18)} MYST/h + ${formatUnits(c.pricePerGiBWei, 18)} MYST/GiB`,
    ...(c.deposit ? [`deposited ${formatUnits(c.deposit.amountWei, 18)} MYST into the channel (tx ${c.deposit.txHash}, gas ${c.deposit.gasUsed})`] : []),
    `phases (ms): discovery ${c.phasesMs.discovery}, negotiation ${c.phasesMs.negotiation}, tunnel ${c.phasesMs.tunnel}, confirm ${c.phasesMs.confirm}`,
  ];
}

/** The options `myst connect` and `myst run` share: the service, the identity, the filters, the deposit, the namespace. */
export function withConnectOptions(cmd: Command, netnsHelp: string): Command {
  return cmd
    .option("--service <type>", "openvpn | noop", "openvpn")
    .addOption(new Option("--identity <address>", "the consumer identity (default: the only one in the keystore)"))
    .addOption(new Option("--passphrase-file <file>", "keystore passphrase file (or MYST_PASSPHRASE)"))
    .addOption(new Option("--passphrase <passphrase>", "keystore passphrase"))
    .addOption(new Option("--country <code>", "filter: country"))
    .addOption(new Option("--ip-type <type>", "filter: IP type"))
    .addOption(new Option("--ipv6", "filter: only providers whose tunnel carries IPv6 (else IPv6 is blocked while connected)"))
    .addOption(new Option("--max-price-per-hour <myst>", "refuse providers above this price per hour"))
    .addOption(new Option("--max-price-per-gib <myst>", "refuse providers above this price per GiB"))
    .addOption(new Option("--topup <myst>", "before connecting, deposit so the channel with the provider holds at least this much MYST"))
    .addOption(new Option("--netns <name>", netnsHelp));
}

/** The PUT /v1/connection body for those options. */
export function connectBody(providerId: string | undefined, opts: Record<string, string | boolean | undefined>) {
  return {
    ...(providerId ? { provider: providerId } : {}),
    serviceType: opts.service,
    ...(opts.country ? { country: opts.country } : {}),
    ...(opts.ipType ? { ipType: opts.ipType } : {}),
    ...(opts.ipv6 ? { ipv6: true } : {}),
    ...(opts.maxPricePerHour ? { maxPricePerHour: opts.maxPricePerHour } : {}),
    ...(opts.maxPricePerGib ? { maxPricePerGiB: opts.maxPricePerGib } : {}),
    ...(opts.topup ? { topUp: opts.topup } : {}),
    ...(opts.netns ? { netns: opts.netns } : {}),
  };
}
