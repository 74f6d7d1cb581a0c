import http from "node:http";
import { isErrorCode } from "../errors/catalogue";
import { MystError } from "../errors/MystError";
import type { Requester } from "../http/requester";
import { connectionActions } from "../ops/connection/client";
import { dashboardActions, type EventSource } from "../ops/dashboard/client";
import { earningsActions } from "../ops/earnings/client";
import { identityActions } from "../ops/identities/client";
import { serviceActions } from "../ops/services/client";
import { sessionActions } from "../ops/sessions/client";
import { statusActions } from "../ops/status/client";
import { proberActions } from "../ops/prober/client";
import { vaultActions } from "../ops/vault/client";
import { readApiToken, readDaemonEndpoint, type DaemonEndpoint } from "./token";

export class NodeClientError extends MystError {}

/** One request/answer exchange with the node's API: over TCP or a unix socket, or in-process. */
export type Transport = (request: {
  method: string;
  path: string;
  headers: Record<string, string>;
  payload?: Buffer;
}) => Promise<{ status: number; text: string }>;

/** The requests of a client, over its transport: the same routes and answers whichever transport carries them. */
class NodeRequester implements Requester, EventSource {
  readonly #token: string;
  readonly #transport: Transport;

  constructor(
    readonly endpoint: DaemonEndpoint,
    token: string,
    transport?: Transport,
  ) {
    this.#token = token;
    this.#transport = transport ?? httpTransport(endpoint.url);
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.request("GET", path);
  }

  post<T = unknown>(path: string, body: unknown = {}): Promise<T> {
    return this.request("POST", path, body);
  }

  put<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request("PUT", path, body);
  }

  delete<T = unknown>(path: string): Promise<T> {
    return this.request("DELETE", path);
  }

  #headers(payload?: Buffer): Record<string, string> {
    return {
      host: "localhost",
      authorization: `Bearer ${this.#token}`,
      ...(payload ? { "content-type": "application/json", "content-length": String(payload.length) } : {}),
    };
  }

  /** One request to the node's API. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    let status: number;
    let text: string;
    try {
      ({ status, text } = await this.#transport({ method, path, payload, headers: this.#headers(payload) }));
    } catch (err) {
      throw new NodeClientError("DAEMON_UNREACHABLE", `the node (pid ${this.endpoint.pid}) does not answer at ${this.endpoint.url}`, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = text === "" ? null : JSON.parse(text);
    } catch (err) {
      throw new NodeClientError("DAEMON_BAD_RESPONSE", `the node answered ${method} ${path} with something that is not JSON`, { cause: err });
    }
    if (status < 200 || status >= 300) {
      const e = parsed as { code?: unknown; message?: unknown } | null;
      const message = typeof e?.message === "string" ? e.message : `the node answered ${status}`;
      if (isErrorCode(e?.code)) throw new NodeClientError(e.code, message);
      // A node of another version may answer with a code this one does not know: it stays words.
      const code = typeof e?.code === "string" ? ` ${e.code.slice(0, 64)}` : "";
      throw new NodeClientError("DAEMON_BAD_RESPONSE", `the node answered ${status}${code}: ${message}`);
    }
    return parsed as T;
  }

  /** A streamed GET (the event stream): over HTTP only; a node a command runs in-process has no stream to follow. */
  async *follow(path: string, signal: AbortSignal): AsyncIterable<string> {
    if (this.endpoint.url.startsWith("in-process:")) throw new NodeClientError("NODE_OFFLINE", "an offline node has no event stream");
    yield* httpStream(this.endpoint.url, path, this.#headers(), signal);
  }
}

/**
 * The one way the CLI (and any script) talks to a node: its REST API, typed from the API's own
 * TypeBox schemas. Each operation group brings its client methods (node/ops/<group>/client.ts);
 * the same methods reach a daemon (`http://…`), a foreground node (`unix:/…`) or an offline node a
 * command runs in-process; errors come back as the node's `{code, message}`.
 */
export type NodeClient = NodeRequester &
  ReturnType<typeof statusActions> &
  ReturnType<typeof dashboardActions> &
  ReturnType<typeof identityActions> &
  ReturnType<typeof serviceActions> &
  ReturnType<typeof connectionActions> &
  ReturnType<typeof sessionActions> &
  ReturnType<typeof vaultActions> &
  ReturnType<typeof earningsActions> &
  ReturnType<typeof proberActions>;

export const NodeClient = {
  /** A client of the node at `endpoint` (over HTTP, or over `transport`). */
  of(endpoint: DaemonEndpoint, token: string, transport?: Transport): NodeClient {
    const api = new NodeRequester(endpoint, token, transport);
    return Object.assign(
      api,
      statusActions(api),
      dashboardActions(api, api),
      identityActions(api),
      serviceActions(api),
      connectionActions(api),
      sessionActions(api),
      vaultActions(api),
      earningsActions(api),
      proberActions(api),
    );
  },

  /** The node running for this data dir (a daemon or a foreground command's), or null when none is. */
  find(dataDir: string): NodeClient | null {
    const endpoint = readDaemonEndpoint(dataDir);
    if (!endpoint) return null;
    const token = readApiToken(dataDir);
    if (!token) throw new NodeClientError("API_TOKEN_MISSING", `a node runs (pid ${endpoint.pid}) but ${dataDir}/api-token is missing`);
    return NodeClient.of(endpoint, token);
  },
};

/** HTTP to a daemon (`http://host:port`) or a foreground node's socket (`unix:/path`). */
function httpTransport(url: string): Transport {
  const target = url.startsWith("unix:") ? { socketPath: url.slice(5) } : splitUrl(url);
  return ({ method, path, headers, payload }) =>
    new Promise((resolve, reject) => {
      const req = http.request(
        // Connecting (deposit, negotiation, tunnel) and registering wait on the chain and the provider.
        { ...target, path, method, headers, timeout: 180_000 },
        (res) => {
          let data = "";
          res.setEncoding("utf8");
          res.on("data", (d) => (data += d));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text: data }));
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      req.end(payload);
    });
}

/** The body of a streamed GET, chunk by chunk, until the server ends it or `signal` aborts (then it ends quietly). */
async function* httpStream(url: string, path: string, headers: Record<string, string>, signal: AbortSignal): AsyncIterable<string> {
  const target = url.startsWith("unix:") ? { socketPath: url.slice(5) } : splitUrl(url);
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request({ ...target, path, method: "GET", headers: { ...headers, accept: "text/event-stream" }, signal }, resolve);
    req.on("error", reject);
    req.end();
  });
  if (res.statusCode !== 200) {
    let text = "";
    for await (const d of res) text += d;
    const e = (() => {
      try {
        return JSON.parse(text) as { code?: string; message?: string };
      } catch {
        return null;
      }
    })();
    const message = e?.message ?? `the node answered ${res.statusCode}`;
    throw isErrorCode(e?.code) ? new NodeClientError(e.code, message) : new NodeClientError("DAEMON_BAD_RESPONSE", message);
  }
  res.setEncoding("utf8");
  try {
    for await (const chunk of res) yield chunk as string;
  } catch (err) {
    if (!signal.aborted) throw err;
  }
}

function splitUrl(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port || 80) };
}
