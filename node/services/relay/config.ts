import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { FINGERPRINT_PATTERN } from "../certificate";

/** How a consumer reaches a relay's TURN server: UDP, TCP, or TLS over TCP (TURN over TLS, RFC 8656 §3.1). */
export type RelayTransport = "udp" | "tcp" | "tls";

/**
 * What a relay hands its consumer in `accepted` (the session's service config): where its TURN
 * server listens, and a TURN REST-API credential (RFC 8656's long-term credential, coturn's
 * `use-auth-secret`: username `expiry:sessionId`, password base64(HMAC-SHA1(secret, username)))
 * that lets its holder allocate until `expiry` (unix seconds). Only a paid session gets one.
 * A `tls` server comes with the relay's self-signed certificate and its fingerprint, which the
 * consumer pins (no CA): only to a consumer that said it speaks TLS (`RelayConsumerData`), so an
 * older consumer, whose schema knows only UDP and TCP, still gets a config it takes.
 */
export const RelayServiceConfigSchema = Type.Object(
  {
    servers: Type.Array(
      Type.Object(
        {
          address: Type.String({ maxLength: 39, pattern: "^[0-9a-fA-F.:]+$" }),
          port: Type.Integer({ minimum: 1, maximum: 65535 }),
          transport: Type.Union([Type.Literal("udp"), Type.Literal("tcp"), Type.Literal("tls")]),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 4 },
    ),
    username: Type.String({ pattern: "^[0-9]{1,12}:[0-9a-f]{32}$" }),
    password: Type.String({ pattern: "^[A-Za-z0-9+/=]{1,64}$" }),
    realm: Type.String({ pattern: "^[A-Za-z0-9.-]{1,64}$" }),
    expiresAt: Type.Integer({ minimum: 0 }),
    certificate: Type.Optional(Type.String({ maxLength: 4096, pattern: "^-----BEGIN CERTIFICATE-----" })),
    fingerprint: Type.Optional(Type.String({ pattern: FINGERPRINT_PATTERN })),
  },
  { additionalProperties: false },
);
export type RelayServiceConfig = Static<typeof RelayServiceConfigSchema>;
export const checkRelayServiceConfig = TypeCompiler.Compile(RelayServiceConfigSchema);

/** What a relay's consumer says in `session.create`: the transports it speaks beyond UDP and TCP. */
export interface RelayConsumerData {
  transports?: RelayTransport[];
}

/** Whether the consumer's data (a peer's words: anything) says it speaks TURN over TLS. */
export function speaksTls(consumerData: unknown): boolean {
  const transports = (consumerData as RelayConsumerData | null)?.transports;
  return Array.isArray(transports) && transports.includes("tls");
}
