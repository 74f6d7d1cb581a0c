import path from "node:path";
import { Command, Option } from "commander";
import { Wallet, formatUnits, isAddress } from "ethers";
import { PaymentChannelsClient } from "../chain/channels";
import { MystError } from "../errors/MystError";
import { Settler } from "../payments/settlement";
import { openDatabase } from "../store/database";
import { PromiseStore } from "../store/promise-store";
import { SessionStore } from "../store/session-store";
import type { CommandContext } from "./context";
import { mystToWei } from "../payments/price";

type Ctx = (cmd: Command) => CommandContext;
const myst = (wei: bigint) => `${formatUnits(wei, 18)} MYST`;

const identityOptions = (cmd: Command) =>
  cmd
    .addOption(new Option("--identity <address>", "the identity (default: the only one in the keystore)"))
    .addOption(new Option("--passphrase-file <file>", "keystore passphrase file (or MYST_PASSPHRASE)"))
    .addOption(new Option("--passphrase <passphrase>", "keystore passphrase"));

function provider(address: string): string {
  if (!isAddress(address)) throw new MystError("INVALID_ADDRESS", `"${address}" is not a provider address`);
  return address;
}

/** `myst channels`: the consumer's payment channels. */
export function channelsCommand(context: Ctx): Command {
  const channels = new Command("channels").description("the consumer's payment channels: balance, spent, pending withdrawal; topup, withdraw");
  identityOptions(channels.command("show").argument("<provider>", "the provider").description("show the channel with a provider")).action(async (p: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const key = await ctx.identity(opts);
    const client = new PaymentChannelsClient(await ctx.chain());
    const s = await client.state(key.address, provider(p));
    const out = { channelId: s.id, consumer: key.address, provider: p, balanceWei: s.balance.toString(), spentWei: s.settled.toString(), withdrawalReadyAt: s.withdrawalReadyAt === 0n ? null : new Date(Number(s.withdrawalReadyAt) * 1000).toISOString() };
    ctx.out.result(out, () => [
      `channel ${s.id}`,
      `balance:  ${myst(s.balance)}`,
      `spent:    ${myst(s.settled)} (settled by the provider)`,
      `withdraw: ${out.withdrawalReadyAt ? `requested, possible from ${out.withdrawalReadyAt}` : "none pending"}`,
    ]);
  });
  identityOptions(channels.command("topup").argument("<provider>").argument("<myst>", "amount of MYST to deposit").description("deposit MYST into the channel with a provider (spends from the identity's balance)")).action(
    async (p: string, amount: string, opts, cmd: Command) => {
      const ctx = context(cmd);
      const key = await ctx.identity(opts);
      const wei = BigInt(mystToWei(amount, "<myst>"));
      if (wei === 0n) throw new MystError("BAD_FLAG", "deposit a positive amount");
      const r = await new PaymentChannelsClient(await ctx.chain()).deposit(key, key.address, provider(p), wei);
      ctx.out.result({ depositedWei: wei.toString(), txHash: r.txHash, gasUsed: r.gasUsed.toString() }, () => [`deposited ${myst(wei)} (tx ${r.txHash}, gas ${r.gasUsed})`]);
    },
  );
  identityOptions(channels.command("withdraw").argument("<provider>").description("leave a channel: request a withdrawal, then (after the challenge period) take the rest back")).action(
    async (p: string, opts, cmd: Command) => {
      const ctx = context(cmd);
      const key = await ctx.identity(opts);
      const client = new PaymentChannelsClient(await ctx.chain());
      const s = await client.state(key.address, provider(p));
      if (s.withdrawalReadyAt === 0n) {
        const tx = await client.requestWithdrawal(key, p);
        const after = await client.state(key.address, p);
        const at = new Date(Number(after.withdrawalReadyAt) * 1000).toISOString();
        return ctx.out.result({ requested: true, txHash: tx, readyAt: at }, () => [`withdrawal requested (tx ${tx}); run this again from ${at}`]);
      }
      const r = await client.withdraw(key, p);
      ctx.out.result({ withdrawnWei: r.amount.toString(), txHash: r.txHash }, () => [`withdrew ${myst(r.amount)} (tx ${r.txHash})`]);
    },
  );
  return channels;
}

/** `myst earnings`: what a provider was promised and settled, from its store. */
export function earningsCommand(context: Ctx): Command {
  const earnings = new Command("earnings").description("the provider's earnings: per session and total, settled and unsettled; settle");
  earnings.command("show", { isDefault: true }).description("show earnings").action(async (_opts, cmd: Command) => {
    const ctx = context(cmd);
    const store = new PromiseStore(openDatabase(path.join(ctx.config.dataDir, "myst.db")));
    const sessions = store.earningsBySession();
    const latest = store.latestPerChannel();
    const promised = latest.reduce((a, p) => a + p.amount, 0n);
    const settled = latest.reduce((a, p) => a + store.settledAmount(p.channelId), 0n);
    const out = {
      sessions: sessions.map((s) => ({ sessionId: s.sessionId, consumer: s.consumer, promisedWei: s.promised.toString() })),
      totalPromisedWei: promised.toString(),
      settledWei: settled.toString(),
      unsettledWei: (promised - settled).toString(),
      settlements: store.settlements().filter((s) => s.status === "mined").map((s) => ({ channelId: s.channelId, amountWei: s.amount.toString(), paidWei: s.paid?.toString(), txHash: s.txHash })),
    };
    ctx.out.result(out, () => [
      ...sessions.map((s) => `session ${s.sessionId}  ${s.consumer}  ${myst(s.promised)}`),
      `total promised ${myst(promised)}, settled ${myst(settled)}, unsettled ${myst(promised - settled)}`,
    ]);
  });
  identityOptions(earnings.command("settle").description("settle every channel with unsettled promises now")).action(async (opts, cmd: Command) => {
    const ctx = context(cmd);
    const key = await ctx.identity(opts);
    const conn = await ctx.chain();
    const store = new PromiseStore(openDatabase(path.join(ctx.config.dataDir, "myst.db")));
    await new Settler(store, new PaymentChannelsClient(conn), new Wallet(key.privateKeyHex(), conn.provider), { log: ctx.log }).settleAll();
    const mined = store.settlements().filter((s) => s.status === "mined");
    ctx.out.result({ settlements: mined.length }, () => [`${mined.length} settlement(s) on record`]);
  });
  return earnings;
}

/** `myst sessions`: the node's session history, from its store. */
export function sessionsCommand(context: Ctx): Command {
  return new Command("sessions")
    .description("the session history of this node (provider sessions with bytes and promised amounts)")
    .option("--limit <n>", "at most this many, newest first", "50")
    .action(async (opts, cmd: Command) => {
      const ctx = context(cmd);
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new MystError("BAD_FLAG", "--limit must be a positive whole number");
      const list = new SessionStore(openDatabase(path.join(ctx.config.dataDir, "myst.db"))).list(limit);
      ctx.out.result(
        list.map((s) => ({ ...s, promised: s.promised.toString() })),
        () =>
          list.length === 0
            ? ["no sessions yet"]
            : list.map((s) => `${new Date(s.startedAt).toISOString()}  ${s.id}  ${s.role} with ${s.peer}  ${s.bytes} bytes  ${myst(s.promised)}  ${s.endReason ?? "running"}`),
      );
    });
}
