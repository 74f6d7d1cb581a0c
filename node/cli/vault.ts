import { Command } from "commander";
import { formatUnits } from "ethers";
import type { DepositBody, DepositResult, ExitResult, Vault, WithdrawalResult } from "../api/schemas";
import { MystError } from "../errors/MystError";
import type { CommandContext } from "./context";

type Ctx = (cmd: Command) => CommandContext;
const myst = (wei: string) => `${formatUnits(wei, 18)} MYST`;

function vaultLines(v: Vault): string[] {
  return [
    `vault of ${v.consumer}`,
    `balance: ${myst(v.balanceWei)}`,
    `escrow:  ${myst(v.escrowWei)} (forfeited if the vault is overdrawn)`,
    `exit:    ${v.exitReadyAt ? `requested; withdraw from ${v.exitReadyAt}` : "none pending"}`,
    `wallet:  ${myst(v.walletWei)} (the identity's own MYST, not in the vault)`,
  ];
}

/**
 * `myst vault`: the node identity's one vault, which pays any provider. Every subcommand asks the
 * running node (its API holds the unlocked identity and the chain connection).
 */
export function vaultCommand(context: Ctx): Command {
  const vault = new Command("vault").description("the identity's vault: one deposit pays any provider (deposit, status, exit, withdraw)");
  vault
    .command("status", { isDefault: true })
    .description("balance, escrow and pending exit of the vault")
    .action(async (_opts, cmd: Command) => {
      const ctx = context(cmd);
      const v = await ctx.requireDaemon("myst vault status").get<Vault>("/v1/vault");
      ctx.out.result(v, () => vaultLines(v));
    });
  vault
    .command("deposit")
    .argument("[myst]", "MYST added to the balance", "0")
    .option("--escrow <myst>", "MYST added to the penalty escrow", "0")
    .description("move MYST from the identity into the vault (a permit for exactly this sum; the identity pays the gas); cancels a pending exit")
    .action(async (amount: string, opts: { escrow: string }, cmd: Command) => {
      const ctx = context(cmd);
      if (!/^\d+(\.\d+)?$/.test(amount) || !/^\d+(\.\d+)?$/.test(opts.escrow)) {
        throw new MystError("BAD_AMOUNT", `"${amount}" / --escrow "${opts.escrow}": give amounts of MYST, e.g. 10 or 0.5`);
      }
      const body: DepositBody = { amount, escrow: opts.escrow };
      const r = await ctx.requireDaemon("myst vault deposit").post<DepositResult>("/v1/vault/deposit", body);
      ctx.out.result(r, () => [
        `deposited ${myst(r.depositedWei)} + ${myst(r.escrowWei)} of escrow (tx ${r.txHash}, gas ${r.gasUsed})`,
        ...vaultLines(r.vault),
      ]);
    });
  vault
    .command("exit")
    .description("start leaving: providers refuse new sessions and may settle what they hold during the challenge period")
    .action(async (_opts, cmd: Command) => {
      const ctx = context(cmd);
      const r = await ctx.requireDaemon("myst vault exit").post<ExitResult>("/v1/vault/exit");
      ctx.out.result(r, () => [`exit requested (tx ${r.txHash}); run \`myst vault withdraw\` from ${r.vault.exitReadyAt}`]);
    });
  vault
    .command("withdraw")
    .description("after the challenge period, take the vault's balance and escrow back")
    .action(async (_opts, cmd: Command) => {
      const ctx = context(cmd);
      const r = await ctx.requireDaemon("myst vault withdraw").post<WithdrawalResult>("/v1/vault/withdrawal");
      ctx.out.result(r, () => [`withdrew ${myst(r.withdrawnWei)} (tx ${r.txHash})`]);
    });
  return vault;
}
