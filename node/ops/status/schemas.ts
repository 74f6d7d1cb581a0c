import { Type } from "@sinclair/typebox";
import { Address } from "../../values/schemas";

/** The schema of the node's liveness route. */
export const Health = Type.Object({
  status: Type.Literal("ok"),
  version: Type.String(),
  identity: Type.Union([Address, Type.Null()], { description: "the node's identity (null: an offline node over an empty keystore)" }),
  uptimeSeconds: Type.Integer(),
});

/** One day of a provider's evidence. */
export const QualityDay = Type.Object({
  day: Type.String({ description: "YYYY-MM-DD (UTC)" }),
  receipts: Type.Integer(),
  receiptsFailed: Type.Integer({ description: "receipts that name a failed stage (or far too little bandwidth)" }),
  probes: Type.Integer(),
  probesFailed: Type.Integer(),
});

/** The provider's quality, recomputed by the node itself from the raw signed receipts discovery keeps (docs/quality.md). */
export const Quality = Type.Object({
  identity: Address,
  periodHours: Type.Integer({ description: "the period the receipts cover (discovery's retention)" }),
  services: Type.Array(
    Type.Object({
      serviceType: Type.String(),
      score: Type.Union([Type.Number(), Type.Null()], { description: "0–100 as recomputed here; null: unrated" }),
      discoveryScore: Type.Union([Type.Number(), Type.Null()], { description: "what discovery says (should equal score)" }),
      receipts: Type.Integer(),
      weighed: Type.Integer({ description: "receipts backed by a valid promise (the others weigh nothing)" }),
      successRate: Type.Union([Type.Number(), Type.Null()]),
      connectMs: Type.Union([Type.Number(), Type.Null()]),
      bandwidthRatio: Type.Union([Type.Number(), Type.Null()]),
      failures: Type.Array(
        Type.Object({ stage: Type.String(), receipts: Type.Integer(), consumers: Type.Integer(), weighed: Type.Integer(), weighedConsumers: Type.Integer() }),
      ),
      words: Type.Array(Type.String(), { description: "each failing stage in words, with what to check" }),
      probe: Type.Object(
        {
          score: Type.Union([Type.Number(), Type.Null()], {
            description: "the median of the probers' figures in the latest period with at least 3 probers; null: none yet (the score's prior is then 50)",
          }),
          periodHours: Type.Integer(),
          periodStart: Type.Union([Type.String(), Type.Null()], { description: "start of the period the probe score is from" }),
          probers: Type.Array(
            Type.Object({
              prober: Type.String(),
              probes: Type.Integer(),
              score: Type.Integer({ description: "its share of probes that passed every stage, 0–100" }),
            }),
          ),
          results: Type.Integer({ description: "probe results discovery holds about this service" }),
          counted: Type.Integer({ description: "of those, the ones backed by a valid promise of their prober's own" }),
          failures: Type.Array(Type.Object({ stage: Type.String(), probes: Type.Integer(), probers: Type.Integer() })),
          words: Type.Array(Type.String(), { description: "each stage the probers saw fail, in words, with what to check" }),
          periods: Type.Array(Type.Object({ start: Type.String(), score: Type.Union([Type.Number(), Type.Null()]), probers: Type.Integer() }), {
            description: "the probe score per period, oldest first",
          }),
        },
        { description: 'what independent probers saw (docs/quality.md "Probers")' },
      ),
      history: Type.Array(QualityDay, { description: "receipts and probe results per day (UTC), oldest first" }),
    }),
  ),
  rejected: Type.Integer({ description: "receipts and probe results discovery served that failed verification here (left out)" }),
});

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
