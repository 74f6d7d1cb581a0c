import { errorResponses as errors, type JsonApp } from "../../http/app";
import { sessionView, type SessionStore } from "../../store/session-store";
import * as S from "./schemas";

/** `/v1/sessions`: the session history, both roles (the store's records, as they are). */
export function sessionRoutes(app: JsonApp, history: () => SessionStore): void {
  app.get(
    "/v1/sessions",
    {
      schema: {
        summary: "Session history, newest first, both roles",
        tags: ["sessions"],
        querystring: S.SessionQuery,
        response: { 200: S.SessionList, ...errors(400, 401) },
      },
    },
    async (req) => ({ sessions: history().list(req.query.limit, req.query.role).map(sessionView) }),
  );
}
