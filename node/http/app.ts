import Fastify, { type FastifyError, type FastifyInstance, type FastifyBaseLogger, type RawServerDefault } from "fastify";
import type { IncomingMessage, ServerResponse } from "node:http";
import swagger from "@fastify/swagger";
import { Type, type TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { ERRORS, type ErrorCode } from "../errors/catalogue";
import { isMystError } from "../errors/MystError";
import type { Logger } from "../log/logger";
import { lazySchemas, type LazySchemas } from "./lazy-schemas";
import { openapiTo30 } from "./openapi-30";

/** A Fastify app whose routes are typed by their TypeBox schemas. */
export type JsonApp = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

const schemasOf = new WeakMap<object, LazySchemas>();

/** Compiles now every route schema of `app` not yet compiled (they are compiled at a route's first request); how many it compiled. */
export const compileAllSchemas = (app: JsonApp): number => schemasOf.get(app)?.compileAll() ?? 0;

/** The body of every error answer: a stable code to switch on and one line for people. */
export const ErrorBody = Type.Object({ code: Type.String(), message: Type.String() }, { $id: "Error" });

/** A route's error answers for its schema: `{code, message}` under each status. */
export const errorResponses = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorBody]));

export interface JsonAppOptions {
  title: string;
  version: string;
  description: string;
  /** Largest accepted request body, bytes. */
  bodyLimit: number;
  /** The HTTP status for an error code the app's own code raised (the catalogue's); unmapped codes get 422. */
  statusOf: (code: ErrorCode) => number | undefined;
  log: Logger;
  /** Security schemes for the OpenAPI document (applied to every route unless a route says otherwise). */
  security?: { schemes: Record<string, unknown>; apply: Record<string, string[]>[] };
  /** Told of every error answer (metrics). */
  onError?: (status: number, code: ErrorCode) => void;
  /**
   * Host names (without port) the server answers to; others get 421 BAD_HOST. Set for a local
   * API, so a web page that rebinds its own name to 127.0.0.1 cannot read it. Default: any.
   */
  allowedHosts?: string[];
}

/**
 * The HTTP plumbing the node's servers share (discovery, the daemon's API): JSON in and out,
 * schemas checked at the edge with unknown fields refused (not silently dropped), every error
 * answered as `{code, message}`, an OpenAPI document at `/openapi.json`.
 */
