import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import net from "node:net";
import type { SignedProposal } from "../../proposal/proposal";
import { isPublicAddress } from "../../values/ip";
import { FINGERPRINT_PATTERN } from "../certificate";
import { TunnelError } from "../system";

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
    /**
     * Only to a consumer that proves its own address (`proveSelf`): a second credential that is good
     * for one thing, an Allocate over TCP or TLS whose client address the relay reads and then cuts
     * off (self-proof.ts). That address becomes the session's one peer.
     */
    proof: Type.Optional(
      Type.Object(
        { username: Type.String({ pattern: "^[0-9]{1,12}:proof-[0-9a-f]{32}$" }), password: Type.String({ pattern: "^[A-Za-z0-9+/=]{1,64}$" }) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type RelayServiceConfig = Static<typeof RelayServiceConfigSchema>;
export const checkRelayServiceConfig = TypeCompiler.Compile(RelayServiceConfigSchema);

/**
 * What a relay's consumer says in `session.create`: the transports it speaks beyond UDP and TCP,
 * and the peers its allocation will permit (the provider's public addresses, at most
 * MAX_NAMED_PEERS), with the provider's signed proposal that announces them: the relay refuses
 * peers it does not announce, and cuts off an allocation that permits any other (docs/relay.md).
 */
export interface RelayConsumerData {
  transports?: RelayTransport[];
  peers?: string[];
  /** The provider's signed proposal: the relay checks that each peer is an address it announces (provider-peers.ts). */
  provider?: SignedProposal;
  /**
   * Instead of `peers` and `provider`: the one peer is this consumer's own address, which the relay
   * learns from the network (a TCP or TLS Allocate under the session's proof credential), never from
   * the consumer's words: a proxy provider nobody can dial holds the allocation (self-proof.ts).
   */
  proveSelf?: boolean;
}

export const MAX_NAMED_PEERS = 4;

/**
 * The peers a consumer's data names (a peer's words: anything), checked: 1 to MAX_NAMED_PEERS
 * IPv4 addresses, public ones unless `allowPrivate` (tests on one host). A relay is not an open
 * relay to any address its paying consumer likes.
 */
export function namedPeers(consumerData: unknown, allowPrivate: boolean): string[] {
  const peers = (consumerData as RelayConsumerData | null)?.peers;
  if (!Array.isArray(peers) || peers.length === 0 || peers.length > MAX_NAMED_PEERS)
    throw new TunnelError("BAD_CONSUMER_DATA", `a relay session must name the provider's addresses it will permit (1 to ${MAX_NAMED_PEERS})`);
  for (const p of peers)
    if (typeof p !== "string" || net.isIP(p) !== 4 || (!allowPrivate && !isPublicAddress(p)))
      throw new TunnelError("BAD_CONSUMER_DATA", `a relay session names ${JSON.stringify(p).slice(0, 50)}, not a public IPv4 address`);
  return [...new Set(peers as string[])];
}

/**
 * Whether the consumer's data (a peer's words: anything) asks for a session whose one peer is its own
 * address, proven to the relay; such a session may name no peers and carry no provider proposal.
 */
export function provesSelf(consumerData: unknown): boolean {
  const data = consumerData as RelayConsumerData | null;
  if (data?.proveSelf === undefined) return false;
  if (data.proveSelf !== true || data.peers !== undefined || data.provider !== undefined)
    throw new TunnelError("BAD_CONSUMER_DATA", "a relay session that proves its consumer's address names no peers and no provider");
  return true;
}

/** Whether the consumer's data (a peer's words: anything) says it speaks TURN over TLS. */
export function speaksTls(consumerData: unknown): boolean {
  const transports = (consumerData as RelayConsumerData | null)?.transports;
  return Array.isArray(transports) && transports.includes("tls");
}

/** The subject of a relay's TLS certificate: `myst-relay <identity>` (lower case), or `myst-relay` without one. */
export function relayCommonName(identity?: string): string {
  return identity ? `myst-relay ${identity.toLowerCase()}` : "myst-relay";
}
