import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";

/**
 * What a relay hands its consumer in `accepted` (the session's service config): where its TURN
 * server listens, and a TURN REST-API credential (RFC 8656's long-term credential, coturn's
 * `use-auth-secret`: username `expiry:sessionId`, password base64(HMAC-SHA1(secret, username)))
 * that lets its holder allocate until `expiry` (unix seconds). Only a paid session gets one.
 */
export const RelayServiceConfigSchema = Type.Object(
  {
    servers: Type.Array(
      Type.Object(
        {
          address: Type.String({ maxLength: 39, pattern: "^[0-9a-fA-F.:]+$" }),
          port: Type.Integer({ minimum: 1, maximum: 65535 }),
          transport: Type.Union([Type.Literal("udp"), Type.Literal("tcp")]),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 4 },
    ),
    username: Type.String({ pattern: "^[0-9]{1,12}:[0-9a-f]{32}$" }),
    password: Type.String({ pattern: "^[A-Za-z0-9+/=]{1,64}$" }),
    realm: Type.String({ pattern: "^[A-Za-z0-9.-]{1,64}$" }),
    expiresAt: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type RelayServiceConfig = Static<typeof RelayServiceConfigSchema>;
export const checkRelayServiceConfig = TypeCompiler.Compile(RelayServiceConfigSchema);
