import { type Static, Type } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Registry } from "prom-client";
import { discoveryStatusOf } from "../errors/catalogue";
import { MystError } from "../errors/MystError";
import { createJsonApp, ErrorBody } from "../http/app";
import type { Logger } from "../log/logger";
import { FilterError, parseFilter, type ProposalFilter } from "../proposal/filter";
import { ProposalSchema, SignedProposalSchema } from "../proposal/proposal";
import { Address } from "../values/schemas";
import type { ProposalIndex, UpsertResult } from "./index";
import type { QualityBook } from "./quality";
import { QualityReadLimitedError, type QualityReadLimits, QualityReads } from "./quality-reads";
import { rankedKeeperOf } from "./ranked-keeper";

/** Asked of a replica that is still loading the shared index: it answers once it is warm. */
export class DiscoveryNotReadyError extends MystError {
  constructor(loaded: number) {
    super("NOT_READY", `discovery is loading the index (${loaded} proposals so far); ask another replica or retry`);
  }
}

/** What `/health` says beside the status and the count. */
export interface DiscoveryHealth {
  broker: string;
  store: "ok" | "refilling";
  store_event?: string;
}

/** The replica as its HTTP API sees it. */
export interface DiscoveryReplicaView {
  readonly ready: boolean;
  readonly index: ProposalIndex;
  /** Receipts and scores (docs/quality.md). */
  readonly quality: QualityBook;
  /** Takes a signed receipt posted over HTTP. */
  postReceipt(body: unknown): Promise<"stored" | "duplicate">;
  /** Takes a prober's signed probe result posted over HTTP. */
  postProbe(body: unknown): Promise<"stored" | "duplicate">;
  readonly metrics: Registry;
  /** Verifies and writes a posted proposal (and tells the other replicas when the store is not shared). */
  post(body: unknown): Promise<UpsertResult>;
  health(): DiscoveryHealth;
  /** Starts timing a query; the returned function ends it. */
  queryTimer(): () => void;
}

export interface DiscoveryHttpOptions {
  version?: string;
  bodyLimit?: number;
  /** What `GET /v1/quality/{provider}` may cost (quality-reads.ts). */
  qualityReads?: QualityReadLimits;
  log: Logger;
}

