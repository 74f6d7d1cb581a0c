import { Type } from "@fastify/type-provider-typebox";
import type { MystNode } from "../ops/node";
import type { JsonApp } from "../http/app";
import { ErrorBody } from "../http/app";

/** How the node can be reached (node/nat, docs/reachability.md): the API's view of it. */
export const ReachabilityView = Type.Object(
  {
    /** "measured", "measuring" (the first measurement is under way) or "not-measured" (no STUN servers set, or no node running). */
    state: Type.Union([Type.Literal("measured"), Type.Literal("measuring"), Type.Literal("not-measured")]),
    /** In words a person understands. */
    summary: Type.String(),
    mapping: Type.Union([Type.Literal("none"), Type.Literal("endpoint-independent"), Type.Literal("endpoint-dependent"), Type.Literal("unknown")]),
    filtering: Type.String(),
    publicAddress: Type.Optional(Type.String()),
    /** What the node's proposals say: public addresses only. */
    contacts: Type.Array(
      Type.Object({
        kind: Type.Union([Type.Literal("public"), Type.Literal("mapped"), Type.Literal("punch-only")]),
        address: Type.String(),
        port: Type.Integer(),
        protocol: Type.Union([Type.Literal("udp"), Type.Literal("tcp")]),
      }),
    ),
    /** When it was measured (ms since the epoch). */
    measuredAt: Type.Optional(Type.Integer()),
    details: Type.Optional(
      Type.Object({
        localPort: Type.Integer(),
        portMapping: Type.Optional(
          Type.Object({
            advertised: Type.Boolean(),
            reason: Type.Optional(Type.String()),
            mapping: Type.Optional(
              Type.Object({
                method: Type.String(),
                gateway: Type.String(),
                externalAddress: Type.String(),
                externalPort: Type.Integer(),
                internalPort: Type.Integer(),
                protocol: Type.String(),
                lifetimeS: Type.Integer(),
              }),
            ),
          }),
        ),
        unanswered: Type.Array(Type.String()),
      }),
    ),
  },
  { additionalProperties: false },
);

/** GET /v1/reachability: what `myst status` and the dashboard show of it. */
export function registerReachability(app: JsonApp, daemon: MystNode): void {
  app.get(
    "/v1/reachability",
    {
      schema: {
        summary: "How this node can be reached: its NAT, its public contacts, in words",
        tags: ["node"],
        response: { 200: ReachabilityView, 401: ErrorBody },
      },
    },
    async () => daemon.reachability(),
  );
}
