import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { isIP } from "node:net";
import type { DirectRoute } from "../../session/service";
import { refuseResolversOutsideTunnel, TunnelError } from "../system";
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

const SESSION_ID = /^[0-9a-f]{32}$/;

/** The endpoint a tunnel sends to: the direct route's when there is one (an IPv4 address the channel reached), else the config's. */
export function endpointOf(config: WireGuardServiceConfig, route: DirectRoute | undefined): { address: string; port: number } {
  if (!route) return config.endpoint;
  if (isIP(route.address) !== 4 || !Number.isInteger(route.tunnelPort) || route.tunnelPort < 1 || route.tunnelPort > 65535)
    throw new TunnelError("BAD_SERVICE_CONFIG", "the direct route to the provider is not an IPv4 address and port");
  // Only a relay's forwarder is on this host: a provider's route never points at loopback.
  if (route.address.startsWith("127.") && (route.kind !== "relayed" || !route.outside))
    throw new TunnelError("BAD_SERVICE_CONFIG", "a route to this host itself is only a relay's forwarder");
  return { address: route.address, port: route.tunnelPort };
}

/** The provider's words, fenced: the session id becomes part of names, the config of root-run commands. */
export function checkedServiceConfig(session: { id: string; serviceConfig: unknown }): WireGuardServiceConfig {
  if (!SESSION_ID.test(session.id)) throw new TunnelError("BAD_SESSION_ID", "the provider's session id is not 32 hex characters");
  if (!checkServiceConfig.Check(session.serviceConfig)) throw new TunnelError("BAD_SERVICE_CONFIG", "the provider's WireGuard service config is malformed");
  const c = session.serviceConfig;
  if (
    isIP(c.endpoint.address) === 0 ||
    isIP(c.address.split("/")[0]) !== 4 ||
    (c.address6 && isIP(c.address6.split("/")[0]) !== 6) ||
    c.dns.some((a) => isIP(a) === 0)
  )
    throw new TunnelError("BAD_SERVICE_CONFIG", "the provider's WireGuard service config names something that is not an IP address");
  refuseResolversOutsideTunnel(c.dns, [c.endpoint]);
  return c;
}
