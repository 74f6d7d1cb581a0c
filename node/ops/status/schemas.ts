import { Type } from "@sinclair/typebox";
import { Address } from "../../values/schemas";

/** The schema of the node's liveness route. */
export const Health = Type.Object({
  status: Type.Literal("ok"),
  version: Type.String(),
  identity: Type.Union([Address, Type.Null()], { description: "the node's identity (null: an offline node over an empty keystore)" }),
  uptimeSeconds: Type.Integer(),
});
