import { Type } from "@sinclair/typebox";
import type { NodeCore } from "../../daemon/core";
import { ErrorBody, type JsonApp } from "../../http/app";
import * as S from "./schemas";

/** `/health` (open) and `/metrics`: whether the node lives, and its Prometheus metrics. */
export function statusRoutes(app: JsonApp, core: NodeCore, version: string): void {
  const tags = ["node"];
  app.get("/health", { schema: { summary: "Liveness (no token needed)", tags, security: [], response: { 200: S.Health } } }, async () => ({
    status: "ok" as const,
    version,
    identity: core.identity,
    uptimeSeconds: Math.round((Date.now() - core.startedAt) / 1000),
  }));
  app.get(
    "/metrics",
    {
      schema: {
        summary: "Prometheus metrics: sessions, bytes, promises, settlements, errors",
        tags,
        response: {
          200: { description: "Prometheus text exposition format 0.0.4 (not JSON)", content: { "text/plain; version=0.0.4": { schema: Type.String() } } },
          401: ErrorBody,
        },
      },
    },
    async (_req, reply) => {
      reply.header("content-type", core.metrics.registry.contentType);
      return core.metrics.metrics();
    },
  );
}
