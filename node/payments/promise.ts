import { MystError } from "../errors/MystError";
import { addressOfPublicKey, isKeyOf, recoverPublicKey } from "../identity/key";
import { MAX_PROMISE_AMOUNT, type ConsumerVaultClient, type PairState } from "../chain/vault";

export type PromiseRejectionCode = "PROMISE_ABOVE_BALANCE" | "PROMISE_MALFORMED" | "PROMISE_NOT_INCREASING" | "PROMISE_WRONG_SIGNER" | "SESSION_ENDED";

export class PromiseRejected extends MystError<PromiseRejectionCode> {}

export interface IncomingPromise {
  consumer: string;
  provider: string;
  amount: bigint;
  signature: Uint8Array;
}

/**
 * Checks a consumer's promise as the provider must before relying on it: the consumer signed it
 * for this provider (EIP-712, as the vault recovers it), it does not go backwards, and the vault's
 * balance can pay it (what the pair settled + the balance; the escrow is the overdraft's penalty,
 * not something to serve against).
 */
export function verifyPromise(p: IncomingPromise, vault: Pick<ConsumerVaultClient, "promiseDigest">, context: { lastAmount: bigint; pair: PairState }): void {
  // The vault packs an amount into 96 bits: a larger promise could never be settled.
  if (p.amount > MAX_PROMISE_AMOUNT) throw new PromiseRejected("PROMISE_MALFORMED", `the promise (${p.amount}) does not fit the vault's 96 bits`);
  let signer: Uint8Array;
  try {
    signer = recoverPublicKey(vault.promiseDigest(p.consumer, p.provider, p.amount), p.signature);
  } catch (err) {
    throw new PromiseRejected("PROMISE_WRONG_SIGNER", `the promise signature is invalid: ${(err as Error).message}`);
  }
  if (!isKeyOf(signer, p.consumer))
    throw new PromiseRejected("PROMISE_WRONG_SIGNER", `the promise is signed by ${addressOfPublicKey(signer)}, not the consumer ${p.consumer}`);
  if (p.amount < context.lastAmount)
    throw new PromiseRejected("PROMISE_NOT_INCREASING", `the promise (${p.amount}) is below the last one (${context.lastAmount})`);
  const payable = context.pair.settled + context.pair.vault.balance;
  if (p.amount > payable) throw new PromiseRejected("PROMISE_ABOVE_BALANCE", `the promise (${p.amount}) is above what the vault can pay (${payable})`);
}
