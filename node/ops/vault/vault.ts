import { ConsumerVaultClient } from "../../chain/vault";
import type { NodeCore } from "../../daemon/core";
import { MystError } from "../../errors/MystError";
import { vaultReport, type VaultReport } from "../../payments/reports";

/** What the node's vault commands refuse. */
export type VaultErrorCode = "BAD_AMOUNT" | "EXIT_PENDING" | "EXIT_NOT_REQUESTED";

export class VaultError extends MystError<VaultErrorCode> {}

/** The node identity's vault: what pays any provider it buys from. */
export class VaultOps {
  constructor(private readonly core: NodeCore) {}

  async #vault(): Promise<ConsumerVaultClient> {
    return new ConsumerVaultClient((await this.core.chain()).conn);
  }

  async status(): Promise<VaultReport> {
    const me = this.core.me();
    const vault = await this.#vault();
    const [state, wallet] = await Promise.all([vault.vault(me), vault.tokenBalance(me)]);
    return vaultReport(state, me, wallet);
  }

  /**
   * Adds to the vault's balance and escrow from the identity's MYST (one `transferAndCall` of exactly
   * this sum, no allowance); the identity pays the gas. Cancels a pending exit.
   */
  async deposit(
    amountWei: bigint,
    escrowWei: bigint,
  ): Promise<{ depositedWei: string; escrowWei: string; txHash: string; gasUsed: string; vault: VaultReport }> {
    if (amountWei < 0n || escrowWei < 0n || amountWei + escrowWei === 0n) throw new VaultError("BAD_AMOUNT", "deposit a positive amount");
    const key = await this.core.unlocked();
    const vault = await this.#vault();
    const wallet = await vault.tokenBalance(key.address);
    if (wallet < amountWei + escrowWei) {
      throw new VaultError("BAD_AMOUNT", `the identity holds ${wallet} wei of MYST; the deposit needs ${amountWei + escrowWei}`);
    }
    const r = await vault.deposit(key, key.address, amountWei, escrowWei);
    return { depositedWei: amountWei.toString(), escrowWei: escrowWei.toString(), txHash: r.txHash, gasUsed: r.gasUsed.toString(), vault: await this.status() };
  }

  /** Starts leaving: providers refuse a vault in exit, and may settle what they hold during the challenge period. */
  async requestExit(): Promise<{ txHash: string; vault: VaultReport }> {
    const key = await this.core.unlocked();
    const vault = await this.#vault();
    const state = await vault.vault(key.address);
    if (state.exitReadyAt !== 0n)
      throw new VaultError("EXIT_PENDING", `an exit is already pending; withdraw from ${new Date(Number(state.exitReadyAt) * 1000).toISOString()}`);
    const txHash = await vault.requestExit(key);
    return { txHash, vault: await this.status() };
  }

  /** After the challenge period, takes the vault's balance and escrow back. */
  async withdraw(): Promise<{ txHash: string; withdrawnWei: string; vault: VaultReport }> {
    const key = await this.core.unlocked();
    const vault = await this.#vault();
    const state = await vault.vault(key.address);
    if (state.exitReadyAt === 0n)
      throw new VaultError("EXIT_NOT_REQUESTED", "request an exit first (`myst vault exit`), then withdraw after the challenge period");
    const r = await vault.withdraw(key);
    return { txHash: r.txHash, withdrawnWei: r.amount.toString(), vault: await this.status() };
  }
}
