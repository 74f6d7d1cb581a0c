import { errorResponses as errors, type JsonApp } from "../../http/app";
import { mystToWei } from "../../values/myst";
import * as S from "./schemas";
import type { VaultOps } from "./vault";

/** `/v1/vault…`: the node identity's vault. */
export function vaultRoutes(app: JsonApp, ops: VaultOps): void {
  const tags = ["payments"];
  app.get(
    "/v1/vault",
    { schema: { summary: "This node's vault: balance, escrow, pending exit", tags, response: { 200: S.Vault, ...errors(401, 502) } } },
    async () => ops.status(),
  );
  app.post(
    "/v1/vault/deposit",
    {
      schema: {
        summary: "Deposit MYST into the vault's balance and/or escrow (one token transferAndCall of exactly that sum); cancels the identity's pending exit",
        tags,
        body: S.DepositBody,
        response: { 200: S.DepositResult, ...errors(400, 401, 422, 502) },
      },
    },
    async (req) => ops.deposit(mystToWei(req.body.amount ?? "0", "amount"), mystToWei(req.body.escrow ?? "0", "escrow")),
  );
  app.post(
    "/v1/vault/exit",
    {
      schema: {
        summary: "Start leaving the vault: providers may settle during the challenge period, then withdraw",
        tags,
        body: S.EmptyBody,
        response: { 200: S.ExitResult, ...errors(400, 401, 409, 422, 502) },
      },
    },
    async () => ops.requestExit(),
  );
  app.post(
    "/v1/vault/withdrawal",
    {
      schema: {
        summary: "After the challenge period, take the vault's balance and escrow back",
        tags,
        body: S.EmptyBody,
        response: { 200: S.WithdrawalResult, ...errors(400, 401, 409, 422, 502) },
      },
    },
    async () => ops.withdraw(),
  );
}
