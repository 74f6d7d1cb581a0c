import type { Static } from "@sinclair/typebox";
import type { Requester } from "../../http/requester";
import type * as S from "./schemas";

const id = (address: string) => `/v1/identities/${encodeURIComponent(address)}`;

/** The identity routes, as the CLI (and any script) calls them. */
export const identityActions = (api: Requester) => ({
  identities: () => api.get<Static<typeof S.IdentityList>>("/v1/identities"),
  createIdentity: (body: Static<typeof S.NewIdentity>) => api.post<Static<typeof S.CreatedIdentity>>("/v1/identities", body),
  importIdentity: (body: Static<typeof S.ImportIdentity>) => api.post<Static<typeof S.CreatedIdentity>>("/v1/identities/import", body),
  exportIdentity: (address: string, body: Static<typeof S.ExportIdentity>) => api.post<Static<typeof S.ExportedIdentity>>(`${id(address)}/export`, body),
  identity: (address: string) => api.get<Static<typeof S.IdentityView>>(id(address)),
  register: (address: string, body: Static<typeof S.RegisterBody>) => api.post<Static<typeof S.Registration>>(`${id(address)}/registration`, body),
});
