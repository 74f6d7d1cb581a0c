import http from "node:http";
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

  /**
   * One request to the node's API, over TCP (`http://…`, a daemon) or its unix socket (`unix:/…`, a
   * foreground node): the same routes and answers either way.
   */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const url = this.endpoint.url;
    const target = url.startsWith("unix:") ? { socketPath: url.slice(5), path } : { ...splitUrl(url), path };
    let status: number;
    let text: string;
    try {
      ({ status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = http.request(
          {
            ...target,
            method,
            headers: {
              host: "localhost",
              authorization: `Bearer ${this.token}`,
              ...(payload ? { "content-type": "application/json", "content-length": payload.length } : {}),
            },
            // Connecting (deposit, negotiation, tunnel) and registering wait on the chain and the provider.
            timeout: 180_000,
          },
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
      }));
    } catch (err) {
      throw new DaemonError("DAEMON_UNREACHABLE", `the node (pid ${this.endpoint.pid}) does not answer at ${url}`, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = text === "" ? null : JSON.parse(text);
    } catch (err) {
      throw new DaemonError("DAEMON_BAD_RESPONSE", `the node answered ${method} ${path} with something that is not JSON`, { cause: err });
    }
    if (status < 200 || status >= 300) {
      const e = parsed as { code?: string; message?: string } | null;
      throw new DaemonError(e?.code ?? `HTTP_${status}`, e?.message ?? `the node answered ${status}`);
    }
    return parsed as T;
  }
}

function splitUrl(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port || 80) };
}
