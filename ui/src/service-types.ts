import { useEffect, useState } from "preact/hooks";
import { api } from "./api";

/** A setting of a service type, as the node's API document describes it. */
export interface SettingSchema {
  type?: string;
  description?: string;
}

/** A service type the node sells and buys, with its provider settings (none: it takes none). */
export interface ServiceType {
  type: string;
  settings: Record<string, SettingSchema>;
  required: string[];
}

type Schema = {
  properties?: Record<string, Schema & { anyOf?: { enum?: string[]; const?: string }[]; default?: unknown }>;
  required?: string[];
} & SettingSchema;

/** The node's service types, and the one `PUT /v1/connection` buys when none is named. */
export interface ServiceTypes {
  types: ServiceType[];
  connectDefault: string;
}

let loading: Promise<ServiceTypes> | undefined;

/**
 * The node's service types, read from its own API document (`POST /v1/services`'s body): the node
 * builds that schema from its registry of tunnel types (services/registry.ts), so a type added
 * there is offered here with no change to the page.
 */
export function loadServiceTypes(): Promise<ServiceTypes> {
  loading ??= api<{ paths: Record<string, Record<string, { requestBody: { content: Record<string, { schema: Schema }> } }>> }>("GET", "/openapi.json").then(
    (doc) => {
      const body = doc.paths["/v1/services"].post.requestBody.content["application/json"].schema;
      const connect = doc.paths["/v1/connection"].put.requestBody.content["application/json"].schema;
      const names = (body.properties?.type?.anyOf ?? []).flatMap((t) => t.enum ?? (t.const ? [t.const] : []));
      return {
        types: names.map((type) => ({ type, settings: body.properties?.[type]?.properties ?? {}, required: body.properties?.[type]?.required ?? [] })),
        connectDefault: String(connect.properties?.serviceType?.default ?? ""),
      };
    },
  );
  return loading;
}

/** The node's service types once loaded (none until then). */
export function useServiceTypes(): ServiceTypes {
  const [types, setTypes] = useState<ServiceTypes>({ types: [], connectDefault: "" });
  useEffect(() => {
    void loadServiceTypes().then(setTypes, () => undefined);
  }, []);
  return types;
}
