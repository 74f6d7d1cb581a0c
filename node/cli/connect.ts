import { Command, Option } from "commander";
import { formatUnits } from "ethers";
import { ConsumerNode, connectionStatus, type Connection, type ConnectionStatus } from "../daemon/consumer-node";
import { MystError } from "../errors/MystError";
import { parseFilter } from "../proposal/filter";
import { consumerService } from "../services/catalog";
import type { CommandContext } from "./context";
import { askControl, controlSocketPath, serveControl } from "./control";
import { mystToWei } from "../payments/price";
import { databaseFile, openDatabase } from "../store/database";
import { IssuedPromiseStore } from "../store/issued-promise-store";
import { SessionStore } from "../store/session-store";
import { ConsumerProtection, recoverProtection } from "../consumer-protection/protection";
import { protectedStatus, type ProtectedStatus } from "../consumer-protection/status";

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
    .addOption(new Option("--netns <name>", "run the tunnel in this network namespace (tests, demo); the kill switch and resolver settings apply there"))
    .option("--no-kill-switch", "let traffic out by this machine's own route when the tunnel drops (default: blocked until `myst disconnect`)")
    .option("--allow-lan", "keep the local network (private ranges, link-local) reachable while connected")
    .action(async (providerId: string | undefined, opts, cmd: Command) => {
      const ctx = context(cmd);
      const daemon = ctx.daemon();
      if (daemon) {
        const status = await daemon.put<ConnectionStatus>("/v1/connection", {
          ...(providerId ? { provider: providerId } : {}),
          serviceType: opts.service,
          ...(opts.country ? { country: opts.country } : {}),
          ...(opts.ipType ? { ipType: opts.ipType } : {}),
          ...(opts.maxPricePerHour ? { maxPricePerHour: opts.maxPricePerHour } : {}),
          ...(opts.maxPricePerGib ? { maxPricePerGiB: opts.maxPricePerGib } : {}),
          ...(opts.topup ? { topUp: opts.topup } : {}),
          ...(opts.netns ? { netns: opts.netns } : {}),
          ...(opts.killSwitch === false ? { killSwitch: false } : {}),
          ...(opts.allowLan ? { allowLan: true } : {}),
        });
        return ctx.out.result(status, () => [...describeConnected(status), `the daemon (pid ${daemon.endpoint.pid}) holds the connection; \`myst disconnect\` ends it`]);
      }
      const key = await ctx.identity(opts);
      const registry = await ctx.registry({ follow: true });
      const service = consumerService(opts.service, { key, dataDir: ctx.config.dataDir, netns: opts.netns, log: ctx.log });
      const maxHour = opts.maxPricePerHour === undefined ? undefined : mystToWei(opts.maxPricePerHour, "--max-price-per-hour");
      const maxGiB = opts.maxPricePerGib === undefined ? undefined : mystToWei(opts.maxPricePerGib, "--max-price-per-gib");
      const filter = parseFilter({ country: opts.country, ip_type: opts.ipType, max_price_per_hour: maxHour, max_price_per_gib: maxGiB });
      const socket = controlSocketPath(ctx.config.dataDir);
      if (await askControl(socket, "GET", "/status").catch(() => null)) throw new MystError("ALREADY_CONNECTED", "another `myst connect` is running for this data dir: `myst disconnect` first");

      // What a myst that died while connected left in force (kill switch, resolver file) goes first, with a word to the user.
      const recovered = await recoverProtection(ctx.config.dataDir, ctx.log, service.plan && opts.killSwitch !== false ? { keepFor: { netns: opts.netns } } : {});
      if (recovered) process.stderr.write(`myst: ${recovered}\n`);
      const protection = service.plan ? new ConsumerProtection({ killSwitch: opts.killSwitch !== false, allowLan: !!opts.allowLan, netns: opts.netns, dataDir: ctx.config.dataDir, log: ctx.log }) : undefined;
      const topUpTo = opts.topup === undefined ? undefined : BigInt(mystToWei(opts.topup, "--topup"));
      const db = openDatabase(databaseFile(ctx.config.dataDir));
      const node = new ConsumerNode({ key, brokerUrls: ctx.config.brokerUrls, discoveryUrl: ctx.config.discoveryUrl, registry, conn: await ctx.chain(), promises: new IssuedPromiseStore(db), history: new SessionStore(db), log: ctx.log });
      await node.start();
      let connection: Connection;
      try {
        connection = await node.connect({
          provider: providerId,
          filter,
          service,
          topUpTo,
          protection,
        });
      } catch (err) {
        await node.stop();
        db.close();
        throw err;
      }
      const { session } = connection;
      let finished: (reason: string) => void;
      const done = new Promise<string>((resolve) => (finished = resolve));
      const status = () => protectedStatus(connectionStatus(connection), protection);
      // The user's disconnect (the command, Ctrl-C): the session ends, then the protection is lifted.
      let leaving = false;
      const leave = async (reason: string) => {
        leaving = true;
        await session.destroy(reason);
        await protection?.lift();
        finished(reason);
      };
      const control = await serveControl(socket, {
        status,
        disconnect: async () => {
          await leave("consumer disconnected");
          return status();
        },
      });
      // The session ending by itself (tunnel down, provider gone): the kill switch holds until `myst disconnect`.
      session.ended.then(async (reason) => {
        if (leaving) return;
        await protection?.tunnelDown();
        if (protection?.state === "blocked") process.stderr.write(`myst: tunnel down (${reason}), traffic blocked by the kill switch: \`myst disconnect\` lets it out by this machine's own route\n`);
        else finished(reason);
      });
      // A second Ctrl-C must not kill the process halfway through restoring the routes.
      let signalled = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (signalled) return void process.stderr.write("myst: still disconnecting (restoring routes)…\n");
        signalled = true;
        process.stderr.write(`\nmyst: ${signal}, disconnecting…\n`);
        void leave("consumer disconnected (signal)");
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      const first = status();
      ctx.out.result(first, () => [...describeConnected(first), protection ? protection.describe().message : "all traffic goes through the tunnel", "Ctrl-C or `myst disconnect` ends it"]);
      const reason = await done;
      control.close();
      await node.stop();
      db.close();
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.stderr.write(`myst: disconnected (${reason})\n`);
    });

  const disconnect = new Command("disconnect").description("end the running connection and restore the routes").action(async (_opts, cmd: Command) => {
    const ctx = context(cmd);
    const daemon = ctx.daemon();
    const answer = daemon ? await daemon.delete("/v1/connection") : await askControl(controlSocketPath(ctx.config.dataDir), "POST", "/disconnect");
    if (!answer) {
      // Nothing running: a myst that died while connected may have left its kill switch in force.
      const recovered = daemon ? null : await recoverProtection(ctx.config.dataDir, ctx.log);
      if (recovered) return ctx.out.result({ state: "disconnected", recovered }, () => [recovered]);
      throw new MystError("NOT_CONNECTED", "not connected");
    }
    ctx.out.result(answer, () => [`disconnected session ${(answer as { sessionId: string }).sessionId}`]);
  });

  const status = new Command("status").description("show the connection: state, session, provider, bytes, duration").action(async (_opts, cmd: Command) => {
    const ctx = context(cmd);
    const daemon = ctx.daemon();
    const answer = (daemon ? await daemon.get("/v1/connection") : await askControl(controlSocketPath(ctx.config.dataDir), "GET", "/status")) as ProtectedStatus | { state: "disconnected" | "connecting" } | null;
    if (answer?.state === "blocked") return ctx.out.result(answer, () => [`state:    tunnel down, traffic blocked`, `session:  ${answer.sessionId} (${answer.endReason ?? "ended"})`, "the kill switch holds: `myst disconnect` lets traffic out by this machine's own route"]);
    if (!answer || answer.state !== "connected") return ctx.out.result(answer ?? { state: "disconnected" }, () => [answer?.state === "connecting" ? "connecting" : "not connected"]);
    ctx.out.result(answer, () => [
      `state:    ${answer.state}`,
      `session:  ${answer.sessionId}`,
      `provider: ${answer.provider} (${answer.serviceType}, ${answer.country})`,
      `bytes:    ${answer.bytesIn} in, ${answer.bytesOut} out`,
      `duration: ${answer.durationSeconds} s`,
      `paid:     ${formatUnits(answer.promisedWei, 18)} MYST promised over ${answer.invoices} invoice(s)`,
      ...(answer.protection ? [`guard:    ${answer.protection.message}`] : []),
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
