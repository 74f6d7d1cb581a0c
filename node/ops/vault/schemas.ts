import { Type } from "@sinclair/typebox";
import { Address, EmptyBody, Myst, Strict, Wei } from "../../values/schemas";

/** The schemas of the vault routes: amounts in (MYST) as decimal strings, out in wei. */

export const Vault = Type.Object({
  consumer: Address,
  balanceWei: { ...Wei, description: "what pays providers' promises" },
  escrowWei: { ...Wei, description: "the penalty escrow an overdraft forfeits" },
  exitReadyAt: Type.Union([Type.String(), Type.Null()], { description: "when a pending exit can be withdrawn; null when none is pending" }),
  walletWei: { ...Wei, description: "MYST in the identity's own account, ready to deposit" },
});
export const DepositBody = Type.Object(
  {
    amount: Type.Optional({ ...Myst, description: "MYST added to the balance (default 0)" }),
    escrow: Type.Optional({ ...Myst, description: "MYST added to the escrow (default 0)" }),
  },
  Strict,
);
export const DepositResult = Type.Object({ depositedWei: Wei, escrowWei: Wei, txHash: Type.String(), gasUsed: Type.String(), vault: Vault });
export { EmptyBody };
export const ExitResult = Type.Object({ txHash: Type.String(), vault: Vault });
export const WithdrawalResult = Type.Object({ txHash: Type.String(), withdrawnWei: Wei, vault: Vault });