const QualityOfItem = Type.Object(
  {
    score: Type.Union([Type.Number(), Type.Null()], { description: "0–100, null: unrated (no receipt backed by a promise yet)" }),
    receipts: Type.Integer(),
  },
  { description: "discovery's quality score of the provider's service (docs/quality.md); recompute it from GET /v1/quality/{provider}" },
);
const Item = Type.Object({ signed: SignedProposalSchema, proposal: ProposalSchema, quality: Type.Optional(QualityOfItem) });
const SignedReceiptBody = Type.Object(
  { receipt: Type.String({ maxLength: 1024 }), signature: Type.String({ pattern: "^0x[0-9a-fA-F]{128}$" }) },
  { additionalProperties: false },
);
const Query = Type.Object(
  {
    service_type: Type.Optional(Type.String({ description: "e.g. openvpn" })),
    country: Type.Optional(Type.String({ description: "ISO 3166-1 alpha-2" })),
    ip_type: Type.Optional(Type.String({ description: "residential | hosting | mobile | business | education | unknown" })),
    ipv6: Type.Optional(Type.String({ description: "true: only providers whose tunnel carries IPv6" })),
    metering: Type.Optional(Type.String({ description: "hour | gib: only proposals that charge by that unit" })),
    access_policy: Type.Optional(Type.String({ description: "open: only proposals anyone may use | allowlist: only those restricted to an allow list" })),
    max_price_per_hour: Type.Optional(Type.String({ description: "wei" })),
    max_price_per_gib: Type.Optional(Type.String({ description: "wei" })),
    min_bandwidth: Type.Optional(Type.String({ description: "Mbit/s" })),
    provider_id: Type.Optional(Type.Array(Type.String(), { description: "repeatable, or comma-separated" })),
    min_quality: Type.Optional(Type.String({ description: "0–100: leave out rated providers scoring below it (unrated ones stay)" })),
    sort: Type.Optional(Type.String({ description: "quality: best score first, unrated providers at the neutral 50" })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
    cursor: Type.Optional(Type.String({ maxLength: 256, description: "next_cursor of the previous page" })),
  },
  { additionalProperties: false },
);

/**
 * Discovery's HTTP API (Fastify): proposals with filters and cursors, one proposal, posting one,
 * `/health`, `/ready` for load balancers, Prometheus `/metrics`, and the OpenAPI document.
 */
export async function buildDiscoveryApp(replica: DiscoveryReplicaView, o: DiscoveryHttpOptions): Promise<FastifyInstance> {
  const app = await createJsonApp({
    title: "myst discovery",
    version: o.version ?? "1",
    description: "Signed proposals of myst providers, with filters.",
    bodyLimit: o.bodyLimit ?? 16 * 1024,
    statusOf: discoveryStatusOf, // the catalogue's (errors/catalogue.ts)
    log: o.log,
  });

  app.get(
    "/v1/proposals",
    {
      schema: {
        summary: "Search live proposals",
        querystring: Query,
        response: { 200: Type.Object({ proposals: Type.Array(Item), next_cursor: Type.Union([Type.String(), Type.Null()]) }), 400: ErrorBody },
      },
    },
    async (req, reply) => {
      if (!replica.ready) throw new DiscoveryNotReadyError(replica.index.size);
      const end = replica.queryTimer();
      const { limit, cursor, ...filters } = req.query;
      const filter = parseFilter(filters as Record<string, string | string[]>);
      let after: string | undefined;
      const ranked = filter.sort === "quality" || filter.minQuality !== undefined;
      if (cursor !== undefined) {
        after = Buffer.from(cursor, "base64url").toString("utf8");
        const form = ranked ? /^q:[0-9]{1,9}$/ : /^0x[0-9a-f]{40}\/[a-z0-9-]+$/;
        if (!form.test(after)) throw new FilterError(`cursor "${cursor}" is not one this service gave`);
      }
      const page = ranked ? rankedPage(replica, filter, limit ?? 100, after) : replica.index.querySlots(filter, limit ?? 100, after);
      // Written from the stored texts: the proposals are not parsed and re-serialized, nor copied into strings, per query.
      const body = pageBody(replica, page);
      end();
      // The typed reply wants the object; the schema still documents it (OpenAPI), the text is the same JSON.
      return reply.type("application/json; charset=utf-8").send(body as never);
    },
  );

  app.get(
    "/v1/proposals/:provider/:serviceType",
    {
      schema: {
        summary: "One provider's live proposal for a service type",
        params: Type.Object({ provider: Address, serviceType: Type.String({ pattern: "^[a-z][a-z0-9-]{0,31}$" }) }),
        response: { 200: Item, 404: ErrorBody },
      },
    },
    async (req, reply) => {
      if (!replica.ready) throw new DiscoveryNotReadyError(replica.index.size);
      const entry = replica.index.get(req.params.provider, req.params.serviceType);
      if (!entry) return reply.status(404).send({ code: "NOT_FOUND", message: `no live ${req.params.serviceType} proposal of ${req.params.provider}` });
      return { signed: entry.signed, proposal: entry.proposal };
    },
  );

  app.post(
    "/v1/proposals",
    {
      schema: {
        summary: "Announce a signed proposal (written to the shared index every replica serves)",
        body: SignedProposalSchema,
        response: {
          200: Type.Object({ result: Type.String() }),
          201: Type.Object({ result: Type.String() }),
          400: ErrorBody,
          401: ErrorBody,
          403: ErrorBody,
          409: ErrorBody,
          413: ErrorBody,
          422: ErrorBody,
        },
      },
    },
    async (req, reply) => {
      if (!replica.ready) throw new DiscoveryNotReadyError(replica.index.size);
      const result = await replica.post(req.body);
      return reply.status(result === "added" ? 201 : 200).send({ result });
    },
  );

  // A consumer's session receipt and a prober's probe result: one signed shape, two kinds (docs/quality.md).
  const evidence: { url: string; summary: string; take: (body: Static<typeof SignedReceiptBody>) => Promise<string> }[] = [
    { url: "/v1/receipts", summary: "Take a consumer's signed session receipt (docs/quality.md)", take: (body) => replica.postReceipt(body) },
    {
      url: "/v1/probes",
      summary: "Take a prober's signed probe result (docs/quality.md \"Probers\"): a receipt's fields under the version myst-probe/1",
      take: (body) => replica.postProbe(body),
    },
  ];
  for (const { url, summary, take } of evidence)
    app.post(
      url,
      {
        schema: {
          summary,
          body: SignedReceiptBody,
          response: {
            200: Type.Object({ result: Type.String() }),
            201: Type.Object({ result: Type.String() }),
            400: ErrorBody,
            401: ErrorBody,
            403: ErrorBody,
            413: ErrorBody,
            429: ErrorBody,
          },
        },
      },
      async (req, reply) => {
        if (!replica.ready) throw new DiscoveryNotReadyError(replica.index.size);
        const result = await take(req.body);
        return reply.status(result === "stored" ? 201 : 200).send({ result });
      },
    );

  const reads = new QualityReads(replica.quality, o.qualityReads);
  app.get(
    "/v1/quality/:provider",
    {
      schema: {
        summary:
          "A provider's quality: its score per service type (receipts pulled toward the probers' median), the failing stages in words, and the raw signed receipts and probe results to recompute it",
        params: Type.Object({ provider: Address }),
        querystring: Type.Object({ service_type: Type.Optional(Type.String({ pattern: "^[a-z][a-z0-9-]{0,31}$" })) }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            provider: Type.String(),
            periodHours: Type.Integer(),
            probePeriodHours: Type.Integer({ description: "the probers' period: one median of their figures per period" }),
            minProbers: Type.Integer({ description: "the fewest distinct probers a period's median needs" }),
            reports: Type.Array(Type.Object({}, { additionalProperties: true })),
            receipts: Type.Array(Type.Object({ serviceType: Type.String(), signed: SignedReceiptBody })),
            probes: Type.Array(Type.Object({ serviceType: Type.String(), signed: SignedReceiptBody }), {
              description: "probers' signed probe results (myst-probe/1), newest first",
            }),
          }),
          429: ErrorBody,
        },
      },
    },
    async (req, reply) => {
      if (!replica.ready) throw new DiscoveryNotReadyError(replica.index.size);
      const q = replica.quality;
      const provider = req.params.provider.toLowerCase();
      const types = req.query.service_type ? [req.query.service_type] : q.serviceTypes(provider);
      const periodHours = q.periodHours;
      const evidence = await boundedEvidence(reads, req.ip, provider, req.query.service_type, reply);
      return {
        provider,
        periodHours,
        probePeriodHours: Math.round(q.probeParams.periodMs / 3_600_000),
        minProbers: q.probeParams.minProbers,
        reports: types.map((t) => q.report(provider, t, periodHours)) as unknown as Record<string, unknown>[],
        receipts: evidence.receipts,
        probes: evidence.probes,
      };
    },
  );

  app.get(
    "/health",
    {
      schema: {
        summary: 'Liveness: "loading" with the count so far until the whole index is loaded, then "ok"',
        response: {
          200: Type.Object({
            status: Type.Union([Type.Literal("ok"), Type.Literal("loading")]),
            proposals: Type.Integer(),
            broker: Type.String(),
            store: Type.Union([Type.Literal("ok"), Type.Literal("refilling")], {
              description: '"refilling" for one TTL after someone purged the store or deleted its stream (the replica made it again)',
            }),
            store_event: Type.Optional(Type.String()),
          }),
        },
      },
    },
    async () => ({
      status: replica.ready ? ("ok" as const) : ("loading" as const),
      proposals: replica.index.size,
      ...replica.health(),
    }),
  );

  app.get(
    "/ready",
    {
      schema: {
        summary: "Readiness for load balancers: 200 once the whole index is loaded, 503 NOT_READY before",
        response: { 200: Type.Object({ status: Type.Literal("ready"), proposals: Type.Integer() }), 503: ErrorBody },
      },
    },
    async () => {
      if (!replica.ready) throw new DiscoveryNotReadyError(replica.index.size);
      return { status: "ready" as const, proposals: replica.index.size };
    },
  );

  app.get("/metrics", { schema: { summary: "Prometheus metrics", hide: false } }, async (_req, reply) => {
    reply.header("content-type", replica.metrics.contentType);
    return replica.metrics.metrics();
  });

  await app.ready();
  return app;
}

