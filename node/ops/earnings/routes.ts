import { errorResponses as errors, type JsonApp } from "../../http/app";
import { EmptyBody } from "../../values/schemas";
import type { EarningsOps } from "./earnings";
import * as S from "./schemas";

/** `/v1/earnings…`: what this provider was promised and settled. */
export function earningsRoutes(app: JsonApp, ops: EarningsOps): void {
  const tags = ["payments"];
  app.get(
    "/v1/earnings",
    { schema: { summary: "What this provider was promised and settled", tags, response: { 200: S.Earnings, ...errors(401) } } },
    async () => ops.report(),
  );
  app.post(
    "/v1/earnings/settlement",
    {
      schema: {
        summary: "Settle every pair with unsettled promises now (in batches), then pay the credited earnings out",
        tags,
        body: EmptyBody,
        response: { 200: S.Earnings, ...errors(400, 401, 502) },
      },
    },
    async () => ops.settle(),
  );
}
