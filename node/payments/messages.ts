/** The payment messages inside a session's dialog. See docs/payments.md. */

/** Provider → consumer (notify): `{sessionId, amount (cumulative wei), bytes, ms}`. */
export const PAYMENT_INVOICE = "payment.invoice";
/** Consumer → provider (request): `{sessionId, amount, signature}`; answered `{accepted, amount}` once stored. */
export const PAYMENT_PROMISE = "payment.promise";
