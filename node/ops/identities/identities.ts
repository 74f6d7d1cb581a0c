import { Wallet } from "ethers";
import type { RegistrationStatus } from "../../chain/registration";
import { ConsumerVaultClient } from "../../chain/vault";
import type { NodeCore } from "../../daemon/core";
import { MystError, isMystError } from "../../errors/MystError";
import { type IdentityKey, toHex } from "../../identity/key";
import type { Address } from "../../values/address";

/** The keystore's identities and their registration on chain. */
export class IdentityOps {
  constructor(private readonly core: NodeCore) {}

  /** The keystore's identities; `registered` is null when the chain cannot be asked. */
  async list(): Promise<{ address: string; keystoreFile: string; node: boolean; registered: boolean | null }[]> {
    const registry = await this.core
      .chain()
      .then((c) => c.registry)
      .catch(() => undefined);
    return Promise.all(
      this.core.keystore.list().map(async (e) => ({
        address: e.address,
        keystoreFile: e.file,
        node: e.address === this.core.identity,
        registered: registry ? await registry.isRegistered(e.address).catch(() => null) : null,
      })),
    );
  }

  async create(passphrase: string): Promise<{ address: string; keystoreFile: string }> {
    const entry = await this.core.keystore.create(passphrase);
    this.core.log.info({ identity: entry.address }, "identity created");
    return { address: entry.address, keystoreFile: entry.file };
  }

  /** Imports keystore v3 JSON (geth, ethers, MetaMask), checked with its passphrase; re-encrypted with `newPassphrase`. */
  async import(options: { keystore: string; passphrase: string; newPassphrase?: string; source?: string }) {
    const entry = await this.core.keystore.importJson(options.keystore, options.passphrase, options.newPassphrase, options.source);
    this.core.log.info({ identity: entry.address }, "identity imported");
    return { address: entry.address, keystoreFile: entry.file };
  }

  /** An identity's keystore JSON, as stored or re-encrypted under a new passphrase. */
  async export(id: Address, reencrypt?: { passphrase: string; newPassphrase: string }): Promise<{ address: string; keystore: string }> {
    return { address: id, keystore: await this.core.keystore.export(id, reencrypt) };
  }

  /**
   * An identity: its keystore file, MYST balance and registration (null and "unknown" when the
   * chain cannot be asked), and its public key when it is the node's own and unlocked.
   */
  async show(id: Address) {
    const file = this.core.keystore.list().find((e) => e.address === id)?.file ?? null;
    const why = (err: unknown) => (err instanceof Error ? err.message : String(err));
    const [registration, balance] = await this.core.chain().then(
      (c) =>
        Promise.all([
          c.registrar.status(id).catch((err): { state: "unknown"; identity: string; reason: string } => ({ state: "unknown", identity: id, reason: why(err) })),
          new ConsumerVaultClient(c.conn).tokenBalance(id).catch(() => null),
        ]),
      (err) => [{ state: "unknown" as const, identity: id, reason: why(err) }, null] as const,
    );
    // The public key shows when the key can be unlocked; a wrong passphrase is an error, none is not.
    const key =
      id === this.core.identity
        ? await this.core.unlocked().catch((err) => (isMystError(err, "PASSPHRASE_MISSING") ? undefined : Promise.reject(err)))
        : undefined;
    return {
      address: id,
      node: id === this.core.identity,
      keystoreFile: file,
      ...(key ? { publicKey: toHex(key.publicKey) } : {}),
      balanceWei: balance === null ? null : balance.toString(),
      registration,
    };
  }

  /**
   * Registers an identity, paying gas from its own account or a relayer's; the node's own needs no
   * passphrase.
   */
  async register(id: Address, options: { passphrase?: string; beneficiary?: Address; relayer?: IdentityKey }): Promise<RegistrationStatus> {
    let key: IdentityKey;
    if (id === this.core.identity) key = await this.core.unlocked();
    else if (options.passphrase === undefined)
      throw new MystError("PASSPHRASE_REQUIRED", `${id} is not the node's identity: give its passphrase to register it`);
    else key = await this.core.keystore.unlock(id, options.passphrase);
    const { registrar, conn } = await this.core.chain();
    return registrar.register(key, {
      submitter: new Wallet((options.relayer ?? key).privateKeyHex(), conn.provider),
      beneficiary: options.beneficiary,
      timeoutMs: this.core.config.registrationTimeoutMs,
    });
  }
}
