import { Wallet } from "ethers";
import { ConsumerVaultClient } from "../../node/chain/vault";
import { Sealer } from "../../node/dialog/envelope";
import os from "node:os";
import { IdentityKey } from "../../node/identity/key";
import { secp256k1 } from "../../node/identity/secp256k1";
import { verifyPromise } from "../../node/payments/promise";
import { connectChain } from "../../node/chain/connect";
import { VaultStateCache } from "../../node/payments/vault-cache";
import { startLocalChain } from "../lib/local-chain";
import { nowMs, round, writeResults } from "./stats";

/**
 * The provider's check of one promise against a real local chain: with a live vault read per
 * promise (how it was), and with the vault-state cache (how it is). Same verification in both.
 */
async function checksAgainstChain(n: number): Promise<{ livePerSecond: number; cachedPerSecond: number }> {
  const chain = await startLocalChain();
  const conn = await connectChain({ rpcUrl: chain.rpcUrl, deployment: chain.deployment });
  try {
    const consumer = IdentityKey.generate();
    const provider = IdentityKey.generate();
    const vault = new ConsumerVaultClient(conn);
    const cache = new VaultStateCache(vault);
    const signatures = Array.from({ length: n }, (_v, i) => vault.signPromise(consumer, provider.address, BigInt(i + 1)));
    const check = (i: number, state: { settled: bigint }) =>
      verifyPromise(
        {
          consumer: consumer.address,
          provider: provider.address,
          amount: BigInt(i + 1),
          signature: signatures[i],
        },
        vault,
        // The chain's settled figure, and a balance that covers the bench's amounts.
        { lastAmount: BigInt(i), pair: { vault: { balance: 10n ** 30n, escrow: 0n, exitReadyAt: 0n }, settled: state.settled } },
      );
    let t = nowMs();
    for (let i = 0; i < n; i++) check(i, await vault.pair(consumer.address, provider.address));
    const livePerSecond = n / ((nowMs() - t) / 1000);
    await cache.read(consumer.address, provider.address);
    t = nowMs();
    for (let i = 0; i < n; i++) check(i, await cache.get(consumer.address, provider.address));
    const cachedPerSecond = n / ((nowMs() - t) / 1000);
    return { livePerSecond, cachedPerSecond };
  } finally {
    conn.close();
    await chain.stop();
  }
}

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
  const conn = { chainId: 31337n, deployment: { contracts: { ConsumerVault: Wallet.createRandom().address } } };
  const vault = new ConsumerVaultClient(conn as never);
  const pair = { vault: { balance: 10n ** 30n, escrow: 0n, exitReadyAt: 0n }, settled: 0n };

  const signatures: Uint8Array[] = [];
  let t = nowMs();
  for (let i = 1; i <= N; i++) signatures.push(vault.signPromise(consumer, provider.address, BigInt(i) * 10n ** 12n));
  const signPerSecond = N / ((nowMs() - t) / 1000);

  t = nowMs();
  for (let i = 1; i <= N; i++) {
    verifyPromise({ consumer: consumer.address, provider: provider.address, amount: BigInt(i) * 10n ** 12n, signature: signatures[i - 1] }, vault, {
      lastAmount: BigInt(i - 1) * 10n ** 12n,
      pair,
    });
  }
  const verifyPerSecond = N / ((nowMs() - t) / 1000);

  const bytes = Buffer.alloc(300, 1);
  t = nowMs();
  for (let i = 0; i < N; i++) consumer.signProtocol(bytes);
  const protocolSignPerSecond = N / ((nowMs() - t) / 1000);

  // Wire size: the same JSON the dialog layer signs and seals, for one invoice and one promise.
  const sealer = new Sealer(provider.publicKey);
  const message = (kind: string, type: string, body: unknown) =>
    Buffer.from(
      JSON.stringify({
        v: 1,
        kind,
        type,
        from: provider.address,
        to: consumer.address,
        dialog: "ab".repeat(16),
        id: "cd".repeat(16),
        ts: Date.now(),
        reply: `myst.dialog.${provider.address.toLowerCase()}`,
        body,
      }),
    );
  const invoice = message("notify", "payment.invoice", { sessionId: "ef".repeat(16), amount: "1036202000000000", bytes: 8793388, ms: 12000 });
  const promise = message("request", "payment.promise", {
    sessionId: "ef".repeat(16),
    amount: "1036202000000000",
    signature: "0x" + Buffer.from(signatures[0]).toString("hex"),
  });
  const ack = message("response", "payment.promise", { accepted: true, amount: "1036202000000000" });
  const wire = {
    invoice: sealer.seal(consumer.signProtocol(invoice), invoice).length,
    promise: sealer.seal(consumer.signProtocol(promise), promise).length,
    ack: sealer.seal(consumer.signProtocol(ack), ack).length,
  };
  const exchange = wire.invoice + wire.promise + wire.ack;
  const chainChecks = await checksAgainstChain(Number(process.env.BENCH_CHAIN_N ?? 500));
  writeResults(
    "payments",
    {
      secp256k1: secp256k1.implementation,
      loadAverage: os.loadavg().map((l) => round(l, 2)),
      signPerSecond: Math.round(signPerSecond),
      verifyPerSecond: Math.round(verifyPerSecond),
      protocolSignPerSecond: Math.round(protocolSignPerSecond),
      wireBytes: { ...wire, exchange },
      promiseChecksPerSecond: {
        liveChainRead: Math.round(chainChecks.livePerSecond),
        cachedChannelState: Math.round(chainChecks.cachedPerSecond),
        ratio: round(chainChecks.cachedPerSecond / chainChecks.livePerSecond, 1),
      },
    },
    [
      ["measure", "value", "ratio"],
      [`protocol signatures (ECDSA-SHA256, ${secp256k1.implementation}) /s — baseline`, String(Math.round(protocolSignPerSecond)), "1×"],
      ["promises signed (EIP-712 digest + secp256k1) /s", String(Math.round(signPerSecond)), `${round(signPerSecond / protocolSignPerSecond, 2)}×`],
      [
        "promises verified (recover + vault + amount checks; aim ≥ 2,000) /s",
        String(Math.round(verifyPerSecond)),
        `${round(verifyPerSecond / protocolSignPerSecond, 2)}×`,
      ],
      ["invoice on the wire (bytes, sealed)", String(wire.invoice), ""],
      ["promise on the wire (bytes, sealed)", String(wire.promise), ""],
      ["acknowledgement on the wire (bytes, sealed)", String(wire.ack), ""],
      ["one invoice → promise → ack exchange (bytes)", String(exchange), ""],
      ["promise checks with a live vault read each (local chain) /s — baseline", String(Math.round(chainChecks.livePerSecond)), "1×"],
      [
        "promise checks with the channel-state cache /s",
        String(Math.round(chainChecks.cachedPerSecond)),
        `${round(chainChecks.cachedPerSecond / chainChecks.livePerSecond, 1)}×`,
      ],
    ],
  );
}
