import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { FINGERPRINT_PATTERN } from "../certificate";

/**
 * What the provider answers in `accepted.serviceConfig` (inside the signed, encrypted dialog): where
 * its HTTP/2 server listens, its certificate and the certificate's SHA-256 fingerprint (the consumer
 * pins it: no other server is trusted for this session), and the session's credential, which every
 * CONNECT stream carries (`proxy-authorization: Bearer <credential>`).
 */
export const ProxyServiceConfigSchema = Type.Object(
  {
    address: Type.String({ maxLength: 39, pattern: "^[0-9a-fA-F.:]+$" }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    certificate: Type.String({ maxLength: 4096, pattern: "^-----BEGIN CERTIFICATE-----" }),
    fingerprint: Type.String({ pattern: FINGERPRINT_PATTERN }),
    credential: Type.String({ pattern: "^[A-Za-z0-9_-]{43}$" }),
    /** The address is a relay's TCP allocation the provider holds (the consumer gave it a relay credential): the consumer meters it. */
    relayed: Type.Optional(Type.Literal(true)),
  },
  { additionalProperties: false },
);
export type ProxyServiceConfig = Static<typeof ProxyServiceConfigSchema>;
export const checkServiceConfig = TypeCompiler.Compile(ProxyServiceConfigSchema);

/** The header a consumer's stream names its session credential in. */
export const CREDENTIAL_HEADER = "proxy-authorization";
/** The header a refused stream's reason is in (the `DestinationRefusal` words, or `credential`). */
export const REFUSAL_HEADER = "myst-refusal";

/** HTTP/2 windows large enough for one stream to fill a fast path (the 64 KiB default caps it at 64 KiB per round trip). */
export const STREAM_WINDOW = 16 * 1024 * 1024;
export const CONNECTION_WINDOW = 64 * 1024 * 1024;

/**
 * What one session may hold at the provider, and how long an unused stream or session lasts. A
 * stream over a limit is refused with 429 and its reason in `myst-refusal`.
 */
export interface ProxyLimits {
  /** Open CONNECT streams per session (each holds a socket and what its stream's and socket's buffers hold each way: 16 KiB marks at the provider). Default 128. */
  streamsPerSession: number;
  /** HTTP/2 connections per session (the consumer uses one). Default 4. */
  connectionsPerSession: number;
  /** A stream that moves no byte either way for this long is closed. Default 5 min. */
  streamIdleMs: number;
  /** A session's connections with no open stream for this long are closed (GOAWAY "idle"), which ends the session. Default 30 min. */
  sessionIdleMs: number;
}

export const PROXY_LIMITS: ProxyLimits = {
  streamsPerSession: 128,
  connectionsPerSession: 4,
  streamIdleMs: 5 * 60_000,
  sessionIdleMs: 30 * 60_000,
};

/** The refusals of a stream over a session's limits (429). */
export const TOO_MANY_STREAMS = "too-many-streams";
export const TOO_MANY_CONNECTIONS = "too-many-connections";
/** The GOAWAY debug data of a connection closed for idleness (the consumer says it in its end reason). */
export const IDLE_GOAWAY = "idle";
