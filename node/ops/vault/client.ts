import type { Static } from "@sinclair/typebox";
import type { Requester } from "../../http/requester";
import type * as S from "./schemas";

/** The vault routes, as the CLI (and any script) calls them. */
export const vaultActions = (api: Requester) => ({
  vault: () => api.get<Static<typeof S.Vault>>("/v1/vault"),
  deposit: (body: Static<typeof S.DepositBody>) => api.post<Static<typeof S.DepositResult>>("/v1/vault/deposit", body),
  exitVault: () => api.post<Static<typeof S.ExitResult>>("/v1/vault/exit"),
  withdrawVault: () => api.post<Static<typeof S.WithdrawalResult>>("/v1/vault/withdrawal"),
});
