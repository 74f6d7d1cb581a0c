import type { FastifyInstance } from "fastify";
import { Type } from "@fastify/type-provider-typebox";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Broker } from "../broker/broker";
import type { PublicKeyDirectory } from "../dialog/dialogs";
import { isMystError } from "../errors/MystError";
import { silentLogger, type Logger } from "../log/logger";
import { FilterError, parseFilter } from "../proposal/filter";
import { ProposalSchema, SignedProposalSchema, verifySignedProposal } from "../proposal/proposal";
import { DISCOVERY_SUBJECTS, verifyUnregister, type AnnounceReply } from "./announcements";
import { ProposalIndex, type UpsertResult } from "./index";
import { createJsonApp, ErrorBody } from "../http/app";

export interface DiscoveryServiceOptions {
  broker: Broker;
  directory: PublicKeyDirectory;
  host?: string;
  /** 0 picks a free port. Default 4050. */
  port?: number;
  /** A proposal not pinged for this long disappears. Default 90 s. */
  ttlMs?: number;
  /** Largest accepted request body. Default 16 KiB. */
  bodyLimit?: number;
  maxProposals?: number;
  /** Service types one provider may have in the index at once; more are refused (PROVIDER_LIMIT). Default 16. */
  maxServiceTypesPerProvider?: number;
  log?: Logger;
  version?: string;
}

