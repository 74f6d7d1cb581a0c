import type { Static } from "@sinclair/typebox";
import type { Requester } from "../../http/requester";
import type * as S from "./schemas";

/** The earnings routes, as the CLI (and any script) calls them. */
export const earningsActions = (api: Requester) => ({
  earnings: () => api.get<Static<typeof S.Earnings>>("/v1/earnings"),
  settle: () => api.post<Static<typeof S.Earnings>>("/v1/earnings/settlement"),
});
