import { Type } from "@sinclair/typebox";
import { Address, SessionPath, Strict, Wei } from "../../values/schemas";

/** The schemas of the session history route. */

export const SessionQuery = Type.Object(
  { limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }), role: Type.Optional(Type.Union([Type.Literal("provider"), Type.Literal("consumer")])) },
  Strict,
);
export const SessionList = Type.Object({
  sessions: Type.Array(
    Type.Object({
      id: Type.String(),
      role: Type.String(),
      peer: Address,
      serviceType: Type.String(),
      startedAt: Type.String(),
      endedAt: Type.Union([Type.String(), Type.Null()]),
      endReason: Type.Union([Type.String(), Type.Null()]),
      bytes: Type.Integer(),
      promisedWei: Wei,
      path: SessionPath,
    }),
  ),
});
