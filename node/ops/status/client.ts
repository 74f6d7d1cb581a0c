import type { Static } from "@sinclair/typebox";
import type { Requester } from "../../http/requester";
import type * as S from "./schemas";

/** The node's liveness and reachability routes, as the CLI (and any script) calls them. */
export const statusActions = (api: Requester) => ({
  health: () => api.get<Static<typeof S.Health>>("/health"),
  quality: () => api.get<Static<typeof S.Quality>>("/v1/quality"),
  /** How the node can be reached (its NAT, its public contacts). */
  reachability: () => api.get<Static<typeof S.ReachabilityView>>("/v1/reachability"),
});
