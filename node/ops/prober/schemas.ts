import { Type } from "@sinclair/typebox";
import { Address, Wei } from "../../values/schemas";

/** The schema of the prober routes (docs/quality.md "Probers"). */

export const ProbeRoundBody = Type.Object(
  {
    serviceTypes: Type.Array(Type.String({ pattern: "^[a-z][a-z0-9-]{0,31}$" }), { minItems: 1, maxItems: 8, description: "the service types to probe" }),
    sample: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: "providers probed per service type, drawn at random (default 5)" })),
    holdSeconds: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 300, description: "how long a working session is held at most, until its first invoice is paid (default 10)" }),
    ),
  },
  { additionalProperties: false },
);

export const ProbeRoundResult = Type.Object({
  startedAt: Type.String(),
  endedAt: Type.String(),
  probes: Type.Array(
    Type.Object({
      provider: Address,
      serviceType: Type.String(),
      reached: Type.Union([Type.String(), Type.Null()], { description: "the last stage passed" }),
      failed: Type.Union([Type.String(), Type.Null()], { description: "the stage that failed; null: every stage checked passed" }),
      promisedWei: { ...Wei, description: "paid to the provider in the probe session (its normal price)" },
      error: Type.Optional(Type.String()),
    }),
  ),
});
