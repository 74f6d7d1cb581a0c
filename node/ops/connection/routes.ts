import { errorResponses as errors, type JsonApp } from "../../http/app";
import type { Logger } from "../../log/logger";
import { toAddress } from "../../values/address";
import type { ConnectionOps } from "./connection";
import { filterOf, proposalQueryFilter } from "./filter";
import type { ProposalSearch } from "./proposals";
import * as S from "./schemas";

/** `/v1/proposals` and `/v1/connection…`: finding a provider, the connection. */
export function connectionRoutes(app: JsonApp, ops: { connection: ConnectionOps; proposals: ProposalSearch }, log: Logger): void {
  const tags = ["consumer"];
  app.get(
    "/v1/proposals",
    {
      schema: {
        summary: "Search discovery (the filter in MYST, camelCase; the old snake_case spelling in wei is deprecated)",
        tags,
        querystring: S.ProposalQuery,
        response: { 200: S.ProposalPage, ...errors(400, 401, 502) },
      },
    },
    async (req, reply) => {
      const { limit, cursor, ...query } = req.query;
      const { filter, deprecated } = proposalQueryFilter(query);
      if (deprecated.length) {
        log.warn({ keys: deprecated }, "GET /v1/proposals with the deprecated snake_case filter (removed in the next version)");
        reply.header("deprecation", "true");
      }
      return ops.proposals.search(filter, { limit, cursor });
    },
  );
  app.get(
    "/v1/connection",
    { schema: { summary: "The connection: state, session, provider, bytes, duration", tags, response: { 200: S.ConnectionView, ...errors(401) } } },
    async () => ops.connection.status(),
  );
  app.put(
    "/v1/connection",
    {
      schema: {
        summary: "Connect to a provider (by id, or the best match of the filters, falling over to the next when a stage fails; docs/quality.md)",
        tags,
        body: S.ConnectBody,
        response: { 201: S.ConnectionView, ...errors(400, 401, 404, 409, 422, 502, 504) },
      },
    },
    async (req, reply) => {
      const { provider, serviceType, netns, killSwitch, allowLan, reconnect, confine, listen, viaRelay, ...filter } = req.body;
      const status = await ops.connection.connect({
        ...(provider !== undefined ? { provider: toAddress(provider, "provider") } : {}),
        serviceType,
        filter: filterOf(filter),
        netns,
        killSwitch,
        allowLan,
        reconnect,
        confine,
        listen,
        viaRelay,
      });
      return reply.status(201).send(status);
    },
  );
  app.delete(
    "/v1/connection",
    {
      schema: {
        summary: "Disconnect (with every proxy connection beside it); answers the session's final numbers",
        tags,
        querystring: S.DisconnectQuery,
        response: { 200: S.ConnectionView, ...errors(400, 401, 409) },
      },
    },
    async (req) => ops.connection.disconnect(req.query.sessionId),
  );
  app.get(
    "/v1/connection/statistics",
    {
      schema: { summary: "Bytes, duration and payments of the current (or last) connection", tags, response: { 200: S.Statistics, ...errors(401, 409) } },
    },
    async () => ops.connection.statistics(),
  );
}
