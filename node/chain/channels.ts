import { MaxUint256, Wallet, getBytes, TypedDataEncoder, type Signer } from "ethers";
import type { IdentityKey } from "../identity/key";
import type { ChainConnection } from "./connect";
import { channelIdOf, channelsDomain, promiseTypes } from "./eip712";
import { toChainError } from "./errors";
import type { PaymentChannels } from "../../typechain-types";

export interface ChannelState {
  id: string;
  balance: bigint;
  settled: bigint;
  /** 0 when no withdrawal is pending. */
  withdrawalReadyAt: bigint;
}

/** The payment channels contract, for the rest of the node (only chain/ talks to the chain). */
export class PaymentChannelsClient {
  constructor(private readonly conn: ChainConnection) {}

  get chainId(): bigint {
    return this.conn.chainId;
  }

  get address(): string {
    return this.conn.deployment.contracts.PaymentChannels;
  }

  async state(consumer: string, provider: string): Promise<ChannelState> {
    const id = channelIdOf(consumer, provider);
    try {
      const [balance, settled, withdrawalReadyAt] = await this.conn.channels.channel(id);
      return { id, balance, settled, withdrawalReadyAt };
    } catch (err) {
      throw toChainError(err, `reading channel ${id}`);
    }
  }

  /** The EIP-712 digest of a promise for the cumulative `amount` on the channel consumer → provider. */
  promiseDigest(consumer: string, provider: string, amount: bigint): Uint8Array {
    return getBytes(
      TypedDataEncoder.hash(channelsDomain(this.conn.chainId, this.address), promiseTypes, { channelId: channelIdOf(consumer, provider), amount }),
    );
  }

  signPromise(consumer: IdentityKey, provider: string, amount: bigint): Uint8Array {
    return consumer.signDigest(this.promiseDigest(consumer.address, provider, amount));
  }

  /** Deposits `amount` into the consumer's channel with `provider`, approving first if needed. */
  async deposit(funder: IdentityKey, consumer: string, provider: string, amount: bigint): Promise<{ txHash: string; gasUsed: bigint }> {
    const signer = new Wallet(funder.privateKeyHex(), this.conn.provider);
    try {
      const allowance = await this.conn.token.allowance(signer.address, this.address);
      if (allowance < amount) await (await this.conn.token.connect(signer).approve(this.address, MaxUint256)).wait();
      const receipt = await (await this.conn.channels.connect(signer).deposit(consumer, provider, amount)).wait();
      return { txHash: receipt!.hash, gasUsed: receipt!.gasUsed };
    } catch (err) {
      throw toChainError(err, `depositing into the channel with ${provider}`);
    }
  }

  /** Settles a promise; `submitter` pays the gas (the provider, or anyone). */
  async settle(
    submitter: Signer,
    consumer: string,
    provider: string,
    amount: bigint,
    signature: Uint8Array,
  ): Promise<{ txHash: string; gasUsed: bigint; paid: bigint }> {
    try {
      const tx = await this.conn.channels.connect(submitter).settle(consumer, provider, amount, signature);
      const receipt = await tx.wait();
      const event = receipt!.logs.map((l) => this.conn.channels.interface.parseLog(l)).find((e) => e?.name === "PromiseSettled");
      return { txHash: receipt!.hash, gasUsed: receipt!.gasUsed, paid: (event?.args[2] as bigint) ?? 0n };
    } catch (err) {
      throw toChainError(err, `settling the channel of ${consumer}`);
    }
  }

