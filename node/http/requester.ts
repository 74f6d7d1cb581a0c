/**
 * What a client of a JSON API asks with: a group's client methods (node/ops/<group>/client.ts) are
 * written against it, and `NodeClient` (api/client.ts) gives them one over its transport.
 */
export interface Requester {
  get<T = unknown>(path: string): Promise<T>;
  post<T = unknown>(path: string, body?: unknown): Promise<T>;
  put<T = unknown>(path: string, body: unknown): Promise<T>;
  delete<T = unknown>(path: string): Promise<T>;
}

/** `?a=1&b=x&b=y` of the defined fields (arrays repeat their key). */
export function queryString(query: Record<string, string | number | boolean | string[] | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) q.append(k, String(one));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
