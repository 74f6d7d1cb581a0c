import { Wallet } from "ethers";
import { PaymentChannelsClient } from "../../node/chain/channels";
import { channelIdOf } from "../../node/chain/eip712";
import { Sealer } from "../../node/dialog/envelope";
import { IdentityKey } from "../../node/identity/key";
import { verifyPromise } from "../../node/payments/promise";
import { nowMs, round, writeResults } from "./stats";

/**
 * Promises signed and verified per second (the EIP-712 digest, the secp256k1 signature, the
 * provider's full check), and the bytes one invoice and one promise take on the wire (sealed
 * dialog envelopes), all in this process. Baseline: protocol signatures (OpenSSL ECDSA-SHA256)
 * measured in the same run.
 */
export async function benchPayments(): Promise<void> {
  const N = Number(process.env.BENCH_N ?? 3000);
  const consumer = IdentityKey.generate();
  const provider = IdentityKey.generate();
  const conn = { chainId: 31337n, deployment: { contracts: { PaymentChannels: Wallet.createRandom().address } } };
  const channels = new PaymentChannelsClient(conn as never);
  const channel = { id: channelIdOf(consumer.address, provider.address), balance: 10n ** 30n, settled: 0n, withdrawalReadyAt: 0n };

  const signatures: Uint8Array[] = [];
  let t = nowMs();
  for (let i = 1; i <= N; i++) signatures.push(channels.signPromise(consumer, provider.address, BigInt(i) * 10n ** 12n));
  const signPerSecond = N / ((nowMs() - t) / 1000);

  t = nowMs();
  for (let i = 1; i <= N; i++) {
    verifyPromise(
      { consumer: consumer.address, provider: provider.address, channelId: channel.id, amount: BigInt(i) * 10n ** 12n, signature: signatures[i - 1] },
      channels,
      { lastAmount: BigInt(i - 1) * 10n ** 12n, channel },
    );
  }
  const verifyPerSecond = N / ((nowMs() - t) / 1000);

  const bytes = Buffer.alloc(300, 1);
  t = nowMs();
  for (let i = 0; i < N; i++) consumer.signProtocol(bytes);
  const protocolSignPerSecond = N / ((nowMs() - t) / 1000);

  // Wire size: the same JSON the dialog layer signs and seals, for one invoice and one promise.
  const sealer = new Sealer(provider.publicKey);
  const message = (kind: string, type: string, body: unknown) =>
    Buffer.from(JSON.stringify({ v: 1, kind, type, from: provider.address, to: consumer.address, dialog: "ab".repeat(16), id: "cd".repeat(16), ts: Date.now(), reply: `myst.dialog.${provider.address.toLowerCase()}`, body }));
  const invoice = message("notify", "payment.invoice", { sessionId: "ef".repeat(16), amount: "1036202000000000", bytes: 8793388, ms: 12000 });
  const promise = message("request", "payment.promise", { sessionId: "ef".repeat(16), amount: "1036202000000000", signature: "0x" + Buffer.from(signatures[0]).toString("hex") });
  const ack = message("response", "payment.promise", { accepted: true, amount: "1036202000000000" });
  const wire = {
    invoice: sealer.seal(consumer.signProtocol(invoice), invoice).length,
    promise: sealer.seal(consumer.signProtocol(promise), promise).length,
    ack: sealer.seal(consumer.signProtocol(ack), ack).length,
  };
  const exchange = wire.invoice + wire.promise + wire.ack;
  writeResults(
    "payments",
    { signPerSecond: Math.round(signPerSecond), verifyPerSecond: Math.round(verifyPerSecond), protocolSignPerSecond: Math.round(protocolSignPerSecond), wireBytes: { ...wire, exchange } },
    [
      ["measure", "value", "ratio"],
      ["protocol signatures (OpenSSL ECDSA-SHA256) /s — baseline", String(Math.round(protocolSignPerSecond)), "1×"],
      ["promises signed (EIP-712 digest + secp256k1) /s", String(Math.round(signPerSecond)), `${round(signPerSecond / protocolSignPerSecond, 2)}×`],
      ["promises verified (recover + channel + amount checks) /s", String(Math.round(verifyPerSecond)), `${round(verifyPerSecond / protocolSignPerSecond, 2)}×`],
      ["invoice on the wire (bytes, sealed)", String(wire.invoice), ""],
      ["promise on the wire (bytes, sealed)", String(wire.promise), ""],
      ["acknowledgement on the wire (bytes, sealed)", String(wire.ack), ""],
      ["one invoice → promise → ack exchange (bytes)", String(exchange), ""],
    ],
  );
}
