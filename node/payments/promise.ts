import { MystError } from "../errors/MystError";
import { recoverAddress } from "../identity/key";
import type { ChannelState, PaymentChannelsClient } from "../chain/channels";
import { channelIdOf } from "../chain/eip712";

export type PromiseRejectionCode =
  | "PROMISE_ABOVE_BALANCE"
  | "PROMISE_MALFORMED"
  | "PROMISE_NOT_INCREASING"
  | "PROMISE_WRONG_CHANNEL"
  | "PROMISE_WRONG_SIGNER"
  | "SESSION_ENDED";

export class PromiseRejected extends MystError<PromiseRejectionCode> {}

export interface IncomingPromise {
  consumer: string;
  provider: string;
  channelId: string;
  amount: bigint;
  signature: Uint8Array;
}

/**
 * Checks a consumer's promise as the provider must before relying on it: the channel is the one
 * of this consumer and provider, the consumer signed it (EIP-712, as the contract recovers it), it
 * does not go backwards, and the channel can pay it (settled + balance).
 */
export function verifyPromise(
  p: IncomingPromise,
  channels: Pick<PaymentChannelsClient, "promiseDigest">,
  context: { lastAmount: bigint; channel: ChannelState },
): void {
  const expectedChannel = channelIdOf(p.consumer, p.provider);
  if (p.channelId.toLowerCase() !== expectedChannel.toLowerCase()) {
    throw new PromiseRejected("PROMISE_WRONG_CHANNEL", `the promise names channel ${p.channelId}, not ${expectedChannel}`);
  }
  let signer: string;
  try {
    signer = recoverAddress(channels.promiseDigest(p.consumer, p.provider, p.amount), p.signature);
  } catch (err) {
    throw new PromiseRejected("PROMISE_WRONG_SIGNER", `the promise signature is invalid: ${(err as Error).message}`);
  }
  if (signer.toLowerCase() !== p.consumer.toLowerCase())
    throw new PromiseRejected("PROMISE_WRONG_SIGNER", `the promise is signed by ${signer}, not the consumer ${p.consumer}`);
  if (p.amount < context.lastAmount)
    throw new PromiseRejected("PROMISE_NOT_INCREASING", `the promise (${p.amount}) is below the last one (${context.lastAmount})`);
  const payable = context.channel.settled + context.channel.balance;
  if (p.amount > payable) throw new PromiseRejected("PROMISE_ABOVE_BALANCE", `the promise (${p.amount}) is above what the channel can pay (${payable})`);
}
