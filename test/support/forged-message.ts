import { Sealer } from "../../node/dialog/envelope";
import type { IdentityKey } from "../../node/identity/key";

/**
 * Seals a hand-made dialog message from `signer` to `recipient`: a well-formed notify, signed and
 * encrypted, with `fields` replacing any of its parts. For tests that play a misbehaving or hostile
 * peer, or that must hold the exact bytes a replayer would resend.
 */
export function sealForged(signer: IdentityKey, recipient: IdentityKey, fields: Record<string, unknown>): Uint8Array {
  const message = {
    v: 1,
    kind: "notify",
    type: "test.note",
    from: signer.address,
    to: recipient.address,
    dialog: "ab".repeat(16),
    id: Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex"),
    ts: Date.now(),
    body: { n: 1 },
    ...fields,
  };
  const bytes = Buffer.from(JSON.stringify(message));
  return new Sealer(recipient.publicKey).seal(signer.signProtocol(bytes), bytes);
}
