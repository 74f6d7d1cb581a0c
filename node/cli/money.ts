import { Command } from "commander";
import { formatUnits } from "ethers";
import type { NodeClient } from "../api/client";
import { MystError } from "../errors/MystError";
import { mystToWei } from "../values/myst";
import type { CommandContext } from "./context";
import { identityOptions } from "./service";

type Ctx = (cmd: Command) => CommandContext;
const myst = (wei: bigint | string) => `${formatUnits(wei, 18)} MYST`;

/**
 * `myst channels`: the consumer's payment channels, through the node's API (a running node's, or
 * an offline one this command runs, which unlocks the identity to sign a deposit or withdrawal).
 */
export function channelsCommand(context: Ctx): Command {
  const channels = new Command("channels").description("the consumer's payment channels: balance, spent, pending withdrawal; topup, withdraw");
  identityOptions(channels.command("show").argument("<provider>", "the provider").description("show the channel with a provider")).action(
    async (provider: string, opts, cmd: Command) => {
      const ctx = context(cmd);
      const out = await ctx.withNode(opts, (node) => node.channel(provider));
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
  ).action(async (provider: string, amount: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    if (mystToWei(amount, "<myst>") === 0n) throw new MystError("BAD_AMOUNT", "deposit a positive amount");
    const r = await ctx.withNode(opts, (node) => node.topUp(provider, { amount }));
    ctx.out.result(r, () => [`deposited ${myst(r.depositedWei)} (tx ${r.txHash}, gas ${r.gasUsed})`]);
  });
  identityOptions(
    channels
      .command("withdraw")
      .argument("<provider>")
      .description("leave a channel: request a withdrawal, then (after the challenge period) take the rest back"),
  ).action(async (provider: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const r = await ctx.withNode(opts, (node) => node.withdraw(provider));
    ctx.out.result(r, () => [
      r.requested ? `withdrawal requested (tx ${r.txHash}); run this again from ${r.readyAt}` : `withdrew ${myst(r.withdrawnWei ?? "0")} (tx ${r.txHash})`,
    ]);
  });
  return channels;
}

function printEarnings(ctx: CommandContext, e: Awaited<ReturnType<NodeClient["earnings"]>>): void {
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

/** `myst earnings`: what a provider was promised and settled, through its node. */
export function earningsCommand(context: Ctx): Command {
  const earnings = new Command("earnings").description("the provider's earnings: per session and total, settled and unsettled; settle");
  earnings
    .command("show", { isDefault: true })
    .description("show earnings")
    .action(async (_opts, cmd: Command) => {
      const ctx = context(cmd);
      printEarnings(ctx, await ctx.withNode({}, (node) => node.earnings()));
    });
  identityOptions(earnings.command("settle").description("settle every channel with unsettled promises now")).action(async (opts, cmd: Command) => {
    const ctx = context(cmd);
    printEarnings(ctx, await ctx.withNode(opts, (node) => node.settle()));
  });
  return earnings;
}

/** `myst sessions`: the node's session history. */
export function sessionsCommand(context: Ctx): Command {
  return new Command("sessions")
    .description("the session history of this node (both roles, with bytes and promised amounts)")
    .option("--limit <n>", "at most this many, newest first", "50")
    .action(async (opts, cmd: Command) => {
      const ctx = context(cmd);
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new MystError("BAD_FLAG", "--limit must be a whole number from 1 to 1000");
      const { sessions: list } = await ctx.withNode({}, (node) => node.sessions({ limit }));
      ctx.out.result(list, () =>
        list.length === 0
          ? ["no sessions yet"]
          : list.map((s) => `${s.startedAt}  ${s.id}  ${s.role} with ${s.peer}  ${s.bytes} bytes  ${myst(s.promisedWei)}  ${s.endReason ?? "running"}`),
      );
    });
}
