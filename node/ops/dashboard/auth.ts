import crypto from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { MystError } from "../../errors/MystError";

export type DashboardErrorCode = "LOGIN_LINK_INVALID" | "BAD_ORIGIN" | "DASHBOARD_NOT_BUILT";

export class DashboardError extends MystError<DashboardErrorCode> {}

/** How long a login link can be used (once). */
export const LOGIN_LINK_TTL_MS = 10 * 60_000;
/** A dashboard session ends after this long without a request. */
export const SESSION_IDLE_MS = 12 * 60 * 60_000;
const MAX_LINKS = 16;
const MAX_SESSIONS = 32;

/**
 * The dashboard's logins: one-time links (`myst ui`, and the daemon at start) traded for a session
 * cookie. Both live in memory only: a daemon restart logs every page out, and nothing secret is
 * written to disk beside the API token. The cookie is HttpOnly (page scripts cannot read it) and
 * SameSite=Strict (another site's page cannot make the browser send it); its name carries the
 * API's port, since cookies do not tell ports apart and two daemons may run on one machine.
 */
export class DashboardLogins {
  readonly #links = new Map<string, number>();
  readonly #sessions = new Map<string, number>();

  /** A fresh one-time login code (put after `#login=` in the page's URL). */
  issue(now = Date.now()): { code: string; expiresAt: string } {
    this.#sweep(now);
    while (this.#links.size >= MAX_LINKS) this.#links.delete(this.#links.keys().next().value!);
    const code = crypto.randomBytes(24).toString("base64url");
    this.#links.set(hash(code), now + LOGIN_LINK_TTL_MS);
    return { code, expiresAt: new Date(now + LOGIN_LINK_TTL_MS).toISOString() };
  }

  /** Trades a login code for a session id; the code is spent either way. */
  redeem(code: string, now = Date.now()): string {
    this.#sweep(now);
    const key = hash(code);
    const expires = this.#links.get(key);
    this.#links.delete(key);
    if (expires === undefined || expires < now)
      throw new DashboardError("LOGIN_LINK_INVALID", "this login link was used already or has expired: run `myst ui` for a new one");
    while (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
    const session = crypto.randomBytes(32).toString("base64url");
    this.#sessions.set(hash(session), now + SESSION_IDLE_MS);
    return session;
  }

  /** Whether a session id is live; a live one is extended. */
  valid(session: string | undefined, now = Date.now()): boolean {
    if (!session) return false;
    const key = hash(session);
    const expires = this.#sessions.get(key);
    if (expires === undefined || expires < now) {
      this.#sessions.delete(key);
      return false;
    }
    this.#sessions.set(key, now + SESSION_IDLE_MS);
    return true;
  }

  end(session: string | undefined): void {
    if (session) this.#sessions.delete(hash(session));
  }

  #sweep(now: number): void {
    for (const [k, t] of this.#links) if (t < now) this.#links.delete(k);
    for (const [k, t] of this.#sessions) if (t < now) this.#sessions.delete(k);
  }
}

/** Stored hashed, compared by lookup of the hash: a timing difference reveals nothing of a code. */
function hash(secret: string): string {
  return crypto.createHash("sha256").update(secret).digest("base64url");
}

/** The session cookie's name for the API on the port this request came to. */
export function cookieName(req: FastifyRequest): string {
  const port = /:(\d{1,5})$/.exec(req.headers.host ?? "")?.[1] ?? "80";
  return `myst_ui_${port}`;
}

/** The dashboard session id this request carries, if any (read from the header: hooks may run before the cookie plugin's). */
export function sessionCookie(req: FastifyRequest): string | undefined {
  const name = cookieName(req);
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [k, v] = part.trim().split("=");
    if (k === name && v) return v;
  }
  return undefined;
}

/**
 * Another site must not drive the API from a browser: a request that says where it comes from
 * (`Origin`, `Sec-Fetch-Site`) must come from the node's own page. The CLI and scripts send
 * neither and are checked by their token. (Host was checked before, against the API's names.)
 */
export function foreignOrigin(req: FastifyRequest): string | undefined {
  const origin = req.headers.origin;
  // https: the same host behind a TLS proxy.
  if (origin !== undefined && origin !== `http://${req.headers.host}` && origin !== `https://${req.headers.host}`) return origin;
  const site = req.headers["sec-fetch-site"];
  if (site !== undefined && site !== "same-origin" && site !== "none") return `a ${site} page`;
  return undefined;
}

export function refuseOrigin(reply: FastifyReply, origin: string): FastifyReply {
  return reply.status(403).send({ code: "BAD_ORIGIN", message: `requests from ${origin.slice(0, 80)} are refused: use the node's own dashboard` });
}
