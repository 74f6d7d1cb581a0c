import fs from "node:fs";
import path from "node:path";
import type { Signer, TransactionResponse } from "ethers";
import type { IdentityKey } from "../identity/key";
import type { ChainConnection } from "./connect";
import { ChainError, revertName, toChainError } from "./errors";
import type { IdentityRegistryClient } from "./registry";

/** Where an identity's registration stands, in terms a user can act on. */
export type RegistrationStatus =
  | { state: "unregistered"; identity: string }
  | { state: "in-progress"; identity: string; txHash: string; submitter: string; submittedAt: string }
  | { state: "registered"; identity: string; beneficiary: string; txHash?: string }
  | { state: "failed"; identity: string; code: string; reason: string; txHash?: string };

interface RegistrationRecord {
  identity: string;
  state: "in-progress" | "registered" | "failed";
  txHash?: string;
  submitter?: string;
  nonce?: number;
  maxFeePerGas?: string;
  maxPriorityFeePerGas?: string;
  gasLimit?: string;
  submittedAt?: string;
  code?: string;
  reason?: string;
  updatedAt: string;
}

/** One small JSON file per identity under `<data-dir>/registrations/`, replaced atomically. */
export class RegistrationRecords {
  constructor(readonly dir: string) {}

  get(identity: string): RegistrationRecord | null {
    try {
      return JSON.parse(fs.readFileSync(this.#file(identity), "utf8")) as RegistrationRecord;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      // A damaged record only loses the tx hash: the chain remains the truth.
      return null;
    }
  }

  put(record: Omit<RegistrationRecord, "updatedAt">): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = this.#file(record.identity);
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ ...record, updatedAt: new Date().toISOString() }, null, 2), { mode: 0o600 });
    fs.renameSync(tmp, file);
  }

  #file(identity: string): string {
    return path.join(this.dir, `${identity.toLowerCase()}.json`);
  }
}

export interface RegisterOptions {
  /** Who sends the transaction: the identity's own funded wallet, or a relayer. */
  submitter: Signer;
  beneficiary?: string;
  /** How long to wait for the transaction to be mined; after that it is reported in progress. */
  timeoutMs: number;
}

/**
 * Registration with a memory: the chain is the truth, the local record remembers the transaction
 * so a pending, dropped, failed or stuck registration can be told apart and retried. A retry of a
 * stuck transaction replaces it (same nonce, higher fee), so an identity is never left stuck.
 */
export class Registrar {
  constructor(
    private readonly conn: ChainConnection,
    private readonly registry: IdentityRegistryClient,
    private readonly records: RegistrationRecords,
  ) {}

  async status(identity: string): Promise<RegistrationStatus> {
    const record = this.records.get(identity);
    const onChain = await this.registry.lookup(identity, { fresh: true });
    if (onChain) {
      if (record?.state !== "registered") this.records.put({ identity, state: "registered", txHash: record?.txHash });
      return { state: "registered", identity: onChain.address, beneficiary: onChain.beneficiary, txHash: record?.txHash };
    }
    if (!record) return { state: "unregistered", identity };
    if (record.state === "failed") {
      return { state: "failed", identity, code: record.code ?? "FAILED", reason: record.reason ?? "failed", txHash: record.txHash };
    }
    if (record.state === "in-progress" && record.txHash) {
      const provider = this.conn.provider;
      const receipt = await provider.getTransactionReceipt(record.txHash).catch((e) => Promise.reject(toChainError(e, "reading the registration receipt")));
      if (receipt) {
        if (receipt.status === 1) {
          // Mined, but the negative cache has not expired yet: ask the chain directly.
          const beneficiary = await this.conn.registry.beneficiaryOf(identity);
          this.records.put({ ...record, state: "registered" });
          return { state: "registered", identity, beneficiary, txHash: record.txHash };
        }
        return this.#fail(record, "TX_REVERTED", `registration transaction ${record.txHash} reverted in block ${receipt.blockNumber}`);
      }
      const tx = await provider.getTransaction(record.txHash).catch(() => null);
      if (!tx) return this.#fail(record, "TX_DROPPED", `registration transaction ${record.txHash} was dropped; register again`);
      return {
        state: "in-progress",
        identity,
        txHash: record.txHash,
        submitter: record.submitter ?? "",
        submittedAt: record.submittedAt ?? record.updatedAt,
      };
    }
    return { state: "unregistered", identity };
  }

  async register(key: IdentityKey, options: RegisterOptions): Promise<RegistrationStatus> {
    const identity = key.address;
    const current = await this.status(identity);
    if (current.state === "registered") return current;

    const submitter = await options.submitter.getAddress();
    const balance = await this.conn.provider.getBalance(submitter);
    if (balance === 0n) {
      throw new ChainError("INSUFFICIENT_FUNDS", `${submitter} holds no ETH to pay for the registration; fund it, or let a funded relayer submit it`);
    }

    const stuck = current.state === "in-progress" && current.submitter === submitter ? this.records.get(identity) : null;
    const replace =
      stuck?.maxFeePerGas && stuck.gasLimit && stuck.nonce !== undefined
        ? {
            nonce: stuck.nonce,
            gasLimit: BigInt(stuck.gasLimit),
            maxFeePerGas: bump(BigInt(stuck.maxFeePerGas)),
            maxPriorityFeePerGas: bump(BigInt(stuck.maxPriorityFeePerGas ?? "0")),
          }
        : undefined;

    let tx: TransactionResponse;
    try {
      tx = await this.registry.submitRegistration(key, options.submitter, { beneficiary: options.beneficiary, replace });
    } catch (err) {
      if (revertName(err) === "IdentityAlreadyRegistered") return this.status(identity);
      const chainErr = toChainError(err, `registering ${identity}`);
      this.records.put({ identity, state: "failed", code: chainErr.code, reason: chainErr.message });
      throw chainErr;
    }
    const record = {
      identity,
      state: "in-progress" as const,
      txHash: tx.hash,
      submitter,
      nonce: tx.nonce,
      maxFeePerGas: tx.maxFeePerGas?.toString(),
      maxPriorityFeePerGas: tx.maxPriorityFeePerGas?.toString(),
      gasLimit: tx.gasLimit.toString(),
      submittedAt: new Date().toISOString(),
    };
    this.records.put(record);

    try {
      const receipt = await tx.wait(1, options.timeoutMs);
      if (receipt?.status === 1) {
        this.records.put({ ...record, state: "registered" });
        return { state: "registered", identity, beneficiary: await this.conn.registry.beneficiaryOf(identity), txHash: tx.hash };
      }
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "TIMEOUT") return this.status(identity);
      if (code === "TRANSACTION_REPLACED") return this.status(identity);
      const chainErr = toChainError(err, `registration transaction ${tx.hash}`);
      return this.#fail(record, chainErr.code, chainErr.message);
    }
    return this.status(identity);
  }

  #fail(record: RegistrationRecord | Omit<RegistrationRecord, "updatedAt">, code: string, reason: string): RegistrationStatus {
    this.records.put({ ...record, state: "failed", code, reason });
    return { state: "failed", identity: record.identity, code, reason, txHash: record.txHash };
  }
}

/** A replacement must pay at least 10% more; 25% gets it through every client's rule. */
function bump(fee: bigint): bigint {
  return (fee * 125n) / 100n + 1n;
}
