import { getAddress, getBytes, ZeroAddress, type Signer } from "ethers";
import { MystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import type { ChainConnection } from "./connect";
import { registrationTypes, registryDomain } from "./eip712";
import { toChainError } from "./errors";
import { TypedDataEncoder } from "ethers";

/** What the registry says about one identity. */
export interface IdentityRecord {
  address: string;
  publicKey: Uint8Array;
  beneficiary: string;
}

export interface IdentityRegistryClientOptions {
  /** How long "not registered" is believed before asking the chain again. Default 2 s. */
  negativeTtlMs?: number;
  /**
   * How many "not registered" answers are remembered. Default 10,000 (about 1 MB). Past it the
   * least recently asked goes first, so a flood of random addresses cannot grow the cache.
   */
  maxNegativeEntries?: number;
}

/**
 * Registry lookups for the rest of the node. Positive answers are cached for good (a key never
 * changes) and beneficiaries are kept fresh from `BeneficiaryChanged` events; negative answers are
 * cached briefly, bounded (least recently asked out first) and cleared by `IdentityRegistered` events.
 */
export class IdentityRegistryClient {
  readonly #conn: ChainConnection;
  readonly #negativeTtlMs: number;
  readonly #maxNegative: number;
  readonly #known = new Map<string, IdentityRecord>();
  readonly #unknownUntil = new Map<string, number>();
  #started = false;
  #pollTimer?: NodeJS.Timeout;
  #polling?: Promise<void>;
  #fromBlock = 0;

  constructor(conn: ChainConnection, options: IdentityRegistryClientOptions = {}) {
    this.#conn = conn;
    this.#negativeTtlMs = options.negativeTtlMs ?? 2000;
    this.#maxNegative = options.maxNegativeEntries ?? 10_000;
  }

  /**
   * Follows the registry's events from the current block on. The polling is our own (getLogs over
   * block ranges) so that `stop` can wait for the poll in flight and nothing outlives it.
   */
  async start(options: { pollMs?: number } = {}): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#fromBlock = (await this.#conn.provider.getBlockNumber()) + 1;
    const pollMs = options.pollMs ?? this.#conn.provider.pollingInterval;
    const loop = () => {
      this.#polling = this.#poll()
        .catch(() => undefined)
        .finally(() => {
          if (this.#started) this.#pollTimer = setTimeout(loop, pollMs).unref();
        });
    };
    this.#pollTimer = setTimeout(loop, pollMs).unref();
  }

  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    clearTimeout(this.#pollTimer);
    await this.#polling;
  }

  async #poll(): Promise<void> {
    const latest = await this.#conn.provider.getBlockNumber();
    if (latest < this.#fromBlock) return;
    const registry = this.#conn.registry;
    const registered = registry.interface.getEvent("IdentityRegistered").topicHash;
    const changed = registry.interface.getEvent("BeneficiaryChanged").topicHash;
    const logs = await this.#conn.provider.getLogs({
      address: this.#conn.deployment.contracts.IdentityRegistry,
      fromBlock: this.#fromBlock,
      toBlock: latest,
      topics: [[registered, changed]],
    });
    for (const log of logs) {
      const parsed = registry.interface.parseLog(log);
      if (!parsed) continue;
      const address = getAddress(parsed.args[0] as string);
      if (parsed.name === "IdentityRegistered") {
        this.#unknownUntil.delete(address);
        this.#known.set(address, { address, beneficiary: getAddress(parsed.args[1] as string), publicKey: getBytes(parsed.args[2] as string) });
      } else {
        const record = this.#known.get(address);
        if (record) record.beneficiary = getAddress(parsed.args[1] as string);
      }
    }
    this.#fromBlock = latest + 1;
  }

  /**
   * The identity's registry record, or null when it is not registered. `fresh` asks the chain even
   * when "not registered" is cached (for the registration flow itself).
   */
  async lookup(identity: string, options: { fresh?: boolean } = {}): Promise<IdentityRecord | null> {
    const address = checkedAddress(identity);
    const known = this.#known.get(address);
    if (known) return known;
    const until = this.#unknownUntil.get(address);
    if (!options.fresh && until !== undefined && until > Date.now()) {
      // Refresh its place: the least recently asked entry is the one evicted.
      this.#unknownUntil.delete(address);
      this.#unknownUntil.set(address, until);
      return null;
    }
    try {
      const registry = this.#conn.registry;
      if (!(await registry.isRegistered(address))) {
        this.#rememberUnknown(address);
        return null;
      }
      const [publicKey, beneficiary] = await Promise.all([registry.publicKeyOf(address), registry.beneficiaryOf(address)]);
      const record = { address, publicKey: getBytes(publicKey), beneficiary: getAddress(beneficiary) };
      this.#known.set(address, record);
      return record;
    } catch (err) {
      throw toChainError(err, `looking up identity ${address}`);
    }
  }

  #rememberUnknown(address: string): void {
    this.#unknownUntil.delete(address);
    while (this.#unknownUntil.size >= this.#maxNegative) this.#unknownUntil.delete(this.#unknownUntil.keys().next().value!);
    this.#unknownUntil.set(address, Date.now() + this.#negativeTtlMs);
  }

  /** How many "not registered" answers are cached (bounded by `maxNegativeEntries`). */
  get negativeEntries(): number {
    return this.#unknownUntil.size;
  }

  /** The key of an identity already known to be registered, without asking the chain. */
  knownPublicKeyOf(identity: string): Uint8Array | undefined {
    try {
      // Most callers pass an address already checksummed (a dialog's sender): found without a keccak.
      return (this.#known.get(identity) ?? this.#known.get(getAddress(identity)))?.publicKey;
    } catch {
      return undefined;
    }
  }

  async isRegistered(identity: string): Promise<boolean> {
    return (await this.lookup(identity)) !== null;
  }

  /** The 64-byte public key of a registered identity, or null. */
  async publicKeyOf(identity: string): Promise<Uint8Array | null> {
    return (await this.lookup(identity))?.publicKey ?? null;
  }

  /** Where the identity's earnings go, or null when it is not registered. */
  async beneficiaryOf(identity: string): Promise<string | null> {
    return (await this.lookup(identity))?.beneficiary ?? null;
  }

  /** The identity's EIP-712 authorization of its registration, for any relayer to submit. */
  signRegistration(key: IdentityKey, beneficiary: string = ZeroAddress): Uint8Array {
    const domain = registryDomain(this.#conn.chainId, this.#conn.deployment.contracts.IdentityRegistry);
    const digest = TypedDataEncoder.hash(domain, registrationTypes, { identity: key.address, beneficiary });
    return key.signDigest(getBytes(digest));
  }

  /**
   * Simulates, then sends a registration from `submitter` (the identity itself or a relayer).
   * With `replace`, it re-sends a pending registration under the same nonce and gas limit at the
   * given fees, without simulating (the pending state already holds the first attempt).
   */
  async submitRegistration(
    key: IdentityKey,
    submitter: Signer,
    options: { beneficiary?: string; replace?: { nonce: number; gasLimit: bigint; maxFeePerGas: bigint; maxPriorityFeePerGas: bigint } } = {},
  ) {
    const beneficiary = options.beneficiary ?? ZeroAddress;
    const signature = this.signRegistration(key, beneficiary);
    const registry = this.#conn.registry.connect(submitter);
    try {
      if (options.replace) return await registry.register(key.publicKey, beneficiary, signature, options.replace);
      await registry.register.staticCall(key.publicKey, beneficiary, signature, { blockTag: "latest" });
      return await registry.register(key.publicKey, beneficiary, signature);
    } catch (err) {
      throw toChainError(err, `registering ${key.address}`);
    }
  }
}

function checkedAddress(identity: string): string {
  try {
    return getAddress(identity);
  } catch (err) {
    throw new MystError("INVALID_ADDRESS", `"${identity}" is not an identity address (0x + 40 hex)`, { cause: err });
  }
}
