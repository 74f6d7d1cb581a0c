import type { Static } from "@sinclair/typebox";
import { queryString, type Requester } from "../../http/requester";
import type * as S from "./schemas";

/** The query of `GET /v1/proposals` in the one spelling (the deprecated snake_case keys are not offered here). */
export type ProposalQuery = Omit<Static<typeof S.ProposalQuery>, keyof typeof S.DeprecatedFilterFields>;

/** The consumer's routes, as the CLI (and any script) calls them. */
export const connectionActions = (api: Requester) => ({
  proposals: (query: ProposalQuery) => api.get<Static<typeof S.ProposalPage>>(`/v1/proposals${queryString(query)}`),
  connection: () => api.get<Static<typeof S.ConnectionView>>("/v1/connection"),
  connect: (body: Static<typeof S.ConnectBody>) => api.put<Static<typeof S.ConnectionView>>("/v1/connection", body),
  /** Ends the connection (and every one beside it); with `sessionId`, only that connection beside the current one. */
  disconnect: (sessionId?: string) => api.delete<Static<typeof S.ConnectionView>>(`/v1/connection${sessionId ? queryString({ sessionId }) : ""}`),
  statistics: () => api.get<Static<typeof S.Statistics>>("/v1/connection/statistics"),
});
