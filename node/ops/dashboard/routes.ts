import fs from "node:fs";
import path from "node:path";
import cookie from "@fastify/cookie";
import fastifyStatic from "@fastify/static";
import { Type } from "@fastify/type-provider-typebox";
import type { FastifyRequest } from "fastify";
import { PACKAGE_ROOT } from "../../config/config";
import { checkVisibleIp } from "../../daemon/visible-ip";
import { errorResponses as errors, type JsonApp } from "../../http/app";
import type { Logger } from "../../log/logger";
import { cookieName, DashboardError, sessionCookie, type DashboardLogins } from "./auth";
import { NodeEventStream, type WatchedNode } from "./events";
import * as D from "./schemas";

/** Where `npm run build` puts the dashboard (vite, from ui/). */
export const DASHBOARD_DIR = path.join(PACKAGE_ROOT, "dist", "ui");

const PAGE_PATHS = new Set(["/", "/consumer", "/index.html"]);

/**
 * Paths anyone may fetch: the page's own files (no data in them) and the login trade. Named one
 * by one, so a route added later is not public by accident.
 */
export function isDashboardPublic(req: FastifyRequest): boolean {
  const p = req.url.split("?")[0];
  if (p === "/v1/ui/session" && req.method === "POST") return true;
  return (req.method === "GET" || req.method === "HEAD") && (PAGE_PATHS.has(p) || /^\/assets\/[\w.-]+$/.test(p));
}

/**
 * The web dashboard on the API's port: its built files, the login (a one-time link traded for a
 * cookie), the event stream `/v1/events` the page follows, and the few reads only the dashboard
 * needed (live provider sessions, earnings per day, health and visibility, the visible IP).
 */
export async function registerDashboard(app: JsonApp, o: DashboardOptions): Promise<void> {
  await pageRoutes(app);
  loginRoutes(app, o);
  eventRoutes(app, o);
  readRoutes(app, o.daemon);
}

interface DashboardOptions {
  daemon: WatchedNode;
  logins: DashboardLogins;
  baseUrl: () => string;
  log: Logger;
}

/** The page's own files, and the headers that keep other pages from framing or driving it. */
async function pageRoutes(app: JsonApp): Promise<void> {
  await app.register(cookie);
  // The page loads only its own files and talks only to its own origin; no other page may frame it
  // (a page on the same site could, and the browser would send the cookie to the frame).
  app.addHook("onSend", async (_req, reply) => {
    reply.header(
      "content-security-policy",
      "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
    );
    reply.header("x-frame-options", "DENY");
    reply.header("x-content-type-options", "nosniff");
    reply.header("referrer-policy", "no-referrer");
  });
  if (fs.existsSync(path.join(DASHBOARD_DIR, "index.html"))) {
    // One route per built file (no wildcard route: unknown paths keep the API's own 404 and 414 answers).
    await app.register(fastifyStatic, { root: DASHBOARD_DIR, prefix: "/", index: ["index.html"], wildcard: false, cacheControl: false });
    app.get("/consumer", { schema: { hide: true } }, (_req, reply) => reply.sendFile("index.html"));
  } else {
    app.get("/", { schema: { hide: true } }, async () => {
      throw new DashboardError("DASHBOARD_NOT_BUILT", `the dashboard is not built (no ${DASHBOARD_DIR}/index.html): run npm run build`);
    });
  }
}