/**
 * A provider's raw evidence for `client`: each answer not cached reads the provider's records from the
 * store's disk, so it is bounded per client address and in reads at once (quality-reads.ts); a refusal
 * carries Retry-After.
 */
async function boundedEvidence(reads: QualityReads, address: string, provider: string, serviceType: string | undefined, reply: FastifyReply) {
  let client: string | undefined;
  try {
    client = reads.admit(address);
    return await reads.evidence(provider, serviceType, client);
  } catch (err) {
    if (err instanceof QualityReadLimitedError) {
      reply.header("retry-after", String(err.retryAfterS));
      // Refused for the reads in progress, not by its own rate: the client keeps its token.
      if (client !== undefined) reads.refund(client);
    }
    throw err;
  }
}

/**
 * A page of proposals ranked by quality (best first; unrated at the neutral score, so a new provider
 * is neither hidden nor first), rated ones below `minQuality` left out; the cursor is an offset.
 */
function rankedPage(replica: DiscoveryReplicaView, filter: ProposalFilter, limit: number, after?: string): { slots: number[]; next: string | null } {
  const q = replica.quality;
  const offset = after ? Number(after.slice(2)) : 0;
  const min = filter.minQuality;
  const page =
    filter.sort === "quality"
      ? // Walk the replica's ranked order, kept up to date off the query path (ranked-keeper.ts).
        replica.index.rankedPage(
          rankedKeeperOf(replica.index, q).order(),
          filter,
          limit,
          offset,
          (score) => min === undefined || score === null || score >= min,
        )
      : replica.index.filteredPage(filter, limit, offset, (provider, serviceType) => {
          if (min === undefined) return true;
          const score = q.rated(provider, serviceType)?.score;
          return score == null || score >= min;
        });
  return { slots: page.slots, next: page.more ? `q:${offset + limit}` : null };
}

/** The page's JSON, each proposal with discovery's score of it (written from the index's columns: page-json.ts). */
function pageBody(replica: DiscoveryReplicaView, page: { slots: number[]; next: string | null }): Buffer {
  const next = page.next === null ? null : Buffer.from(page.next).toString("base64url");
  return replica.index.pageJson(
    page.slots,
    (key) => {
      const s = replica.quality.rated(key.slice(0, 42), key.slice(43));
      return { score: s?.score ?? null, receipts: s?.receipts ?? 0 };
    },
    next,
  );
}
