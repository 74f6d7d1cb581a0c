import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { SignedProposalSchema } from "../proposal/proposal";

/** The session messages, as they travel inside dialog messages' `body`. See docs/protocol.md. */

export const SESSION_CREATE = "session.create";
export const SESSION_CONFIRM = "session.confirm";
export const SESSION_KEEPALIVE = "session.keepalive";
export const SESSION_DESTROY = "session.destroy";

const SessionId = Type.String({ pattern: "^[0-9a-f]{32}$" });
const Wei = Type.String({ pattern: "^(0|[1-9][0-9]{0,77})$" });

export const CreateRequest = Type.Object(
  {
    proposal: SignedProposalSchema,
    correlationId: Type.String({ minLength: 1, maxLength: 64 }),
    consumerData: Type.Unknown(),
    /** The most the consumer will pay; the provider refuses when its price is above. */
    maxPrice: Type.Optional(Type.Object({ perHour: Wei, perGiB: Wei }, { additionalProperties: false })),
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
  "PRICE_NOT_ACCEPTED",
  "PAYMENT_NOT_COVERED",
  "BAD_REQUEST",
  "SERVICE_FAILED",
] as const;
export type RefusalCode = (typeof REFUSAL_CODES)[number];

export type CreateResponse =
  | { accepted: { sessionId: string; serviceConfig: unknown; keepaliveMs: number; correlationId: string } }
  | { refused: { code: RefusalCode; message: string; correlationId: string } };

export const ConfirmRequest = Type.Union([
  Type.Object({ sessionId: SessionId, ok: Type.Literal(true) }, { additionalProperties: false }),
  Type.Object({ sessionId: SessionId, ok: Type.Literal(false), reason: Type.String({ maxLength: 512 }) }, { additionalProperties: false }),
]);
export type ConfirmRequest = Static<typeof ConfirmRequest>;

export const SessionRef = Type.Object(
  { sessionId: SessionId, reason: Type.Optional(Type.String({ maxLength: 512 })) },
  { additionalProperties: false },
);
export type SessionRef = Static<typeof SessionRef>;

export const check = {
  create: TypeCompiler.Compile(CreateRequest),
  confirm: TypeCompiler.Compile(ConfirmRequest),
  ref: TypeCompiler.Compile(SessionRef),
};
