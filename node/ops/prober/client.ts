import type { Static } from "@sinclair/typebox";
import type { Requester } from "../../http/requester";
import type * as S from "./schemas";

/** The prober route, as the CLI (and any script) calls it. */
export const proberActions = (api: Requester) => ({
  probeRound: (body: Static<typeof S.ProbeRoundBody>) => api.post<Static<typeof S.ProbeRoundResult>>("/v1/prober/rounds", body),
});
