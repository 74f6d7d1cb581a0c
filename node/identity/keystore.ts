import fs from "node:fs";
import path from "node:path";
import { encryptKeystoreJson, getAddress } from "ethers";
import { MystError } from "../errors/MystError";
import { IdentityKey, InvalidKeyError } from "./key";
import { decryptSecretStorage, parseSecretStorage, SecretStorageError } from "./secret-storage";

export type KeystoreErrorCode =
  | "IDENTITY_EXISTS"
  | "IDENTITY_NOT_FOUND"
  | "INVALID_ADDRESS"
  | "KEYSTORE_CORRUPT"
  | "KEYSTORE_FILE_UNREADABLE"
  | "KEYSTORE_UNREADABLE"
  | "PASSPHRASE_EMPTY"
  | "WRONG_PASSPHRASE";

export class KeystoreError extends MystError<KeystoreErrorCode> {}

/** scrypt costs: geth's standard (N=2^18 is geth's; 2^17 is ethers' and MetaMask's) and geth's "light". */
export const SCRYPT_STANDARD = { N: 131072, r: 8, p: 1 } as const;
export const SCRYPT_LIGHT = { N: 4096, r: 8, p: 6 } as const;

export interface KeystoreOptions {
  /** `<data-dir>/keystore` */
  dir: string;
  /** Use the light scrypt cost (fast, weaker): tests and throwaway identities. */
  lightKdf?: boolean;
}

export interface KeystoreEntry {
  address: string;
  file: string;
}

/**
 * Ethereum keystore v3 files (scrypt), one per identity, interchangeable with geth, ethers and
 * MetaMask exports. Files are 0600 in a 0700 directory and are never overwritten or rewritten.
 */
export class Keystore {
  readonly dir: string;
  readonly #scrypt: { N: number; r: number; p: number };

  constructor(options: KeystoreOptions) {
    this.dir = options.dir;
    this.#scrypt = options.lightKdf ? { ...SCRYPT_LIGHT } : { ...SCRYPT_STANDARD };
  }

  /** Makes a new identity and stores it encrypted with `passphrase`. */
  async create(passphrase: string): Promise<KeystoreEntry> {
    requirePassphrase(passphrase);
    return this.#write(IdentityKey.generate(), passphrase);
  }

  /** All identities in the keystore directory, oldest file first. Unreadable files are skipped. */
  list(): KeystoreEntry[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw new KeystoreError("KEYSTORE_UNREADABLE", `cannot read keystore directory ${this.dir}`, { cause: err });
    }
    const entries: KeystoreEntry[] = [];
    for (const name of names) {
      const file = path.join(this.dir, name);
      const address = addressInFile(file);
      if (address) entries.push({ address, file });
    }
    return entries;
  }

  /** The keystore file of `address`, or an IDENTITY_NOT_FOUND error. */
  find(address: string): KeystoreEntry {
    const wanted = normalizeAddress(address);
    const entry = this.list().find((e) => e.address.toLowerCase() === wanted);
    if (!entry) throw new KeystoreError("IDENTITY_NOT_FOUND", `no identity ${address} in ${this.dir}`);
    return entry;
  }

  /** Decrypts the identity's key. */
  async unlock(address: string, passphrase: string): Promise<IdentityKey> {
    const entry = this.find(address);
    return decrypt(fs.readFileSync(entry.file, "utf8"), passphrase, entry.file);
  }

  /**
   * Imports a keystore v3 file made by geth, ethers or MetaMask (scrypt or PBKDF2). It is checked
   * by decrypting it with `passphrase`; with `newPassphrase` it is re-encrypted, otherwise copied
   * byte for byte, except that a file without `address` (the Web3 Secret Storage test vectors) gets
   * the address filled in, so it can be listed and found. The source file is never modified.
   */
  async import(sourceFile: string, passphrase: string, newPassphrase?: string): Promise<KeystoreEntry> {
    let json: string;
    try {
      json = fs.readFileSync(sourceFile, "utf8");
    } catch (err) {
      throw new KeystoreError("KEYSTORE_FILE_UNREADABLE", `cannot read ${sourceFile}: ${(err as NodeJS.ErrnoException).code ?? err}`, {
        cause: err,
      });
    }
    return this.importJson(json, passphrase, newPassphrase, sourceFile);
  }

  /** `import` of keystore JSON already read (`source` names it in errors). */
  async importJson(json: string, passphrase: string, newPassphrase?: string, source = "the keystore JSON"): Promise<KeystoreEntry> {
    const key = await decrypt(json, passphrase, source);
    if (this.list().some((e) => e.address === key.address)) {
      throw new KeystoreError("IDENTITY_EXISTS", `identity ${key.address} is already in ${this.dir}`);
    }
    if (newPassphrase !== undefined) {
      requirePassphrase(newPassphrase);
      return this.#write(key, newPassphrase);
    }
    const parsed = JSON.parse(json) as Record<string, unknown>;
    if (typeof parsed.address !== "string") return this.#store(key.address, JSON.stringify({ address: key.address.slice(2).toLowerCase(), ...parsed }));
    return this.#store(key.address, json);
  }

  /** The keystore JSON of an identity; re-encrypted under `newPassphrase` when one is given. */
  async export(address: string, reencrypt?: { passphrase: string; newPassphrase: string }): Promise<string> {
    const entry = this.find(address);
    const json = fs.readFileSync(entry.file, "utf8");
    if (!reencrypt) return json;
    requirePassphrase(reencrypt.newPassphrase);
    const key = await decrypt(json, reencrypt.passphrase, entry.file);
    return encryptKeystoreJson({ address: key.address, privateKey: key.privateKeyHex() }, reencrypt.newPassphrase, {
      scrypt: this.#scrypt,
    });
  }

  async #write(key: IdentityKey, passphrase: string): Promise<KeystoreEntry> {
    const json = await encryptKeystoreJson({ address: key.address, privateKey: key.privateKeyHex() }, passphrase, {
      scrypt: this.#scrypt,
    });
    return this.#store(key.address, json);
  }

  #store(address: string, json: string): KeystoreEntry {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const stamp = new Date().toISOString().replace(/:/g, "-");
    const file = path.join(this.dir, `UTC--${stamp}--${address.slice(2).toLowerCase()}`);
    // "wx": never overwrite a key file.
    fs.writeFileSync(file, json, { mode: 0o600, flag: "wx" });
    return { address, file };
  }
}

