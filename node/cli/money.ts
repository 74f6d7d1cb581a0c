import { Command } from "commander";
import { Wallet, formatUnits } from "ethers";
import { ConsumerVaultClient } from "../chain/vault";
import { MystError } from "../errors/MystError";
import { earningsReport, type EarningsReport } from "../payments/reports";
import { Settler } from "../payments/settlement";
import { databaseFile, openDatabase } from "../store/database";
import { PromiseStore } from "../store/promise-store";
import { SessionStore, sessionView, type SessionView } from "../store/session-store";
import type { CommandContext } from "./context";
import { identityOptions } from "./service";

type Ctx = (cmd: Command) => CommandContext;
const myst = (wei: bigint | string) => `${formatUnits(wei, 18)} MYST`;

function printEarnings(ctx: CommandContext, e: EarningsReport): void {
  ctx.out.result(e, () => [
    ...e.sessions.map((s) => `session ${s.sessionId}  ${s.consumer}  ${myst(s.promisedWei)}`),
    `total promised ${myst(e.totalPromisedWei)}, settled ${myst(e.settledWei)}, unsettled ${myst(e.unsettledWei)}`,
    `fees paid to relayers ${myst(e.feesWei)}, net of fees ${myst(e.netWei)}`,
    ...(e.settlements.length ? [`${e.settlements.length} settlement(s) on chain`] : []),
    ...e.pendingSettlements.map(
      (p) =>
        `pending settlement ${p.pairId}  ${myst(p.amountWei)}  ${p.state}${p.attempts ? ` after ${p.attempts} attempt(s)` : ""}${p.lastError ? `: ${p.lastError}` : ""}`,
    ),
  ]);
}

/** `myst earnings`: what a provider was promised and settled, from its store (or its daemon). */
export function earningsCommand(context: Ctx): Command {
  const earnings = new Command("earnings").description("the provider's earnings: per session and total, settled and unsettled; settle");
  earnings
    .command("show", { isDefault: true })
    .description("show earnings")
    .action(async (_opts, cmd: Command) => {
      const ctx = context(cmd);
      const daemon = ctx.daemon();
      printEarnings(
        ctx,
        daemon ? await daemon.get<EarningsReport>("/v1/earnings") : earningsReport(new PromiseStore(openDatabase(databaseFile(ctx.config.dataDir)))),
      );
    });
  identityOptions(earnings.command("settle").description("settle every pair with unsettled promises now (in batches), then pay the earnings out")).action(
    async (opts, cmd: Command) => {
      const ctx = context(cmd);
      const daemon = ctx.daemon();
      if (daemon) return printEarnings(ctx, await daemon.post<EarningsReport>("/v1/earnings/settlement"));
      const key = await ctx.identity(opts);
      const conn = await ctx.chain();
      const store = new PromiseStore(openDatabase(databaseFile(ctx.config.dataDir)));
      const settler = new Settler(store, new ConsumerVaultClient(conn), new Wallet(key.privateKeyHex(), conn.provider), { log: ctx.log });
      settler.settleAll();
      if (await settler.drain(60_000)) await settler.payOut(key.address);
      settler.stop();
      printEarnings(ctx, earningsReport(store, settler.pending()));
    },
  );
  return earnings;
}

/** `myst sessions`: the node's session history, from its store (or its daemon). */
export function sessionsCommand(context: Ctx): Command {
  return new Command("sessions")
    .description("the session history of this node (both roles, with bytes and promised amounts)")
    .option("--limit <n>", "at most this many, newest first", "50")
    .action(async (opts, cmd: Command) => {
      const ctx = context(cmd);
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new MystError("BAD_FLAG", "--limit must be a whole number from 1 to 1000");
      const daemon = ctx.daemon();
      const list: SessionView[] = daemon
        ? (await daemon.get<{ sessions: SessionView[] }>(`/v1/sessions?limit=${limit}`)).sessions
        : new SessionStore(openDatabase(databaseFile(ctx.config.dataDir))).list(limit).map(sessionView);
      ctx.out.result(list, () =>
        list.length === 0
          ? ["no sessions yet"]
          : list.map((s) => `${s.startedAt}  ${s.id}  ${s.role} with ${s.peer}  ${s.bytes} bytes  ${myst(s.promisedWei)}  ${s.endReason ?? "running"}`),
      );
    });
}
