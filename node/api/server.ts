import fs from "node:fs";
import path from "node:path";
import { apiStatusOf } from "../errors/catalogue";
import { compileAllSchemas, createJsonApp, type JsonApp } from "../http/app";
import { silentLogger, type Logger } from "../log/logger";
import type { MystNode } from "../ops/node";
import type { Transport } from "./client";
import { tokenMatches } from "./token";
import { DashboardLogins, sessionCookie, foreignOrigin, refuseOrigin } from "../ops/dashboard/auth";
import { isDashboardPublic, registerDashboard } from "../ops/dashboard/routes";
import { connectionRoutes } from "../ops/connection/routes";
import { earningsRoutes } from "../ops/earnings/routes";
import { identityRoutes } from "../ops/identities/routes";
import { serviceRoutes } from "../ops/services/routes";
import { sessionRoutes } from "../ops/sessions/routes";
import { statusRoutes } from "../ops/status/routes";
import { proberRoutes } from "../ops/prober/routes";
import { vaultRoutes } from "../ops/vault/routes";

export interface ApiServerOptions {
  daemon: MystNode;
  token: string;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Listen on this unix socket (mode 0600) instead of host:port: a foreground node. */
  socketPath?: string;
  version: string;
  log: Logger;
}

const PUBLIC = new Set(["/health", "/openapi.json"]);

/**
 * The daemon's local REST API, put together from each operation group's routes (node/ops/<group>/
 * routes.ts) behind one set of checks: every route but `/health` and `/openapi.json` wants
 * `Authorization: Bearer <token>` (the token is in `<data-dir>/api-token`). Bodies are JSON and
 * checked against their schema, unknown fields refused; errors are `{code, message}`.
 */
export class ApiServer {
  /** The dashboard's one-time login links and sessions (in memory: a restart logs pages out). */
  readonly logins = new DashboardLogins();
  readonly #o: ApiServerOptions;
  #app?: JsonApp;
  #url?: string;

  constructor(options: ApiServerOptions) {
    this.#o = options;
  }

  get url(): string {
    if (!this.#url) throw new Error("not started");
    return this.#url;
  }

  async start(): Promise<void> {
    const app = await this.#build();
    this.#app = app;
    const socket = this.#o.socketPath;
    if (socket) {
      // A foreground node: the same API on a unix socket only its user can open.
      fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o700 });
      fs.rmSync(socket, { force: true }); // left by a node that died (a live one is refused before)
      await app.listen({ path: socket });
      fs.chmodSync(socket, 0o600);
      this.#url = `unix:${socket}`;
    } else {
      this.#url = await app.listen({ host: this.#o.host, port: this.#o.port });
    }
    this.#o.log.info({ url: this.#url }, "API listening");
  }

  /**
   * The API with no listener, for a node that lives inside one command (an offline node): the
   * client's requests are injected into the same routes, schemas and checks.
   */
  async inProcess(): Promise<Transport> {
    const app = await this.#build();
    this.#app = app;
    this.#url = "in-process:";
    return async ({ method, path, headers, payload }) => {
      const res = await app.inject({ method: method as "GET", url: path, headers, payload });
      return { status: res.statusCode, text: res.body };
    };
  }

  /** A one-time login link for the dashboard (the daemon prints one at start; `myst ui` asks for more). */
  loginLink(): string {
    return `${this.url}/#login=${this.logins.issue().code}`;
  }

  async stop(): Promise<void> {
    await this.#app?.close();
    this.#app = undefined;
  }

  /**
   * The OpenAPI document without a running daemon (for docs/openapi.json): the routes are only
   * registered, never called, so no daemon is needed behind them.
   */
  static async document(version: string): Promise<unknown> {
    const app = await new ApiServer({ daemon: undefined as never, token: "", host: "127.0.0.1", port: 0, version, log: silentLogger }).#build();
    const doc = app.swagger();
    await app.close();
    return doc;
  }

  /** Builds the API and compiles every route's schemas now (each route's are otherwise compiled at its first request); how many. For tests. */
  static async compileSchemas(version: string): Promise<number> {
    const app = await new ApiServer({ daemon: undefined as never, token: "", host: "127.0.0.1", port: 0, version, log: silentLogger }).#build();
    try {
      await app.ready();
      return compileAllSchemas(app);
    } finally {
      await app.close();
    }
  }

  async #build(): Promise<JsonApp> {
    const { daemon, token } = this.#o;
    const app = await createJsonApp({
      title: "myst node API",
      version: this.#o.version,
      description: "The local REST API of a running `myst daemon`: identities, services, proposals, the connection, sessions, the vault and earnings.",
      bodyLimit: 64 * 1024,
      statusOf: apiStatusOf, // the catalogue's (errors/catalogue.ts); any other deliberate error is 422
      log: this.#o.log,
      security: { schemes: { token: { type: "http", scheme: "bearer", description: "the token in <data-dir>/api-token" } }, apply: [{ token: [] }] },
      onError: (status, code) => daemon.metrics.error("api", status >= 500 ? `${status}` : code),
      // DNS rebinding: a page whose name now points at 127.0.0.1 sends its own name as Host.
      // On a wildcard address the operator chose to be reachable by any name; no check then.
      allowedHosts: ["0.0.0.0", "::"].includes(this.#o.host) && !this.#o.socketPath ? undefined : ["127.0.0.1", "localhost", "::1", this.#o.host],
    });
    // Another site's page must not drive the API through the browser (the dashboard's cookie).
    app.addHook("onRequest", async (req, reply) => {
      // The page's own files are public: a link from anywhere (a mail, a chat) may open the page.
      if ((req.method === "GET" || req.method === "HEAD") && isDashboardPublic(req)) return;
      const origin = foreignOrigin(req);
      if (origin !== undefined) {
        daemon?.metrics.error("api", "BAD_ORIGIN");
        return refuseOrigin(reply, origin);
      }
    });
    app.addHook("onRequest", async (req, reply) => {
      if (PUBLIC.has(req.url.split("?")[0]) || isDashboardPublic(req)) return;
      const header = req.headers.authorization;
      const given = header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
      // The dashboard's session cookie; a change made with it must say it comes from the page itself.
      if (given === undefined && this.logins.valid(sessionCookie(req))) {
        if (req.method === "GET" || req.method === "HEAD" || req.headers.origin !== undefined) return;
        return refuseOrigin(reply, "a page that does not say its origin");
      }
      if (!tokenMatches(token, given)) {
        daemon.metrics.error("api", "UNAUTHORIZED");
        return reply.status(401).send({
          code: "UNAUTHORIZED",
          message: `${given === undefined ? "no" : "a wrong"} API token: send Authorization: Bearer <the token in <data-dir>/api-token>`,
        });
      }
    });

    await registerDashboard(app, { daemon, logins: this.logins, baseUrl: () => this.url, log: this.#o.log });
    statusRoutes(app, daemon?.core, this.#o.version, () => daemon.reachability());
    identityRoutes(app, daemon?.identities);
    serviceRoutes(app, daemon?.services);
    connectionRoutes(app, { connection: daemon?.connection, proposals: daemon?.proposals }, this.#o.log);
    sessionRoutes(app, () => daemon.core.history);
    vaultRoutes(app, daemon?.vault);
    earningsRoutes(app, daemon?.earnings);
    proberRoutes(app, daemon?.prober);
    await app.ready();
    return app;
  }
}
