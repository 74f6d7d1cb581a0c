import fs from "node:fs";
import path from "node:path";
import { Type } from "@fastify/type-provider-typebox";
import type { MystNode } from "../daemon/node";
import type { OfferJson } from "../daemon/services-file";
import { createJsonApp, ErrorBody, type JsonApp } from "../http/app";
import { apiStatusOf } from "../errors/catalogue";
import { MystError } from "../errors/MystError";
import { silentLogger, type Logger } from "../log/logger";
import { DEFAULT_PRICE, mystToWei } from "../values/myst";
import * as S from "./schemas";
import type { Transport } from "./client";
import { tokenMatches } from "./token";
import { sessionView } from "../store/session-store";
import { DashboardLogins, sessionCookie, foreignOrigin, refuseOrigin } from "./dashboard-auth";
import { isDashboardPublic, registerDashboard } from "./dashboard";
import { registerReachability } from "./reachability";

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

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorBody]));
const PUBLIC = new Set(["/health", "/openapi.json"]);

/**
 * The daemon's local REST API: every route but `/health` and `/openapi.json` wants
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
    registerReachability(app, daemon);

    const open = { security: [] };
    app.get("/health", { schema: { summary: "Liveness (no token needed)", tags: ["node"], ...open, response: { 200: S.Health } } }, async () => ({
      status: "ok" as const,
      version: this.#o.version,
      identity: daemon.identity,
      uptimeSeconds: Math.round((Date.now() - daemon.startedAt) / 1000),
    }));
    app.get(
      "/metrics",
      {
        schema: {
          summary: "Prometheus metrics: sessions, bytes, promises, settlements, errors",
          tags: ["node"],
          response: {
            200: { description: "Prometheus text exposition format 0.0.4 (not JSON)", content: { "text/plain; version=0.0.4": { schema: Type.String() } } },
            401: ErrorBody,
          },
        },
      },
      async (_req, reply) => {
        reply.header("content-type", daemon.metrics.registry.contentType);
        return daemon.metrics.metrics();
      },
    );

    // identities
    app.get(
      "/v1/identities",
      { schema: { summary: "Identities in the keystore", tags: ["identities"], response: { 200: S.IdentityList, ...errors(401, 502) } } },
      async () => ({
        identities: await daemon.identities(),
      }),
    );
    app.post(
      "/v1/identities",
      {
        schema: {
          summary: "Create an identity (keystore v3 file)",
          tags: ["identities"],
          body: S.NewIdentity,
          response: { 201: S.CreatedIdentity, ...errors(400, 401) },
        },
      },
      async (req, reply) => reply.status(201).send(await daemon.createIdentity(req.body.passphrase)),
    );
    app.post(
      "/v1/identities/import",
      {
        schema: {
          summary: "Import an identity from keystore v3 JSON (geth, ethers, MetaMask), checked with its passphrase",
          tags: ["identities"],
          body: S.ImportIdentity,
          response: { 201: S.CreatedIdentity, ...errors(400, 401, 403, 409, 422) },
        },
      },
      async (req, reply) => reply.status(201).send(await daemon.importIdentity(req.body)),
    );
    app.post(
      "/v1/identities/:address/export",
      {
        schema: {
          summary: "An identity's keystore v3 JSON, as stored or re-encrypted under a new passphrase",
          tags: ["identities"],
          params: S.AddressParams,
          body: S.ExportIdentity,
          response: { 200: S.ExportedIdentity, ...errors(400, 401, 403, 404) },
        },
      },
      async (req) => {
        const { passphrase, newPassphrase } = req.body;
        if (newPassphrase !== undefined && passphrase === undefined)
          throw new MystError("PASSPHRASE_REQUIRED", "re-encrypting an export needs the current passphrase too");
        return daemon.exportIdentity(req.params.address, newPassphrase === undefined ? undefined : { passphrase: passphrase!, newPassphrase });
      },
    );
    app.get(
      "/v1/identities/:address",
      {
        schema: {
          summary: "An identity: keystore, MYST balance, registration",
          tags: ["identities"],
          params: S.AddressParams,
          response: { 200: S.IdentityView, ...errors(400, 401, 502) },
        },
      },
      async (req) => daemon.showIdentity(req.params.address),
    );
    app.post(
      "/v1/identities/:address/registration",
      {
        schema: {
          summary: "Register an identity on chain (it pays the gas)",
          tags: ["identities"],
          params: S.AddressParams,
          body: S.RegisterBody,
          response: { 200: S.Registration, ...errors(400, 401, 403, 404, 422, 502) },
        },
      },
      async (req) => daemon.register(req.params.address, req.body),
    );

    // services
    app.get(
      "/v1/services",
      { schema: { summary: "Services this node sells", tags: ["services"], response: { 200: S.ServiceList, ...errors(401) } } },
      async () => ({ services: daemon.services() }),
    );
    app.post(
      "/v1/services",
      {
        schema: {
          summary: "Start selling a service (remembered across restarts)",
          tags: ["services"],
          body: S.StartServiceBody,
          response: { 201: S.ServiceView, ...errors(400, 401, 409, 422) },
        },
      },
      async (req, reply) => {
        // The spec is the body without the offer: its type, that type's settings, the controls.
        const { offer, ...spec } = req.body;
        return reply.status(201).send(await daemon.startService(spec, offerOf(offer)));
      },
    );
    app.delete(
      "/v1/services/:type",
      {
        schema: {
          summary: "Stop selling a service: its sessions end, its proposal is withdrawn",
          tags: ["services"],
          params: S.ServiceTypeParams,
          response: { 200: Type.Object({ type: Type.String(), stopped: Type.Boolean() }), ...errors(401, 404) },
        },
      },
      async (req) => daemon.stopService(req.params.type),
    );

    // proposals and the connection
    app.get(
      "/v1/proposals",
      {
        schema: {
          summary: "Search discovery (prices in wei)",
          tags: ["consumer"],
          querystring: S.ProposalQuery,
          response: { 200: S.ProposalPage, ...errors(400, 401, 502) },
        },
      },
      async (req) => {
        const { limit, cursor, ...filters } = req.query;
        return daemon.proposals(filters, { limit, cursor });
      },
    );
    app.get(
      "/v1/connection",
      {
        schema: {
          summary: "The connection: state, session, provider, bytes, duration",
          tags: ["consumer"],
          response: { 200: S.ConnectionView, ...errors(401) },
        },
      },
      async () => daemon.connection(),
    );
    app.put(
      "/v1/connection",
      {
        schema: {
          summary: "Connect to a provider (by id, or the cheapest matching the filters)",
          tags: ["consumer"],
          body: S.ConnectBody,
          response: { 201: S.ConnectionView, ...errors(400, 401, 404, 409, 422, 502, 504) },
        },
      },
      async (req, reply) => {
        const b = req.body;
        const wei = (v: string | undefined, name: string) => (v === undefined ? undefined : mystToWei(v, name).toString());
        const status = await daemon.connect({
          provider: b.provider,
          serviceType: b.serviceType,
          country: b.country,
          ipType: b.ipType,
          ipv6: b.ipv6,
          maxPricePerHourWei: wei(b.maxPricePerHour, "maxPricePerHour"),
          maxPricePerGiBWei: wei(b.maxPricePerGiB, "maxPricePerGiB"),
          netns: b.netns,
          killSwitch: b.killSwitch,
          allowLan: b.allowLan,
          reconnect: b.reconnect,
          confine: b.confine,
        });
        return reply.status(201).send(status);
      },
    );
    app.delete(
      "/v1/connection",
      { schema: { summary: "Disconnect; answers the session's final numbers", tags: ["consumer"], response: { 200: S.ConnectionView, ...errors(401, 409) } } },
      async () => daemon.disconnect(),
    );
    app.get(
      "/v1/connection/statistics",
      {
        schema: {
          summary: "Bytes, duration and payments of the current (or last) connection",
          tags: ["consumer"],
          response: { 200: S.Statistics, ...errors(401, 409) },
        },
      },
      async () => daemon.statistics(),
    );

    // history and money
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
      async (req) => ({
        sessions: daemon.sessions({ limit: req.query.limit, role: req.query.role }).map(sessionView),
      }),
    );
    app.get(
      "/v1/vault",
      { schema: { summary: "This node's vault: balance, escrow, pending exit", tags: ["payments"], response: { 200: S.Vault, ...errors(401, 502) } } },
      async () => daemon.vaultStatus(),
    );
    app.post(
      "/v1/vault/deposit",
      {
        schema: {
          summary: "Deposit MYST into the vault's balance and/or escrow (one token transferAndCall of exactly that sum); cancels the identity's pending exit",
          tags: ["payments"],
          body: S.DepositBody,
          response: { 200: S.DepositResult, ...errors(400, 401, 422, 502) },
        },
      },
      async (req) => daemon.deposit(mystToWei(req.body.amount ?? "0", "amount"), mystToWei(req.body.escrow ?? "0", "escrow")),
    );
    app.post(
      "/v1/vault/exit",
      {
        schema: {
          summary: "Start leaving the vault: providers may settle during the challenge period, then withdraw",
          tags: ["payments"],
          body: S.EmptyBody,
          response: { 200: S.ExitResult, ...errors(400, 401, 409, 422, 502) },
        },
      },
      async () => daemon.requestExit(),
    );
    app.post(
      "/v1/vault/withdrawal",
      {
        schema: {
          summary: "After the challenge period, take the vault's balance and escrow back",
          tags: ["payments"],
          body: S.EmptyBody,
          response: { 200: S.WithdrawalResult, ...errors(400, 401, 409, 422, 502) },
        },
      },
      async () => daemon.withdrawVault(),
    );
    app.get(
      "/v1/earnings",
      { schema: { summary: "What this provider was promised and settled", tags: ["payments"], response: { 200: S.Earnings, ...errors(401) } } },
      async () => daemon.earnings(),
    );
    app.post(
      "/v1/earnings/settlement",
      {
        schema: {
          summary: "Settle every pair with unsettled promises now (in batches), then pay the credited earnings out",
          tags: ["payments"],
          body: S.EmptyBody,
          response: { 200: S.Earnings, ...errors(400, 401, 502) },
        },
      },
      async () => daemon.settle(),
    );
    await app.ready();
    return app;
  }
}

/** The offer from a request body, with the CLI's defaults for what it leaves out. */
function offerOf(o: S.StartServiceBody["offer"]): OfferJson {
  return {
    country: (o?.country ?? "ZZ").toUpperCase(),
    ...(o?.city ? { city: o.city } : {}),
    ...(o?.asn !== undefined ? { asn: o.asn } : {}),
    ...(o?.isp ? { isp: o.isp } : {}),
    ipType: o?.ipType ?? "unknown",
    pricePerHourWei: mystToWei(o?.pricePerHour ?? DEFAULT_PRICE.perHour, "offer.pricePerHour").toString(),
    pricePerGiBWei: mystToWei(o?.pricePerGiB ?? DEFAULT_PRICE.perGiB, "offer.pricePerGiB").toString(),
    bandwidthMbps: o?.bandwidthMbps ?? 100,
  };
}