export async function createJsonApp(o: JsonAppOptions): Promise<JsonApp> {
  const schemas = lazySchemas();
  const app = Fastify({
    bodyLimit: o.bodyLimit,
    logger: false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array", useDefaults: true } },
    // Each route's schemas compiled at its first request, not at start (lazy-schemas.ts).
    schemaController: { compilersFactory: schemas.compilersFactory as never },
    // Errors the router meets before any hook runs: the same {code, message} as every other error.
    frameworkErrors: (err, _req, reply) => {
      const [status, code, message] =
        err.code === "FST_ERR_MAX_PARAM_LENGTH"
          ? [ERRORS.URI_TOO_LONG.status, "URI_TOO_LONG" as const, "a path parameter is too long"]
          : err.code === "FST_ERR_BAD_URL"
            ? [ERRORS.BAD_REQUEST.status, "BAD_REQUEST" as const, "the URL is malformed"]
            : [ERRORS.BAD_REQUEST.status, "BAD_REQUEST" as const, "the request cannot be routed"];
      o.onError?.(status, code);
      void (reply as unknown as { status(n: number): { send(b: unknown): unknown } }).status(status).send({ code, message });
    },
    // Errors Node's HTTP parser meets before a route sees the request get the same {code, message}.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable) return;
      const [status, code, message] =
        err.code === "HPE_HEADER_OVERFLOW"
          ? [ERRORS.HEADERS_TOO_LARGE.status, "HEADERS_TOO_LARGE" as const, "the request line and headers are too large"]
          : [ERRORS.BAD_REQUEST.status, "BAD_REQUEST" as const, "the request is not valid HTTP"];
      const body = JSON.stringify({ code, message });
      socket.end(
        `HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : "Bad Request"}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  schemasOf.set(app, schemas);
  // JSON only: Fastify's built-in text/plain parser would turn a text body into a schema error (400).
  app.removeContentTypeParser("text/plain");
  await app.register(swagger, {
    openapi: {
      info: { title: o.title, version: o.version, description: o.description },
      ...(o.security ? { components: { securitySchemes: o.security.schemes as never }, security: o.security.apply } : {}),
    },
    // TypeBox writes JSON Schema 2020-12; the document says 3.0.3, so its schemas are written in 3.0's forms.
    transformObject: (d) => openapiTo30("openapiObject" in d ? d.openapiObject : d.swaggerObject),
  });
  const answer = (reply: { status(n: number): { send(b: unknown): unknown } }, status: number, code: ErrorCode, message: string) => {
    o.onError?.(status, code);
    return reply.status(status).send({ code, message });
  };
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err.validation) {
      const v = err.validation[0];
      const extra = (v?.params as { additionalProperty?: string })?.additionalProperty;
      const where = err.validationContext === "querystring" ? "filter" : err.validationContext === "params" ? "path parameter" : "field";
      if (extra) return answer(reply, 400, err.validationContext === "querystring" ? "BAD_FILTER" : "BAD_REQUEST", `unknown ${where} "${extra}"`);
      const at = v?.instancePath ? `${err.validationContext}${v.instancePath.replace(/\//g, ".")}` : err.validationContext;
      return answer(reply, ERRORS.BAD_REQUEST.status, "BAD_REQUEST", `${at} ${v?.message ?? "is invalid"}`.replace(/\s+/g, " "));
    }
    switch (err.code) {
      case "FST_ERR_CTP_INVALID_JSON_BODY":
        return answer(reply, ERRORS.BAD_JSON.status, "BAD_JSON", "the body is not valid JSON");
      case "FST_ERR_CTP_EMPTY_JSON_BODY":
        return answer(reply, ERRORS.BAD_JSON.status, "BAD_JSON", "the body is empty; send a JSON object");
      case "FST_ERR_CTP_BODY_TOO_LARGE":
        return answer(reply, ERRORS.BODY_TOO_LARGE.status, "BODY_TOO_LARGE", `the body is larger than ${o.bodyLimit} bytes`);
      case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
        return answer(reply, ERRORS.UNSUPPORTED_MEDIA_TYPE.status, "UNSUPPORTED_MEDIA_TYPE", "send application/json");
    }
    const raw: unknown = err;
    if (isMystError(raw)) return answer(reply, o.statusOf(raw.code) ?? 422, raw.code, raw.message);
    if (err.statusCode && err.statusCode < 500) return answer(reply, err.statusCode, "BAD_REQUEST", err.message);
    o.log.error({ err }, "request failed");
    return answer(reply, ERRORS.INTERNAL.status, "INTERNAL", "internal error");
  });
  if (o.allowedHosts) {
    const allowed = new Set(o.allowedHosts.map((h) => h.toLowerCase()));
    app.addHook("onRequest", async (req, reply) => {
      const host = hostName(req.headers.host);
      if (!host || !allowed.has(host))
        return answer(reply, ERRORS.BAD_HOST.status, "BAD_HOST", `this server does not answer to host "${String(req.headers.host ?? "").slice(0, 64)}"`);
    });
  }
  // A POST or PUT without a body means "no fields": its schema still applies (and refuses what is required).
  app.addHook("preValidation", async (req) => {
    if (req.body === undefined && (req.method === "POST" || req.method === "PUT")) req.body = {};
  });
  app.setNotFoundHandler((req, reply) => answer(reply, ERRORS.NOT_FOUND.status, "NOT_FOUND", `no route ${req.method} ${req.url.split("?")[0]}`));
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  return app;
}

/** The host name of a Host header, lower-case, without port or IPv6 brackets. */
function hostName(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const h = header.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(1, h.indexOf("]") > 0 ? h.indexOf("]") : undefined);
  return h.split(":")[0];
}
