import { Command } from "commander";
import { weiToMyst } from "../values/myst";
import type { DepositBody, Vault } from "../api/schemas";
import { MystError } from "../errors/MystError";
import type { CommandContext } from "./context";
import { identityOptions } from "./service";

type Ctx = (cmd: Command) => CommandContext;
const myst = (wei: string) => `${weiToMyst(wei)} MYST`;

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
 * node through its API: the running one (it holds the unlocked identity), or an offline one this
 * command runs, which unlocks the identity to sign a deposit, an exit or a withdrawal.
 */
export function vaultCommand(context: Ctx): Command {
  const vault = new Command("vault").description("the identity's vault: one deposit pays any provider (deposit, status, exit, withdraw)");
  identityOptions(vault.command("status", { isDefault: true }).description("balance, escrow and pending exit of the vault")).action(
    async (opts, cmd: Command) => {
      const ctx = context(cmd);
      const v = await ctx.withNode(opts, (node) => node.vault());
      ctx.out.result(v, () => vaultLines(v));
    },
  );
  identityOptions(
    vault
      .command("deposit")
      .argument("[myst]", "MYST added to the balance", "0")
      .option("--escrow <myst>", "MYST added to the penalty escrow", "0")
      .description(
        "move MYST from the identity into the vault (one token transferAndCall of exactly this sum; the identity pays the gas); cancels a pending exit",
      ),
  ).action(async (amount: string, opts: { escrow: string; identity?: string; passphrase?: string; passphraseFile?: string }, cmd: Command) => {
    const ctx = context(cmd);
    if (!/^\d+(\.\d+)?$/.test(amount) || !/^\d+(\.\d+)?$/.test(opts.escrow)) {
      throw new MystError("BAD_AMOUNT", `"${amount}" / --escrow "${opts.escrow}": give amounts of MYST, e.g. 10 or 0.5`);
    }
    const body: DepositBody = { amount, escrow: opts.escrow };
    const r = await ctx.withNode(opts, (node) => node.deposit(body));
    ctx.out.result(r, () => [`deposited ${myst(r.depositedWei)} + ${myst(r.escrowWei)} of escrow (tx ${r.txHash}, gas ${r.gasUsed})`, ...vaultLines(r.vault)]);
  });
  identityOptions(
    vault.command("exit").description("start leaving: providers refuse new sessions and may settle what they hold during the challenge period"),
  ).action(async (opts, cmd: Command) => {
    const ctx = context(cmd);
    const r = await ctx.withNode(opts, (node) => node.exitVault());
    ctx.out.result(r, () => [`exit requested (tx ${r.txHash}); run \`myst vault withdraw\` from ${r.vault.exitReadyAt}`]);
  });
  identityOptions(vault.command("withdraw").description("after the challenge period, take the vault's balance and escrow back")).action(
    async (opts, cmd: Command) => {
      const ctx = context(cmd);
      const r = await ctx.withNode(opts, (node) => node.withdrawVault());
      ctx.out.result(r, () => [`withdrew ${myst(r.withdrawnWei)} (tx ${r.txHash})`]);
    },
  );
  return vault;
}
