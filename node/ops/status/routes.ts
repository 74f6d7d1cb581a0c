import { type Static, Type } from "@sinclair/typebox";
import type { NodeCore } from "../../daemon/core";
import { ErrorBody, type JsonApp } from "../../http/app";
import * as S from "./schemas";
import { MystError } from "../../errors/MystError";
import { DiscoveryClient } from "../../discovery/client";
import { promiseCheckOf } from "../../quality/score";
import { recomputeQuality } from "./quality";

/**
 * `/health` (open), `/metrics` and `/v1/reachability`: whether the node lives, its Prometheus
 * metrics, and how it can be reached (its NAT, its public contacts, in words: node/nat, docs/reachability.md).
 */
export function statusRoutes(app: JsonApp, core: NodeCore, version: string, reachability: () => Static<typeof S.ReachabilityView>): void {
  const tags = ["node"];
  app.get("/health", { schema: { summary: "Liveness (no token needed)", tags, security: [], response: { 200: S.Health } } }, async () => ({
    status: "ok" as const,
    version,
    identity: core.identity,
    uptimeSeconds: Math.round((Date.now() - core.startedAt) / 1000),
  }));
  app.get(
    "/v1/quality",
    {
      schema: {
        summary:
          "This provider's quality: its score per service type and each failing stage in words, recomputed here from the consumers' signed receipts that discovery keeps",
        tags,
        response: { 200: S.Quality, 401: ErrorBody, 422: ErrorBody, 502: ErrorBody },
      },
    },
    async () => {
      const identity = core.identity;
      if (!identity) throw new MystError("NO_IDENTITY", "this node has no identity yet: `myst identities new`");
      const { conn, registry } = await core.chain();
      const client = core.maybeOnline?.consumer.discovery ?? new DiscoveryClient(core.config.discoveryUrls, (id) => registry.publicKeyOf(id));
      const answer = await client.quality(identity);
      return recomputeQuality(answer, identity, registry, promiseCheckOf(conn.chainId, conn.deployment.contracts.ConsumerVault));
    },
  );
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
  app.get(
    "/v1/reachability",
    {
      schema: {
        summary: "How this node can be reached: its NAT, its public contacts, in words",
        tags,
        response: { 200: S.ReachabilityView, 401: ErrorBody },
      },
    },
    async () => reachability(),
  );
}
