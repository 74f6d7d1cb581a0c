import { Command } from "commander";
import { Wallet, formatUnits, getAddress, isAddress } from "ethers";
import { PaymentChannelsClient } from "../chain/channels";
import { MystError } from "../errors/MystError";
import { channelReport, earningsReport, type ChannelReport, type EarningsReport } from "../payments/reports";
import { Settler } from "../payments/settlement";
import { databaseFile, openDatabase } from "../store/database";
import { PromiseStore } from "../store/promise-store";
import { SessionStore, sessionView, type SessionView } from "../store/session-store";
import type { CommandContext } from "./context";
import { mystToWei } from "../payments/price";
import { identityOptions } from "./service";

type Ctx = (cmd: Command) => CommandContext;
const myst = (wei: bigint | string) => `${formatUnits(wei, 18)} MYST`;

function provider(address: string): string {
  if (!isAddress(address)) throw new MystError("INVALID_ADDRESS", `"${address}" is not a provider address`);
  return getAddress(address);
}

type Withdrawal = { requested: true; txHash: string; readyAt: string } | { requested: false; txHash: string; withdrawnWei: string };

/**
 * `myst channels`: the consumer's payment channels. With a daemon running for the data dir the
 * commands go through it (it holds the unlocked identity); without one they unlock it here.
 */
export function channelsCommand(context: Ctx): Command {
  const channels = new Command("channels").description("the consumer's payment channels: balance, spent, pending withdrawal; topup, withdraw");
  identityOptions(channels.command("show").argument("<provider>", "the provider").description("show the channel with a provider")).action(
    async (p: string, opts, cmd: Command) => {
      const ctx = context(cmd);
      const daemon = ctx.daemon();
      let out: ChannelReport;
      if (daemon) out = await daemon.get<ChannelReport>(`/v1/channels/${provider(p)}`);
      else {
        const key = await ctx.identity(opts);
        out = channelReport(await new PaymentChannelsClient(await ctx.chain()).state(key.address, provider(p)), key.address, provider(p));
      }
      ctx.out.result(out, () => [
        `channel ${out.channelId}`,
        `balance:  ${myst(out.balanceWei)}`,
        `spent:    ${myst(out.spentWei)} (settled by the provider)`,
        `withdraw: ${out.withdrawalReadyAt ? `requested, possible from ${out.withdrawalReadyAt}` : "none pending"}`,
      ]);
    },
  );
  identityOptions(
    channels
      .command("topup")
      .argument("<provider>")
      .argument("<myst>", "amount of MYST to deposit")
      .description("deposit MYST into the channel with a provider (spends from the identity's balance)"),
  ).action(async (p: string, amount: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const wei = mystToWei(amount, "<myst>");
    if (wei === 0n) throw new MystError("BAD_AMOUNT", "deposit a positive amount");
    const daemon = ctx.daemon();
    let r: { depositedWei: string; txHash: string; gasUsed: string };
    if (daemon) r = await daemon.post(`/v1/channels/${provider(p)}/topup`, { amount });
    else {
      const key = await ctx.identity(opts);
      const d = await new PaymentChannelsClient(await ctx.chain()).deposit(key, key.address, provider(p), wei);
      r = { depositedWei: wei.toString(), txHash: d.txHash, gasUsed: d.gasUsed.toString() };
    }
    ctx.out.result(r, () => [`deposited ${myst(r.depositedWei)} (tx ${r.txHash}, gas ${r.gasUsed})`]);
  });
  identityOptions(
    channels
      .command("withdraw")
      .argument("<provider>")
      .description("leave a channel: request a withdrawal, then (after the challenge period) take the rest back"),
  ).action(async (p: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const daemon = ctx.daemon();
    const r: Withdrawal = daemon
      ? await daemon.post<Withdrawal>(`/v1/channels/${provider(p)}/withdrawal`)
      : await new PaymentChannelsClient(await ctx.chain()).leave(await ctx.identity(opts), provider(p));
    ctx.out.result(r, () => [
      r.requested ? `withdrawal requested (tx ${r.txHash}); run this again from ${r.readyAt}` : `withdrew ${myst(r.withdrawnWei)} (tx ${r.txHash})`,
    ]);
  });
  return channels;
}

function printEarnings(ctx: CommandContext, e: EarningsReport): void {
  ctx.out.result(e, () => [
    ...e.sessions.map((s) => `session ${s.sessionId}  ${s.consumer}  ${myst(s.promisedWei)}`),
    `total promised ${myst(e.totalPromisedWei)}, settled ${myst(e.settledWei)}, unsettled ${myst(e.unsettledWei)}`,
    ...(e.settlements.length ? [`${e.settlements.length} settlement(s) on chain`] : []),
    ...e.pendingSettlements.map(
      (p) =>
        `pending settlement ${p.channelId}  ${myst(p.amountWei)}  ${p.state}${p.attempts ? ` after ${p.attempts} attempt(s)` : ""}${p.lastError ? `: ${p.lastError}` : ""}`,
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
  identityOptions(earnings.command("settle").description("settle every channel with unsettled promises now")).action(async (opts, cmd: Command) => {
    const ctx = context(cmd);
    const daemon = ctx.daemon();
    if (daemon) return printEarnings(ctx, await daemon.post<EarningsReport>("/v1/earnings/settlement"));
    const key = await ctx.identity(opts);
    const conn = await ctx.chain();
    const store = new PromiseStore(openDatabase(databaseFile(ctx.config.dataDir)));
    const settler = new Settler(store, new PaymentChannelsClient(conn), new Wallet(key.privateKeyHex(), conn.provider), { log: ctx.log });
    settler.settleAll();
    await settler.drain(60_000);
    settler.stop();
    printEarnings(ctx, earningsReport(store, settler.pending()));
  });
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
