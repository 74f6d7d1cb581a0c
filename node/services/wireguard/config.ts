import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { KEY_PATTERN } from "./keys";

const Key = Type.String({ pattern: KEY_PATTERN, maxLength: 44 });
const Ipv4 = "(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])";

/** What the consumer sends in `session.create`: the public half of a key pair made for this session. */
export const WireGuardConsumerDataSchema = Type.Object({ publicKey: Key }, { additionalProperties: false });
export type WireGuardConsumerData = Static<typeof WireGuardConsumerDataSchema>;
export const checkConsumerData = TypeCompiler.Compile(WireGuardConsumerDataSchema);

/**
 * What the provider answers in `accepted.serviceConfig`: where to send the tunnel's packets, whom to
 * expect there, the consumer's addresses in the tunnel, and the resolver. Nothing secret: the
 * consumer's private key never leaves it, the provider's neither.
 */
export const WireGuardServiceConfigSchema = Type.Object(
  {
    endpoint: Type.Object(
      { address: Type.String({ maxLength: 39, pattern: "^[0-9a-fA-F.:]+$" }), port: Type.Integer({ minimum: 1, maximum: 65535 }) },
      {
        additionalProperties: false,
      },
    ),
    publicKey: Key,
    /** The consumer's public key as the provider admitted it: which of its pending key pairs this session uses. */
    clientPublicKey: Key,
    address: Type.String({ pattern: `^${Ipv4}/32$` }),
    address6: Type.Optional(Type.String({ maxLength: 43, pattern: "^[0-9a-fA-F:]+/128$" })),
    dns: Type.Array(Type.String({ maxLength: 39, pattern: "^[0-9a-fA-F.:]+$" }), { maxItems: 2 }),
    mtu: Type.Integer({ minimum: 1280, maximum: 1500 }),
    ipv6: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type WireGuardServiceConfig = Static<typeof WireGuardServiceConfigSchema>;
export const checkServiceConfig = TypeCompiler.Compile(WireGuardServiceConfigSchema);
