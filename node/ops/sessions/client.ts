import type { Static } from "@sinclair/typebox";
import { queryString, type Requester } from "../../http/requester";
import type * as S from "./schemas";

/** The session history route, as the CLI (and any script) calls it. */
export const sessionActions = (api: Requester) => ({
  sessions: (query: Static<typeof S.SessionQuery>) => api.get<Static<typeof S.SessionList>>(`/v1/sessions${queryString(query)}`),
});
