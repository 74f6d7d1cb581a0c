import { Command, Option } from "commander";
import { formatUnits } from "ethers";
import type { ConnectionStatus } from "../daemon/consumer-node";
import { MystError } from "../errors/MystError";
import type { CommandContext } from "./context";
import { runNode } from "./run-node";
import { DEFAULT_POLICY } from "./service";

type Ctx = (cmd: Command) => CommandContext;

export function connectCommands(context: Ctx): Command[] {
  const connect = new Command("connect")
    .description("connect to a provider (by id, or the cheapest that matches filters) and route all traffic through it, until Ctrl-C or `myst disconnect`")
    .argument("[provider-id]", "the provider's identity (omit to pick from discovery with filters)")
    .option("--service <type>", "openvpn | noop", "openvpn")
    .addOption(new Option("--identity <address>", "the consumer identity (default: the only one in the keystore)"))
    .addOption(new Option("--passphrase-file <file>", "keystore passphrase file (or MYST_PASSPHRASE)"))
    .addOption(new Option("--passphrase <passphrase>", "keystore passphrase"))
    .addOption(new Option("--country <code>", "filter: country"))
    .addOption(new Option("--ip-type <type>", "filter: IP type"))
    .addOption(new Option("--max-price-per-hour <myst>", "refuse providers above this price per hour"))
    .addOption(new Option("--max-price-per-gib <myst>", "refuse providers above this price per GiB"))
    .addOption(new Option("--topup <myst>", "before connecting, deposit so the channel with the provider holds at least this much MYST"))
    .addOption(new Option("--netns <name>", "run the tunnel in this network namespace (tests, demo)"))
    .action(async (providerId: string | undefined, opts, cmd: Command) => {
      const ctx = context(cmd);
      const body = {
        ...(providerId ? { provider: providerId } : {}),
        serviceType: opts.service,
        ...(opts.country ? { country: opts.country } : {}),
        ...(opts.ipType ? { ipType: opts.ipType } : {}),
        ...(opts.maxPricePerHour ? { maxPricePerHour: opts.maxPricePerHour } : {}),
        ...(opts.maxPricePerGib ? { maxPricePerGiB: opts.maxPricePerGib } : {}),
        ...(opts.topup ? { topUp: opts.topup } : {}),
        ...(opts.netns ? { netns: opts.netns } : {}),
      };
      const daemon = ctx.daemon();
      if (daemon) {
        const status = await daemon.put<ConnectionStatus>("/v1/connection", body);
        return ctx.out.result(status, () => [...describeConnected(status), `the node (pid ${daemon.endpoint.pid}) holds the connection; \`myst disconnect\` ends it`]);
      }
      // No node runs for this data dir: this command runs one in the foreground, for as long as
      // the connection lasts, and drives it through the same API (on a 0600 unix socket).
      const running = await runNode(ctx, opts, { policy: DEFAULT_POLICY, foreground: true });
      let status: ConnectionStatus;
      try {
        status = await running.client.put<ConnectionStatus>("/v1/connection", body);
      } catch (err) {
        await running.stop();
        throw err;
      }
      const ended = running.node.consumer.current!.session.ended;
      // A second Ctrl-C must not kill the process halfway through restoring the routes.
      let signalled = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (signalled) return void process.stderr.write("myst: still disconnecting (restoring routes)…\n");
        signalled = true;
        process.stderr.write(`\nmyst: ${signal}, disconnecting…\n`);
        void running.client.delete("/v1/connection").catch(() => undefined);
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      ctx.out.result(status, () => [...describeConnected(status), "all traffic goes through the tunnel; Ctrl-C or `myst disconnect` ends it"]);
      const reason = await ended;
      await running.stop();
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.stderr.write(`myst: disconnected (${reason})\n`);
    });

  const disconnect = new Command("disconnect").description("end the running connection and restore the routes").action(async (_opts, cmd: Command) => {
    const ctx = context(cmd);
    const node = ctx.daemon();
    if (!node) throw new MystError("NOT_CONNECTED", "not connected (no node runs for this data dir)");
    const answer = await node.delete("/v1/connection");
    ctx.out.result(answer, () => [`disconnected session ${(answer as { sessionId: string }).sessionId}`]);
  });

  const status = new Command("status").description("show the connection: state, session, provider, bytes, duration").action(async (_opts, cmd: Command) => {
    const ctx = context(cmd);
    const node = ctx.daemon();
    const answer = node ? await node.get<ConnectionStatus | { state: "disconnected" | "connecting" }>("/v1/connection") : null;
    if (answer?.state !== "connected") return ctx.out.result(answer ?? { state: "disconnected" }, () => [answer?.state === "connecting" ? "connecting" : "not connected"]);
    ctx.out.result(answer, () => [
      `state:    ${answer.state}`,
      `session:  ${answer.sessionId}`,
      `provider: ${answer.provider} (${answer.serviceType}, ${answer.country})`,
      `bytes:    ${answer.bytesIn} in, ${answer.bytesOut} out`,
      `duration: ${answer.durationSeconds} s`,
      `paid:     ${formatUnits(answer.promisedWei, 18)} MYST promised over ${answer.invoices} invoice(s)`,
    ]);
  });
  return [connect, disconnect, status];
}

function describeConnected(c: ConnectionStatus): string[] {
  return [
    `connected: session ${c.sessionId}`,
    `provider ${c.provider} (${c.serviceType}, ${c.country}, ${c.ipType}), ${formatUnits(c.pricePerHourWei, 18)} MYST/h + ${formatUnits(c.pricePerGiBWei, 18)} MYST/GiB`,
    ...(c.deposit ? [`deposited ${formatUnits(c.deposit.amountWei, 18)} MYST into the channel (tx ${c.deposit.txHash}, gas ${c.deposit.gasUsed})`] : []),
    `phases (ms): discovery ${c.phasesMs.discovery}, negotiation ${c.phasesMs.negotiation}, tunnel ${c.phasesMs.tunnel}, confirm ${c.phasesMs.confirm}`,
  ];
}
