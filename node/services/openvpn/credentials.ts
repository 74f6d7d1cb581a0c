import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";

/** What the provider tells the consumer in `accepted.serviceConfig`. */
export const OpenVpnServiceConfigSchema = Type.Object(
  {
    remote: Type.String({ maxLength: 253, pattern: "^[A-Za-z0-9.:-]+$" }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    protocol: Type.Literal("udp"),
    cipher: Type.Literal("AES-256-GCM"),
    ca: Type.String({ maxLength: 8192, pattern: "^-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\\s]+-----END CERTIFICATE-----\\s*$" }),
    tlsCrypt: Type.String({
      maxLength: 4096,
      pattern: "^[#A-Za-z0-9 \\n\\r:,.()-]*-----BEGIN OpenVPN Static key V1-----[0-9a-f\\s]+-----END OpenVPN Static key V1-----\\s*$",
    }),
    /** The provider's resolver(s), on its tunnel address: the consumer resolves names only there while connected. */
    dns: Type.Optional(Type.Array(Type.String({ maxLength: 39, pattern: "^[0-9a-fA-F.:]+$" }), { maxItems: 2 })),
    /** The tunnel carries IPv6 (the provider has IPv6 egress). */
    ipv6: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type OpenVpnServiceConfig = Static<typeof OpenVpnServiceConfigSchema>;
export const checkServiceConfig = TypeCompiler.Compile(OpenVpnServiceConfigSchema);

/** The bytes a consumer signs for its OpenVPN password: bound to one session, and to this use. */
export function authMessage(sessionId: string): Buffer {
  return Buffer.from(`myst-openvpn-auth/1:${sessionId}`);
}
