import type { Static } from "@sinclair/typebox";
import type { Requester } from "../../http/requester";
import type * as S from "./schemas";

/** The node's liveness route, as the CLI (and any script) calls it. */
export const statusActions = (api: Requester) => ({
  health: () => api.get<Static<typeof S.Health>>("/health"),
  quality: () => api.get<Static<typeof S.Quality>>("/v1/quality"),
});
