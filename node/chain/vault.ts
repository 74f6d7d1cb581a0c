import { AbiCoder, Signature, TypedDataEncoder, Wallet, concat, getBytes, keccak256, solidityPacked, type Signer } from "ethers";
import type { IdentityKey } from "../identity/key";
import type { ChainConnection } from "./connect";
import { PromiseDigests, relayedSettlementTypes, vaultDomain } from "./eip712";
import { toChainError } from "./errors";
import type { ConsumerVault } from "../../typechain-types";

/** A consumer's vault as the chain holds it. */
export interface VaultState {
  balance: bigint;
  escrow: bigint;
  /** 0 when no exit is pending. */
  exitReadyAt: bigint;
}

/** What one (consumer, provider) pair looks like on chain: the consumer's vault and what the pair settled. */
export interface PairState {
  vault: VaultState;
  settled: bigint;
}

/** A promise ready for the contract: the consumer's signature as 65 bytes (r‖s‖v, 0x-prefixed). */
export interface PromiseToSettle {
  consumer: string;
  provider: string;
  amount: bigint;
  signature: string;
}

/** The node's key for a (consumer, provider) ledger: keccak256(abi.encode(consumer, provider)). */
export function pairIdOf(consumer: string, provider: string): string {
  return keccak256(AbiCoder.defaultAbiCoder().encode(["address", "address"], [consumer, provider]));
}

/** The largest amount a promise can carry on chain: the vault packs it into 96 bits (7.9e28 wei). */
export const MAX_PROMISE_AMOUNT = 2n ** 96n - 1n;

/** The bytes of one promise the vault takes: consumer (20) ‖ amount (uint96, 12) ‖ r (32) ‖ yParity‖s (32, EIP-2098). */
export const PACKED_PROMISE_BYTES = 96;

/**
 * The contract's form of a promise: 96 bytes, the signature in EIP-2098 compact form. An amount above
 * `MAX_PROMISE_AMOUNT` cannot be packed (a RangeError, not a silent truncation).
 */
export function packPromise(p: { consumer: string; amount: bigint; signature: string }): string {
  if (p.amount < 0n || p.amount > MAX_PROMISE_AMOUNT) throw new RangeError(`a promise of ${p.amount} wei does not fit the vault's 96 bits`);
  const sig = Signature.from(p.signature);
  return solidityPacked(["address", "uint96", "bytes32", "bytes32"], [p.consumer, p.amount, sig.r, sig.yParityAndS]);
}

/** Promises packed back to back, as `settleBatch` and `settleRelayed` take them. */
export function packPromises(promises: readonly { consumer: string; amount: bigint; signature: string }[]): string {
  return concat(promises.map(packPromise));
}

/** A sent transaction: its hash, and a wait for it to be mined (the caller can send the next one meanwhile). */
export interface Sent<R> {
  txHash: string;
  mined: () => Promise<R>;
}

/** What a mined settlement paid, per pair, and its gas. */
export interface SettlementReceipt {
  gasUsed: bigint;
  /** What each promise paid, by consumer (lower-case address). */
  paid: Map<string, bigint>;
  /** The relayer's fee, when relayed. */
  fee: bigint;
}

/** The consumer vault contract, for the rest of the node (only chain/ talks to the chain). */
export class ConsumerVaultClient {
  #promiseDigests?: PromiseDigests;

  constructor(private readonly conn: ChainConnection) {}

  get chainId(): bigint {
    return this.conn.chainId;
  }

  get address(): string {
    return this.conn.deployment.contracts.ConsumerVault;
  }

