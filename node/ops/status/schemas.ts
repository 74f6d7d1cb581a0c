import { Type } from "@sinclair/typebox";
import { Address } from "../../values/schemas";

/** The schema of the node's liveness route. */
export const Health = Type.Object({
  status: Type.Literal("ok"),
  version: Type.String(),
  identity: Type.Union([Address, Type.Null()], { description: "the node's identity (null: an offline node over an empty keystore)" }),
  uptimeSeconds: Type.Integer(),
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
    }),
  ),
  rejected: Type.Integer({ description: "receipts discovery served that failed verification here (left out)" }),
});
