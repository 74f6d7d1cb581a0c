import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { ErrorCode } from "../errors/catalogue";
import { DirectOfferSchema } from "../nat/direct/candidates";
import { SignedProposalSchema } from "../proposal/proposal";
import { Address, PeerText, Wei } from "../values/schemas";

/** The session messages, as they travel inside dialog messages' `body`. See docs/protocol.md. */

export const SESSION_CREATE = "session.create";
export const SESSION_CONFIRM = "session.confirm";
export const SESSION_KEEPALIVE = "session.keepalive";
export const SESSION_DESTROY = "session.destroy";
/** Provider → consumer: the session will end soon (a traffic cap reached, the schedule closing), and why. */
export const SESSION_NOTICE = "session.notice";
/**
 * Consumer → provider: no direct path; the consumer holds a relayed address on a relay it pays
 * (services/relay). The provider's tunnel sends its own packets there as plain UDP (the relay's
 * permission is per IP, so any port its router picks passes).
 */
export const SESSION_RELAY = "session.relay";

const SessionId = Type.String({ pattern: "^[0-9a-f]{32}$" });

export const CreateRequest = Type.Object(
  {
    proposal: SignedProposalSchema,
    correlationId: Type.String({ minLength: 1, maxLength: 64 }),
    consumerData: Type.Unknown(),
    /** The most the consumer will pay; the provider refuses when its price is above. */
    maxPrice: Type.Optional(Type.Object({ perHour: Wei, perGiB: Wei }, { additionalProperties: false })),
    /** The consumer's half of the direct channel (node/nat/direct): its secret, router mapping and candidates. */
    direct: Type.Optional(DirectOfferSchema),
  },
  { additionalProperties: false },
);
export type CreateRequest = Static<typeof CreateRequest>;

export const REFUSAL_CODES = [
  "PROPOSAL_UNKNOWN",
  "PROPOSAL_CHANGED",
  "SERVICE_NOT_RUNNING",
  "CONSUMER_UNREGISTERED",
  "CAPACITY_REACHED",
  "TOO_MANY_SESSIONS",
  "PRICE_NOT_ACCEPTED",
  "PAYMENT_NOT_COVERED",
  "BAD_REQUEST",
  "SERVICE_FAILED",
  /** The provider could not check a signed proposal the consumer sent: the registry did not answer. Nothing is wrong with the request; try again. */
  "REGISTRY_UNAVAILABLE",
  /** The provider's daily or monthly traffic cap is reached; it sells again when the period rolls over. */
  "TRAFFIC_CAP",
  /** The provider's allow or deny list keeps this consumer out. */
  "ACCESS_DENIED",
  /** Outside the service's schedule (its time windows). */
  "OUTSIDE_SCHEDULE",
] as const satisfies readonly ErrorCode[];
export type RefusalCode = (typeof REFUSAL_CODES)[number];

/** Keepalive periods a consumer accepts from a provider; outside them the answer is malformed. */
export const MIN_KEEPALIVE_MS = 100;
export const MAX_KEEPALIVE_MS = 600_000;

/**
 * The provider's answer, checked by the consumer before any of it is used: the session id becomes
 * part of file names and a credential, the keepalive a timer, the refusal code an error code.
 */
export const CreateResponse = Type.Union([
  Type.Object(
    {
      accepted: Type.Object(
        {
          sessionId: SessionId,
          serviceConfig: Type.Unknown(),
          keepaliveMs: Type.Integer({ minimum: MIN_KEEPALIVE_MS, maximum: MAX_KEEPALIVE_MS }),
          correlationId: Type.String({ maxLength: 64 }),
          /** The provider's half of the direct channel, when the consumer offered one. */
          direct: Type.Optional(DirectOfferSchema),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      refused: Type.Object(
        {
          code: Type.Union(REFUSAL_CODES.map((c) => Type.Literal(c))),
          message: PeerText(1024),
          correlationId: Type.String({ maxLength: 64 }),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  ),
]);
export type CreateResponse = Static<typeof CreateResponse>;

/** How the consumer's tunnel reached the provider (the consumer's word: the provider's history and earnings show it). */
export const TunnelPathName = Type.Union([
  Type.Literal("public"),
  Type.Literal("mapped"),
  Type.Literal("local"),
  Type.Literal("punched"),
  Type.Literal("relayed"),
]);

export const ConfirmRequest = Type.Union([
  Type.Object({ sessionId: SessionId, ok: Type.Literal(true), path: Type.Optional(TunnelPathName) }, { additionalProperties: false }),
  Type.Object({ sessionId: SessionId, ok: Type.Literal(false), reason: PeerText(512) }, { additionalProperties: false }),
]);
export type ConfirmRequest = Static<typeof ConfirmRequest>;

export const SessionRef = Type.Object({ sessionId: SessionId, reason: Type.Optional(PeerText(512)) }, { additionalProperties: false });
export type SessionRef = Static<typeof SessionRef>;

export const SessionRelay = Type.Object(
  {
    sessionId: SessionId,
    /** The relayed transport address (IPv4) the consumer's relay allocated for this session. */
    address: Type.String({ maxLength: 15, pattern: "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$" }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    /** Which relay (its identity) and how the consumer reaches it: what the provider's history shows (the consumer's word). */
    relay: Type.Optional(Address),
    transport: Type.Optional(Type.Union([Type.Literal("udp"), Type.Literal("tcp"), Type.Literal("tls")])),
    /** The relay's signed proposal: the provider checks that the relayed address is one the relay announces (relayed-address.ts). */
    relayProposal: Type.Optional(SignedProposalSchema),
  },
  { additionalProperties: false },
);
export type SessionRelay = Static<typeof SessionRelay>;

export const SessionNotice = Type.Object(
  {
    sessionId: SessionId,
    reason: PeerText(512),
    /** How long until the provider ends the session. */
    endsInMs: Type.Integer({ minimum: 0, maximum: 86_400_000 }),
  },
  { additionalProperties: false },
);
export type SessionNotice = Static<typeof SessionNotice>;

/**
 * Consumer → provider, when discovery lists no proposal of this provider's: is the service offered,
 * and if not, why (its schedule is closed, its traffic cap reached, this consumer denied). Asked on
 * the provider's own subject; the answer's code is one of the refusal codes, checked here.
 */
export const SERVICE_AVAILABILITY = "service.availability";

export const AvailabilityRequest = Type.Object({ serviceType: Type.String({ pattern: "^[a-z0-9-]{1,32}$" }) }, { additionalProperties: false });
export type AvailabilityRequest = Static<typeof AvailabilityRequest>;

export const Availability = Type.Object(
  {
    serviceType: Type.String({ maxLength: 32 }),
    offered: Type.Boolean(),
    /** Why not, when not offered. */
    refusal: Type.Optional(Type.Union(REFUSAL_CODES.map((c) => Type.Literal(c)))),
    message: PeerText(1024),
  },
  { additionalProperties: false },
);
export type Availability = Static<typeof Availability>;

export const check = {
  availability: TypeCompiler.Compile(AvailabilityRequest),
  availabilityResponse: TypeCompiler.Compile(Availability),
  notice: TypeCompiler.Compile(SessionNotice),
  create: TypeCompiler.Compile(CreateRequest),
  createResponse: TypeCompiler.Compile(CreateResponse),
  confirm: TypeCompiler.Compile(ConfirmRequest),
  ref: TypeCompiler.Compile(SessionRef),
  relay: TypeCompiler.Compile(SessionRelay),
};