const Item = Type.Object({ signed: SignedProposalSchema, proposal: ProposalSchema });
const Query = Type.Object(
  {
    service_type: Type.Optional(Type.String({ description: "e.g. openvpn" })),
    country: Type.Optional(Type.String({ description: "ISO 3166-1 alpha-2" })),
    ip_type: Type.Optional(Type.String({ description: "residential | hosting | mobile | business | education | unknown" })),
    ipv6: Type.Optional(Type.String({ description: "true: only providers whose tunnel carries IPv6" })),
    metering: Type.Optional(Type.String({ description: "hour | gib: only proposals that charge by that unit" })),
    max_price_per_hour: Type.Optional(Type.String({ description: "wei" })),
    max_price_per_gib: Type.Optional(Type.String({ description: "wei" })),
    min_bandwidth: Type.Optional(Type.String({ description: "Mbit/s" })),
    provider_id: Type.Optional(Type.Array(Type.String(), { description: "repeatable, or comma-separated" })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
    cursor: Type.Optional(Type.String({ maxLength: 256, description: "next_cursor of the previous page" })),
  },
  { additionalProperties: false },
);

const STATUS: Record<string, number> = {
  PROPOSAL_MALFORMED: 400,
  BAD_FILTER: 400,
  BAD_REQUEST: 400,
  BAD_SIGNATURE: 401,
  PROVIDER_UNREGISTERED: 403,
  PROPOSAL_EXPIRED: 422,
  PROPOSAL_FROM_FUTURE: 422,
  PROPOSAL_STALE: 409,
  PROPOSAL_WITHDRAWN: 409,
  PROVIDER_LIMIT: 429,
  INDEX_FULL: 503,
};

/**
 * The discovery service: a TTL'd index of signed proposals fed by NATS announcements and HTTP
 * posts, queried over HTTP. Replicas on the same NATS cluster each hear every announcement, and
 * republish what arrives over HTTP, so they converge on the same proposals.
 */
export class DiscoveryService {
  readonly index: ProposalIndex;
  readonly metrics = new Registry();
  readonly #o: DiscoveryServiceOptions;
  readonly #log: Logger;
  #app?: FastifyInstance;
  #subs: { unsubscribe(): void }[] = [];
  #sweeper?: NodeJS.Timeout;
  #url?: string;
  readonly #announcements = new Counter({ name: "myst_discovery_announcements_total", help: "announcements by source and result", labelNames: ["source", "result"], registers: [this.metrics] });
  readonly #queries = new Histogram({ name: "myst_discovery_query_seconds", help: "query handling time", buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1], registers: [this.metrics] });

  constructor(options: DiscoveryServiceOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.index = new ProposalIndex(options.ttlMs ?? 90_000, options.maxProposals, options.maxServiceTypesPerProvider);
    const index = this.index;
    new Gauge({
      name: "myst_discovery_proposals",
      help: "live proposals in the index",
      registers: [this.metrics],
      collect() {
        this.set(index.size);
      },
    });
  }

  /** The base URL, once started. */
  get url(): string {
    if (!this.#url) throw new Error("not started");
    return this.#url;
  }

  /** Verifies and indexes one signed proposal (from any source). */
  async ingest(input: unknown, source: "nats" | "http"): Promise<UpsertResult> {
    try {
      const { signed, proposal } = await verifySignedProposal(input, this.#o.directory);
      const result = this.index.upsert(signed, proposal);
      this.#announcements.inc({ source, result });
      return result;
    } catch (err) {
      const code = isMystError(err) ? err.code : "INTERNAL";
      this.#announcements.inc({ source, result: code });
      throw err;
    }
  }

  async start(): Promise<void> {
    const { broker } = this.#o;
    const reply = (respond: ((d: Uint8Array) => void) | undefined, body: AnnounceReply) => respond?.(Buffer.from(JSON.stringify(body)));
    const onAnnounce = async (data: Uint8Array, respond: ((d: Uint8Array) => void) | undefined) => {
      try {
        const result = await this.ingest(parseJson(data), "nats");
        reply(respond, { ok: true, result });
      } catch (err) {
        const { code, message } = describe(err);
        this.#log.info({ code, message }, "announcement rejected");
        reply(respond, { ok: false, code, message });
      }
    };
    this.#subs.push(broker.subscribe(DISCOVERY_SUBJECTS.register, (d, r) => void onAnnounce(d, r)));
    this.#subs.push(broker.subscribe(DISCOVERY_SUBJECTS.ping, (d, r) => void onAnnounce(d, r)));
    this.#subs.push(
      broker.subscribe(DISCOVERY_SUBJECTS.unregister, async (data, respond) => {
        try {
          const u = await verifyUnregister(parseJson(data), this.#o.directory);
          const removed = this.index.remove(u.provider, u.serviceType, u.at);
          this.#announcements.inc({ source: "nats", result: removed ? "unregistered" : "unregister-ignored" });
          reply(respond, { ok: true, result: removed ? "removed" : "ignored" });
        } catch (err) {
          reply(respond, { ok: false, ...describe(err) });
        }
      }),
    );
    await broker.flush();
    this.#sweeper = setInterval(() => this.index.sweep(), 1000).unref();

    const app = await this.#buildApp();
    this.#app = app;
    const address = await app.listen({ host: this.#o.host ?? "127.0.0.1", port: this.#o.port ?? 4050 });
    this.#url = address;
    this.#log.info({ url: address }, "discovery listening");
  }

  async stop(): Promise<void> {
    clearInterval(this.#sweeper);
    for (const s of this.#subs.splice(0)) s.unsubscribe();
    await this.#app?.close();
    this.#app = undefined;
  }

  async #buildApp(): Promise<FastifyInstance> {
    const app = await createJsonApp({
      title: "myst discovery",
      version: this.#o.version ?? "1",
      description: "Signed proposals of myst providers, with filters.",
      bodyLimit: this.#o.bodyLimit ?? 16 * 1024,
      statusOf: (code) => STATUS[code],
      log: this.#log,
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
      async (req) => {
        const end = this.#queries.startTimer();
        const { limit, cursor, ...filters } = req.query;
        const filter = parseFilter(filters as Record<string, string | string[]>);
        let after: string | undefined;
        if (cursor !== undefined) {
          after = Buffer.from(cursor, "base64url").toString("utf8");
          if (!/^0x[0-9a-f]{40}\/[a-z0-9-]+$/.test(after)) throw new FilterError(`cursor "${cursor}" is not one this service gave`);
        }
        const page = this.index.query(filter, limit ?? 100, after);
        end();
        return {
          proposals: page.entries.map((e) => ({ signed: e.signed, proposal: e.proposal })),
          next_cursor: page.next === null ? null : Buffer.from(page.next).toString("base64url"),
        };
      },
    );

    app.get(
      "/v1/proposals/:provider/:serviceType",
      {
        schema: {
          summary: "One provider's live proposal for a service type",
          params: Type.Object({ provider: Type.String({ pattern: "^0x[0-9a-fA-F]{40}$" }), serviceType: Type.String({ pattern: "^[a-z][a-z0-9-]{0,31}$" }) }),
          response: { 200: Item, 404: ErrorBody },
        },
      },
      async (req, reply) => {
        const entry = this.index.get(req.params.provider, req.params.serviceType);
        if (!entry) return reply.status(404).send({ code: "NOT_FOUND", message: `no live ${req.params.serviceType} proposal of ${req.params.provider}` });
        return { signed: entry.signed, proposal: entry.proposal };
      },
    );

    app.post(
      "/v1/proposals",
      {
        schema: {
          summary: "Announce a signed proposal (also forwarded to the other replicas over NATS)",
          body: SignedProposalSchema,
          response: { 200: Type.Object({ result: Type.String() }), 201: Type.Object({ result: Type.String() }), 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 409: ErrorBody, 413: ErrorBody, 422: ErrorBody },
        },
      },
      async (req, reply) => {
        const result = await this.ingest(req.body, "http");
        if (result !== "refreshed") this.#o.broker.publish(DISCOVERY_SUBJECTS.register, Buffer.from(JSON.stringify(req.body)));
        return reply.status(result === "added" ? 201 : 200).send({ result });
      },
    );

    app.get("/health", { schema: { summary: "Liveness", response: { 200: Type.Object({ status: Type.String(), proposals: Type.Integer(), broker: Type.String() }) } } }, async () => ({
      status: "ok",
      proposals: this.index.size,
      broker: this.#o.broker.status,
    }));

    app.get("/metrics", { schema: { summary: "Prometheus metrics", hide: false } }, async (_req, reply) => {
      reply.header("content-type", this.metrics.contentType);
      return this.metrics.metrics();
    });

    await app.ready();
    return app;
  }
}

function parseJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data).toString("utf8"));
  } catch {
    return undefined;
  }
}

function describe(err: unknown): { code: string; message: string } {
  if (isMystError(err)) return { code: err.code, message: err.message };
  return { code: "INTERNAL", message: "internal error" };
}
