import http from "node:http";
import type { Static, TSchema } from "@fastify/type-provider-typebox";
import { isErrorCode } from "../errors/catalogue";
import { MystError } from "../errors/MystError";
import type { ReachabilityView } from "./reachability";
import type * as S from "./schemas";
import { readApiToken, readDaemonEndpoint, type DaemonEndpoint } from "./token";

export class NodeClientError extends MystError {}

/** What an API schema describes, as the client sees it. */
type Of<T extends TSchema> = Static<T>;

/** One request/answer exchange with the node's API: over TCP or a unix socket, or in-process. */
export type Transport = (request: {
  method: string;
  path: string;
  headers: Record<string, string>;
  payload?: Buffer;
}) => Promise<{ status: number; text: string }>;

/**
 * The one way the CLI (and any script) talks to a node: its REST API, typed from the API's own
 * TypeBox schemas. The same methods reach a daemon (`http://…`), a foreground node (`unix:/…`) or
 * an offline node a command runs in-process; errors come back as the node's `{code, message}`.
 */
export class NodeClient {
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

  /** The node running for this data dir (a daemon or a foreground command's), or null when none is. */
  static find(dataDir: string): NodeClient | null {
    const endpoint = readDaemonEndpoint(dataDir);
    if (!endpoint) return null;
    const token = readApiToken(dataDir);
    if (!token) throw new NodeClientError("API_TOKEN_MISSING", `a node runs (pid ${endpoint.pid}) but ${dataDir}/api-token is missing`);
    return new NodeClient(endpoint, token);
  }

  // node
  health = () => this.get<Of<typeof S.Health>>("/health");

  /** A one-time login link to the dashboard (a daemon's). */
  loginLink = () => this.post<{ url: string; expiresAt: string }>("/v1/ui/login-link", {});

  /** How the node can be reached (its NAT, its public contacts). */
  reachability = () => this.get<Static<typeof ReachabilityView>>("/v1/reachability");

  // identities
  identities = () => this.get<Of<typeof S.IdentityList>>("/v1/identities");
  createIdentity = (body: Of<typeof S.NewIdentity>) => this.post<Of<typeof S.CreatedIdentity>>("/v1/identities", body);
  importIdentity = (body: Of<typeof S.ImportIdentity>) => this.post<Of<typeof S.CreatedIdentity>>("/v1/identities/import", body);
  exportIdentity = (address: string, body: Of<typeof S.ExportIdentity>) =>
    this.post<Of<typeof S.ExportedIdentity>>(`/v1/identities/${encodeURIComponent(address)}/export`, body);
  identity = (address: string) => this.get<Of<typeof S.IdentityView>>(`/v1/identities/${encodeURIComponent(address)}`);
  register = (address: string, body: Of<typeof S.RegisterBody>) =>
    this.post<Of<typeof S.Registration>>(`/v1/identities/${encodeURIComponent(address)}/registration`, body);

  // services
  services = () => this.get<Of<typeof S.ServiceList>>("/v1/services");
  startService = (body: Of<typeof S.StartServiceBody>) => this.post<Of<typeof S.ServiceView>>("/v1/services", body);
  stopService = (type: string) => this.delete<{ type: string; stopped: boolean }>(`/v1/services/${encodeURIComponent(type)}`);

  // the consumer
  proposals = (query: Of<typeof S.ProposalQuery>) => this.get<Of<typeof S.ProposalPage>>(`/v1/proposals${queryString(query)}`);
  connection = () => this.get<Of<typeof S.ConnectionView>>("/v1/connection");
  connect = (body: Of<typeof S.ConnectBody>) => this.put<Of<typeof S.ConnectionView>>("/v1/connection", body);
  disconnect = () => this.delete<Of<typeof S.ConnectionView>>("/v1/connection");
  statistics = () => this.get<Of<typeof S.Statistics>>("/v1/connection/statistics");

  // history and money
  sessions = (query: Of<typeof S.SessionQuery>) => this.get<Of<typeof S.SessionList>>(`/v1/sessions${queryString(query)}`);
  vault = () => this.get<Of<typeof S.Vault>>("/v1/vault");
  deposit = (body: Of<typeof S.DepositBody>) => this.post<Of<typeof S.DepositResult>>("/v1/vault/deposit", body);
  exitVault = () => this.post<Of<typeof S.ExitResult>>("/v1/vault/exit");
  withdrawVault = () => this.post<Of<typeof S.WithdrawalResult>>("/v1/vault/withdrawal");
  earnings = () => this.get<Of<typeof S.Earnings>>("/v1/earnings");
  settle = () => this.post<Of<typeof S.Earnings>>("/v1/earnings/settlement");

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

  /** One request to the node's API: the same routes and answers whichever transport carries it. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    let status: number;
    let text: string;
    try {
      ({ status, text } = await this.#transport({
        method,
        path,
        payload,
        headers: {
          host: "localhost",
          authorization: `Bearer ${this.#token}`,
          ...(payload ? { "content-type": "application/json", "content-length": String(payload.length) } : {}),
        },
      }));
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
}

/** `?a=1&b=x&b=y` of the defined fields (arrays repeat their key). */
function queryString(query: Record<string, string | number | boolean | string[] | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) q.append(k, String(one));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

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

function splitUrl(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port || 80) };
}
