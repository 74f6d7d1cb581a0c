import { Command } from "commander";
import { weiToMyst } from "../values/myst";
import type { NodeClient } from "../api/client";
import { MystError } from "../errors/MystError";
import type { CommandContext } from "./context";
import { qualityLines } from "./quality";
import { identityOptions } from "./service";

type Ctx = (cmd: Command) => CommandContext;
const myst = (wei: bigint | string) => `${weiToMyst(wei)} MYST`;

type StoredPath = Awaited<ReturnType<NodeClient["sessions"]>>["sessions"][number]["path"];

/** A stored session path in words: "direct (public)", "punched", "relayed via 0x… over UDP/443"; "-" when not known. */
export function pathWords(p: StoredPath | undefined): string {
  if (!p) return "-";
  if (p.tunnel !== "relayed") return p.tunnel === "punched" || p.tunnel === "mapped" ? p.tunnel : `direct (${p.tunnel})`;
  const r = p.relay;
  const over = r?.transport ? ` over ${r.transport.toUpperCase()}${r.port ? `/${r.port}` : ""}` : "";
  return `relayed via ${r?.provider ?? r?.address ?? "a relay"}${over}`;
}

function printEarnings(ctx: CommandContext, e: Awaited<ReturnType<NodeClient["earnings"]>>): void {
  ctx.out.result(e, () => [
    ...e.sessions.map(
      (s) =>
        `session ${s.sessionId}  ${s.consumer}  ${myst(s.promisedWei)}${s.serviceType ? `  ${s.serviceType}` : ""}${s.bytes ? `  ${s.bytes} bytes` : ""}${s.path ? `  ${pathWords(s.path)}` : ""}`,
    ),
    `total promised ${myst(e.totalPromisedWei)}, settled ${myst(e.settledWei)}, unsettled ${myst(e.unsettledWei)}`,
    `fees paid to relayers ${myst(e.feesWei)}, net of fees ${myst(e.netWei)}`,
    ...(e.settlements.length ? [`${e.settlements.length} settlement(s) on chain`] : []),
    ...e.pendingSettlements.map(
      (p) =>
        `pending settlement ${p.pairId}  ${myst(p.amountWei)}  ${p.state}${p.attempts ? ` after ${p.attempts} attempt(s)` : ""}${p.lastError ? `: ${p.lastError}` : ""}`,
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
  identityOptions(earnings.command("settle").description("settle every pair with unsettled promises now (in batches), then pay the earnings out")).action(
    async (opts, cmd: Command) => {
      const ctx = context(cmd);
      printEarnings(ctx, await ctx.withNode(opts, (node) => node.settle()));
    },
  );
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
          : list.map(
              (s) =>
                `${s.startedAt}  ${s.id}  ${s.role} with ${s.peer}  ${s.serviceType}  ${pathWords(s.path)}  ${s.bytes} bytes  ${myst(s.promisedWei)}  ${s.endReason ?? "running"}`,
            ),
      );
    });
}

/** `myst quality`: this provider's score and its failing stages in words (docs/quality.md). */
export function qualityCommand(context: Ctx): Command {
  return new Command("quality")
    .description("this provider's quality: its score per service type and each failing stage in words, recomputed from the consumers' signed receipts")
    .action(async (_opts, cmd: Command) => {
      const ctx = context(cmd);
      const q = await ctx.withNode({}, (node) => node.quality());
      ctx.out.result(q, () => qualityLines(q));
    });
}