function requirePassphrase(passphrase: string): void {
  if (passphrase.length === 0) throw new KeystoreError("PASSPHRASE_EMPTY", "the passphrase must not be empty");
}

function normalizeAddress(address: string): string {
  const a = address.toLowerCase();
  if (!/^0x[0-9a-f]{40}$/.test(a)) throw new KeystoreError("INVALID_ADDRESS", `"${address}" is not an identity address (0x + 40 hex)`);
  return a;
}

/** The address a keystore file claims, or null when the file is not a keystore. */
function addressInFile(file: string): string | null {
  try {
    const data = JSON.parse(fs.readFileSync(file, "utf8"));
    if (typeof data?.address !== "string") return null;
    const hex = data.address.toLowerCase().replace(/^0x/, "");
    if (!/^[0-9a-f]{40}$/.test(hex)) return null;
    return getAddress(`0x${hex}`);
  } catch {
    return null;
  }
}

async function decrypt(json: string, passphrase: string, file: string): Promise<IdentityKey> {
  const parsed = parseSecretStorage(json);
  if (!parsed) throw new KeystoreError("KEYSTORE_CORRUPT", `${file} is not a keystore v3 file (corrupt or truncated?)`);
  let privateKey: Uint8Array;
  try {
    privateKey = await decryptSecretStorage(parsed, passphrase);
  } catch (err) {
    if (err instanceof SecretStorageError && err.code === "WRONG_PASSPHRASE") {
      throw new KeystoreError("WRONG_PASSPHRASE", `wrong passphrase for ${file}`, { cause: err });
    }
    const why = err instanceof SecretStorageError ? err.message : "it cannot be decrypted";
    throw new KeystoreError("KEYSTORE_CORRUPT", `${file} cannot be decrypted: ${why} (corrupt or truncated?)`, { cause: err });
  }
  let key: IdentityKey;
  try {
    key = new IdentityKey(privateKey);
  } catch (err) {
    if (err instanceof InvalidKeyError) throw new KeystoreError("KEYSTORE_CORRUPT", `${file} holds an invalid key`, { cause: err });
    throw err;
  }
  if (parsed.address !== undefined && parsed.address.replace(/^0x/, "").toLowerCase() !== key.address.slice(2).toLowerCase()) {
    throw new KeystoreError("KEYSTORE_CORRUPT", `${file} names ${parsed.address} but holds the key of ${key.address}`);
  }
  return key;
}