  get #vault(): ConsumerVault {
    return this.conn.vault;
  }

  async vault(consumer: string): Promise<VaultState> {
    try {
      const [balance, escrow, exitReadyAt] = await this.#vault.vault(consumer);
      return { balance, escrow, exitReadyAt };
    } catch (err) {
      throw toChainError(err, `reading the vault of ${consumer}`);
    }
  }

  async pair(consumer: string, provider: string): Promise<PairState> {
    try {
      const [[balance, escrow, exitReadyAt], settled] = await Promise.all([this.#vault.vault(consumer), this.#vault.settled(consumer, provider)]);
      return { vault: { balance, escrow, exitReadyAt }, settled };
    } catch (err) {
      throw toChainError(err, `reading the pair ${consumer} → ${provider}`);
    }
  }

  async earnings(provider: string): Promise<bigint> {
    try {
      return await this.#vault.earnings(provider);
    } catch (err) {
      throw toChainError(err, `reading the earnings of ${provider}`);
    }
  }

  /** The EIP-712 digest of a promise for the cumulative `amount` the consumer owes `provider`. */
  promiseDigest(consumer: string, provider: string, amount: bigint): Uint8Array {
    this.#promiseDigests ??= new PromiseDigests(vaultDomain(this.conn.chainId, this.address));
    return this.#promiseDigests.digest(consumer, provider, amount);
  }

  signPromise(consumer: IdentityKey, provider: string, amount: bigint): Uint8Array {
    return consumer.signDigest(this.promiseDigest(consumer.address, provider, amount));
  }

  /**
   * Adds `amount` to the balance and `escrow` to the escrow of `consumer`'s vault, paid by `funder` in
   * one token call (ERC-1363 `transferAndCall`, the vault's hook credits the vault): no allowance at all.
   */
  async deposit(funder: IdentityKey, consumer: string, amount: bigint, escrow: bigint): Promise<{ txHash: string; gasUsed: bigint }> {
    const signer = new Wallet(funder.privateKeyHex(), this.conn.provider);
    try {
      const token = this.conn.token.connect(signer);
      // No data: all of it to the sender's own balance (the cheapest call); otherwise whose vault, and how much is escrow.
      const tx =
        consumer.toLowerCase() === signer.address.toLowerCase() && escrow === 0n
          ? await token["transferAndCall(address,uint256)"](this.address, amount)
          : await token["transferAndCall(address,uint256,bytes)"](
              this.address,
              amount + escrow,
              AbiCoder.defaultAbiCoder().encode(["address", "uint256"], [consumer, escrow]),
            );
      const receipt = await tx.wait();
      return { txHash: receipt!.hash, gasUsed: receipt!.gasUsed };
    } catch (err) {
      throw toChainError(err, `depositing into the vault of ${consumer}`);
    }
  }

  /** Sends one provider's promises as one transaction (`settle` for one, `settleBatch` for more), with the given nonce. */
  async submitSettle(submitter: Signer, provider: string, promises: PromiseToSettle[], nonce: number, options: { minedTimeoutMs?: number } = {}) {
    let tx: Awaited<ReturnType<ConsumerVault["settle"]>>;
    try {
      const packed = packPromises(promises);
      const vault = this.#vault.connect(submitter);
      tx = promises.length === 1 ? await vault.settle(provider, packed, { nonce }) : await vault.settleBatch(provider, packed, { nonce });
    } catch (err) {
      throw toChainError(err, `settling ${promises.length} promise(s) of ${provider}`);
    }
    return this.#sent(tx, `settling ${promises.length} promise(s) of ${provider}`, options.minedTimeoutMs);
  }

  /**
   * The provider's consent to a relayed settlement of these promises, submitted by `relayer` alone (it
   * takes the fee; a copy of its transaction from another account reverts), the fee capped at `maxFee`.
   */
  async signRelayed(provider: IdentityKey, relayer: string, promises: PromiseToSettle[], maxFee: bigint, nonce: bigint): Promise<string> {
    const digest = TypedDataEncoder.hash(vaultDomain(this.conn.chainId, this.address), relayedSettlementTypes, {
      provider: provider.address,
      relayer,
      claims: promises.map((p) => ({ consumer: p.consumer, amount: p.amount })),
      maxFee,
      nonce,
    });
    return "0x" + Buffer.from(provider.signDigest(getBytes(digest))).toString("hex");
  }

  async relayNonce(provider: string): Promise<bigint> {
    try {
      return await this.#vault.relayNonce(provider);
    } catch (err) {
      throw toChainError(err, `reading the relay nonce of ${provider}`);
    }
  }

  /** Submits a settlement the provider signed for the relayer's account, from that account: it takes `fee`, the provider's beneficiary the rest. */
  async submitRelayed(
    relayer: Signer,
    relayed: { provider: string; promises: PromiseToSettle[]; maxFee: bigint; fee: bigint; nonce: bigint; signature: string },
    nonce: number,
    options: { minedTimeoutMs?: number } = {},
  ) {
    let tx: Awaited<ReturnType<ConsumerVault["settleRelayed"]>>;
    const doing = `relaying a settlement of ${relayed.promises.length} promise(s) of ${relayed.provider}`;
    try {
      const from = await relayer.getAddress();
      tx = await this.#vault
        .connect(relayer)
        .settleRelayed(relayed.provider, from, packPromises(relayed.promises), relayed.maxFee, relayed.fee, relayed.nonce, relayed.signature, {
          nonce,
        });
    } catch (err) {
      throw toChainError(err, doing);
    }
    return this.#sent(tx, doing, options.minedTimeoutMs);
  }

  #sent(
    tx: { hash: string; wait: (confirms?: number, timeout?: number) => Promise<unknown> },
    doing: string,
    minedTimeoutMs?: number,
  ): Sent<SettlementReceipt> {
    return {
      txHash: tx.hash,
      mined: async () => {
        try {
          // Bounded: a transaction the chain dropped must not hold the settlement forever.
          const receipt = (await tx.wait(1, minedTimeoutMs ?? 120_000)) as { gasUsed: bigint; logs: { topics: readonly string[]; data: string }[] };
          const paid = new Map<string, bigint>();
          let fee = 0n;
          for (const log of receipt.logs) {
            const parsed = this.#vault.interface.parseLog(log);
            if (parsed?.name === "PromiseSettled") paid.set(String(parsed.args[0]).toLowerCase(), parsed.args[2] as bigint);
            if (parsed?.name === "SettlementRelayed") fee = parsed.args[2] as bigint;
          }
          return { gasUsed: receipt.gasUsed, paid, fee };
        } catch (err) {
          throw toChainError(err, doing);
        }
      },
    };
  }

  /** Pays `provider`'s credited earnings to its beneficiary; `submitter` pays the gas. */
  async withdrawEarnings(submitter: Signer, provider: string): Promise<{ txHash: string; amount: bigint }> {
    try {
      const receipt = await (await this.#vault.connect(submitter).withdrawEarnings(provider)).wait();
      const event = receipt!.logs.map((l) => this.#vault.interface.parseLog(l)).find((e) => e?.name === "EarningsPaid");
      return { txHash: receipt!.hash, amount: (event?.args[2] as bigint) ?? 0n };
    } catch (err) {
      throw toChainError(err, `paying out the earnings of ${provider}`);
    }
  }

  /** The next nonce of `address`, counting transactions the node has but not yet mined. */
  async pendingNonce(address: string): Promise<number> {
    try {
      return await this.conn.provider.getTransactionCount(address, "pending");
    } catch (err) {
      throw toChainError(err, `reading the nonce of ${address}`);
    }
  }

  async requestExit(consumer: IdentityKey): Promise<string> {
    try {
      return (await (await this.#vault.connect(new Wallet(consumer.privateKeyHex(), this.conn.provider)).requestExit()).wait())!.hash;
    } catch (err) {
      throw toChainError(err, "requesting the vault's exit");
    }
  }

  async withdraw(consumer: IdentityKey): Promise<{ txHash: string; amount: bigint }> {
    try {
      const receipt = await (await this.#vault.connect(new Wallet(consumer.privateKeyHex(), this.conn.provider)).withdraw()).wait();
      const event = receipt!.logs.map((l) => this.#vault.interface.parseLog(l)).find((e) => e?.name === "Withdrawn");
      return { txHash: receipt!.hash, amount: (event?.args[1] as bigint) ?? 0n };
    } catch (err) {
      throw toChainError(err, "withdrawing the vault");
    }
  }

  async blockNumber(): Promise<number> {
    try {
      return await this.conn.provider.getBlockNumber();
    } catch (err) {
      throw toChainError(err, "reading the block number");
    }
  }

  /** The consumers whose vault changed in blocks `fromBlock`..`toBlock` (deposits, settlements, exits), lower-case. */
  async changedVaults(fromBlock: number, toBlock: number): Promise<string[]> {
    try {
      const logs = await this.conn.provider.getLogs({ address: this.address, fromBlock, toBlock });
      const consumers = new Set<string>();
      for (const log of logs) {
        const parsed = this.#vault.interface.parseLog(log);
        if (parsed && parsed.name !== "EarningsPaid" && parsed.name !== "SettlementRelayed") consumers.add(String(parsed.args[0]).toLowerCase());
      }
      return [...consumers];
    } catch (err) {
      throw toChainError(err, "reading the vault's events");
    }
  }

  async tokenBalance(address: string): Promise<bigint> {
    try {
      return await this.conn.token.balanceOf(address);
    } catch (err) {
      throw toChainError(err, `reading the MYST balance of ${address}`);
    }
  }
}
