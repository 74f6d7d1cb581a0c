import type { Static } from "@sinclair/typebox";
import type { Requester } from "../../http/requester";
import type * as S from "./schemas";

/** The service routes, as the CLI (and any script) calls them. */
export const serviceActions = (api: Requester) => ({
  services: () => api.get<Static<typeof S.ServiceList>>("/v1/services"),
  startService: (body: Static<typeof S.StartServiceBody>) => api.post<Static<typeof S.ServiceView>>("/v1/services", body),
  stopService: (type: string) => api.delete<Static<typeof S.StoppedService>>(`/v1/services/${encodeURIComponent(type)}`),
});
