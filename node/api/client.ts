import { MystError } from "../errors/MystError";
import { readApiToken, readDaemonEndpoint, type DaemonEndpoint } from "./token";

export class DaemonError extends MystError {}

/** Talks to a running daemon's REST API with its token; errors come back as the daemon's `{code, message}`. */
export class DaemonClient {
  constructor(
    readonly endpoint: DaemonEndpoint,
    private readonly token: string,
  ) {}

  /** The daemon running for this data dir, or null when none is. */
  static find(dataDir: string): DaemonClient | null {
    const endpoint = readDaemonEndpoint(dataDir);
    if (!endpoint) return null;
    const token = readApiToken(dataDir);
    if (!token) throw new DaemonError("API_TOKEN_MISSING", `a daemon runs (pid ${endpoint.pid}) but ${dataDir}/api-token is missing`);
    return new DaemonClient(endpoint, token);
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

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.endpoint.url + path, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        // Connecting (deposit, negotiation, tunnel) and registering wait on the chain and the provider.
        signal: AbortSignal.timeout(180_000),
      });
    } catch (err) {
      throw new DaemonError("DAEMON_UNREACHABLE", `the daemon (pid ${this.endpoint.pid}) does not answer at ${this.endpoint.url}`, { cause: err });
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === "" ? null : JSON.parse(text);
    } catch (err) {
      throw new DaemonError("DAEMON_BAD_RESPONSE", `the daemon answered ${method} ${path} with something that is not JSON`, { cause: err });
    }
    if (!res.ok) {
      const e = parsed as { code?: string; message?: string } | null;
      throw new DaemonError(e?.code ?? `HTTP_${res.status}`, e?.message ?? `the daemon answered ${res.status}`);
    }
    return parsed as T;
  }
}