/** The login: a one-time link traded for a session cookie, and the logout. */
function loginRoutes(app: JsonApp, o: DashboardOptions): void {
  const { daemon, logins } = o;
  app.post(
    "/v1/ui/login-link",
    {
      schema: {
        summary: "A one-time login link for the dashboard (valid 10 minutes, used once)",
        tags: ["dashboard"],
        body: D.EmptyBody,
        response: { 200: D.LoginLink, ...errors(400, 401, 403) },
      },
    },
    async () => {
      const { code, expiresAt } = logins.issue();
      return { url: `${o.baseUrl()}/#login=${code}`, expiresAt };
    },
  );
  app.post(
    "/v1/ui/session",
    {
      schema: {
        summary: "Trade a login link's code for a session cookie (HttpOnly, SameSite=Strict)",
        tags: ["dashboard"],
        security: [],
        body: D.LoginBody,
        response: { 200: D.LoginResult, ...errors(400, 401, 403) },
      },
    },
    async (req, reply) => {
      const session = logins.redeem(req.body.code);
      reply.setCookie(cookieName(req), session, { httpOnly: true, sameSite: "strict", path: "/" });
      return { identity: daemon.core.identity ?? "" };
    },
  );
  app.delete(
    "/v1/ui/session",
    { schema: { summary: "Log the dashboard out", tags: ["dashboard"], response: { 200: Type.Object({ loggedOut: Type.Boolean() }), ...errors(401, 403) } } },
    async (req, reply) => {
      logins.end(sessionCookie(req));
      reply.clearCookie(cookieName(req), { path: "/" });
      return { loggedOut: true };
    },
  );
}

/** `/v1/events`: the node's state as it changes (event stream). */
function eventRoutes(app: JsonApp, o: DashboardOptions): void {
  const stream = new NodeEventStream(o.daemon, o.log);
  app.addHook("preClose", async () => stream.close());
  app.get(
    "/v1/events",
    {
      schema: {
        summary: "Server-sent events: the node's state as it changes",
        description: D.EVENTS_DESCRIPTION,
        tags: ["dashboard"],
        querystring: D.EventsQuery,
        response: {
          200: { description: "text/event-stream", content: { "text/event-stream": { schema: Type.String() } } },
          ...errors(400, 401, 403),
        },
      },
    },
    async (req, reply) => {
      reply.hijack();
      const { days, utcOffsetMinutes, topics } = req.query;
      stream.follow(req.raw, reply.raw, { days, utcOffsetMinutes, topics, lastEventId: req.headers["last-event-id"] });
    },
  );
}

/** The few reads only the dashboard needed: live provider sessions, earnings per day, health and visibility, the visible IP. */
function readRoutes(app: JsonApp, daemon: WatchedNode): void {
  const activity = () => daemon.core.online().activity;
  app.get(
    "/v1/provider/sessions",
    {
      schema: {
        summary: "Provider sessions running now: consumer, service, duration, bytes, earned",
        tags: ["dashboard"],
        response: { 200: D.LiveSessions, ...errors(401, 403) },
      },
    },
    async () => ({ sessions: activity().liveSessions() }),
  );
  app.get(
    "/v1/earnings/daily",
    {
      schema: {
        summary: "Earnings per calendar day; a session spanning midnight is split across the days",
        tags: ["dashboard"],
        querystring: D.DailyQuery,
        response: { 200: D.DailyEarnings, ...errors(400, 401, 403) },
      },
    },
    async (req) => ({
      utcOffsetMinutes: req.query.utcOffsetMinutes,
      days: activity().daily(req.query.days, req.query.utcOffsetMinutes),
      ...(await activity().settlementFees()),
    }),
  );
  app.get(
    "/v1/node/health",
    {
      schema: {
        summary: "NATS, chain, discovery and registration, and whether discovery lists each proposal now (with the reasons when not)",
        tags: ["dashboard"],
        response: { 200: D.NodeHealth, ...errors(401, 403) },
      },
    },
    async () => ({ ...(await activity().health()), notes: activity().notes() }),
  );
  app.get(
    "/v1/connection/visible-ip",
    {
      schema: {
        summary: "The IP address the internet sees (asks the configured ipCheckUrl; from inside `netns` when given)",
        tags: ["consumer"],
        querystring: D.VisibleIpQuery,
        response: { 200: D.VisibleIp, ...errors(400, 401, 403, 502) },
      },
    },
    async (req) => checkVisibleIp(daemon.core.config.ipCheckUrl, req.query.netns),
  );
}
