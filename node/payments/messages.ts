import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { Strict, Wei } from "../values/schemas";

/** The payment messages inside a session's dialog, checked by schema where they arrive. See docs/payments.md. */

/** Provider → consumer (notify): the channel's cumulative amount that pays this session in full. */
export const PAYMENT_INVOICE = "payment.invoice";
/** Consumer → provider (request): a promise for a cumulative amount; answered `{accepted, amount}` once stored. */
export const PAYMENT_PROMISE = "payment.promise";

const SessionId = Type.String({ pattern: "^[0-9a-f]{32}$" });
const Count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

export const InvoiceSchema = Type.Object(
  {
    sessionId: SessionId,
    /** The channel's cumulative figure (earlier and concurrent sessions included). */
    amount: Wei,
    /** This session's own total so far (for information). */
    sessionAmount: Type.Optional(Wei),
    bytes: Count,
    ms: Count,
  },
  Strict,
);
export type Invoice = Static<typeof InvoiceSchema>;

export const PromiseMessageSchema = Type.Object({ sessionId: SessionId, amount: Wei, signature: Type.String({ pattern: "^0x[0-9a-fA-F]{130}$" }) }, Strict);
export type PromiseMessage = Static<typeof PromiseMessageSchema>;

export const checkPayment = { invoice: TypeCompiler.Compile(InvoiceSchema), promise: TypeCompiler.Compile(PromiseMessageSchema) };