  /**
   * Sends a settlement with the given nonce and returns once the node has it: its hash, and a
   * function that waits for it to be mined (the caller can send the next one meanwhile).
   */
  async submitSettle(
    submitter: Signer,
    promise: { consumer: string; provider: string; amount: bigint; signature: Uint8Array },
    nonce: number,
    options: { minedTimeoutMs?: number } = {},
  ): Promise<{ txHash: string; mined: () => Promise<{ gasUsed: bigint; paid: bigint }> }> {
    let tx: Awaited<ReturnType<PaymentChannels["settle"]>>;
    try {
      tx = await this.conn.channels.connect(submitter).settle(promise.consumer, promise.provider, promise.amount, promise.signature, { nonce });
    } catch (err) {
      throw toChainError(err, `settling the channel of ${promise.consumer}`);
    }
    return {
      txHash: tx.hash,
      mined: async () => {
        try {
          // Bounded: a transaction the chain dropped must not hold the settlement forever.
          const receipt = await tx.wait(1, options.minedTimeoutMs ?? 120_000);
          const event = receipt!.logs.map((l) => this.conn.channels.interface.parseLog(l)).find((e) => e?.name === "PromiseSettled");
          return { gasUsed: receipt!.gasUsed, paid: (event?.args[2] as bigint) ?? 0n };
        } catch (err) {
          throw toChainError(err, `settling the channel of ${promise.consumer}`);
        }
      },
    };
  }

  /** The next nonce of `address`, counting transactions the node has but not yet mined. */
  async pendingNonce(address: string): Promise<number> {
    try {
      return await this.conn.provider.getTransactionCount(address, "pending");
    } catch (err) {
      throw toChainError(err, `reading the nonce of ${address}`);
    }
  }

  async requestWithdrawal(consumer: IdentityKey, provider: string): Promise<string> {
    try {
      const receipt = await (await this.conn.channels.connect(new Wallet(consumer.privateKeyHex(), this.conn.provider)).requestWithdrawal(provider)).wait();
      return receipt!.hash;
    } catch (err) {
      throw toChainError(err, `requesting a withdrawal from the channel with ${provider}`);
    }
  }

  async withdraw(consumer: IdentityKey, provider: string): Promise<{ txHash: string; amount: bigint }> {
    try {
      const receipt = await (await this.conn.channels.connect(new Wallet(consumer.privateKeyHex(), this.conn.provider)).withdraw(provider)).wait();
      const event = receipt!.logs.map((l) => this.conn.channels.interface.parseLog(l)).find((e) => e?.name === "Withdrawn");
      return { txHash: receipt!.hash, amount: (event?.args[2] as bigint) ?? 0n };
    } catch (err) {
      throw toChainError(err, `withdrawing from the channel with ${provider}`);
    }
  }

  /**
   * Leaving a channel takes two calls a challenge period apart: the first requests the withdrawal,
   * the second (once the period is over) takes the rest back.
   */
  async leave(
    consumer: IdentityKey,
    provider: string,
  ): Promise<{ requested: true; txHash: string; readyAt: string } | { requested: false; txHash: string; withdrawnWei: string }> {
    const state = await this.state(consumer.address, provider);
    if (state.withdrawalReadyAt === 0n) {
      const txHash = await this.requestWithdrawal(consumer, provider);
      const after = await this.state(consumer.address, provider);
      return { requested: true, txHash, readyAt: new Date(Number(after.withdrawalReadyAt) * 1000).toISOString() };
    }
    const r = await this.withdraw(consumer, provider);
    return { requested: false, txHash: r.txHash, withdrawnWei: r.amount.toString() };
  }

  async blockNumber(): Promise<number> {
    try {
      return await this.conn.provider.getBlockNumber();
    } catch (err) {
      throw toChainError(err, "reading the block number");
    }
  }

  /** The ids of the channels whose state changed in blocks `fromBlock`..`toBlock` (deposits, settlements, withdrawals). */
  async changedChannels(fromBlock: number, toBlock: number): Promise<string[]> {
    try {
      const logs = await this.conn.provider.getLogs({ address: this.address, fromBlock, toBlock });
      const ids = new Set<string>();
      for (const log of logs) {
        const parsed = this.conn.channels.interface.parseLog(log);
        if (parsed && parsed.name !== "Transfer") ids.add(String(parsed.args[0]).toLowerCase());
      }
      return [...ids];
    } catch (err) {
      throw toChainError(err, "reading the channels' events");
    }
  }

  async tokenBalance(address: string): Promise<bigint> {
    return this.conn.token.balanceOf(address);
  }
}
