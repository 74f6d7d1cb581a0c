import { errorResponses as errors, type JsonApp } from "../../http/app";
import type { ProberOps } from "./ops";
import * as S from "./schemas";

/** `/v1/prober/rounds`: one round of probes by this node (docs/quality.md "Probers"). */
export function proberRoutes(app: JsonApp, ops: ProberOps): void {
  app.post(
    "/v1/prober/rounds",
    {
      schema: {
        summary:
          "Probe providers drawn at random, as a consumer (paying their normal price from this node's vault), and publish the signed probe results to discovery",
        tags: ["quality"],
        body: S.ProbeRoundBody,
        response: { 200: S.ProbeRoundResult, ...errors(400, 401, 409, 422, 502) },
      },
    },
    async (req) => ops.round(req.body),
  );
}
