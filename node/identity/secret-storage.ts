import crypto from "node:crypto";
import { scryptAsync } from "@noble/hashes/scrypt.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { MystError } from "../errors/MystError";

/**
 * Decrypts a Web3 Secret Storage (keystore v3) file, scrypt or PBKDF2, as geth does: every valid
 * file a standard library decrypts, including scrypt with r = 1 (the specification's own test
 * vector), which OpenSSL and ethers refuse by RFC 7914's N < 2^(16·r) rule. The KDF parameters
 * come from a file someone handed us, so they are bounded before any work is done.
 */

export type SecretStorageErrorCode = "KEYSTORE_CORRUPT" | "WRONG_PASSPHRASE";

export class SecretStorageError extends MystError<SecretStorageErrorCode> {}

/** Bounds on what a file may ask the KDF for: geth's standard costs fit well inside. */
const MAX_SCRYPT_MEMORY = 1024 * 1024 * 1024;
const MAX_PBKDF2_ROUNDS = 10_000_000;

const hex = (v: unknown, bytes?: number): Buffer | null => {
  if (typeof v !== "string") return null;
  const body = v.replace(/^0x/, "");
  if (!/^([0-9a-fA-F]{2})*$/.test(body) || (bytes !== undefined && body.length !== bytes * 2)) return null;
  return Buffer.from(body, "hex");
};

export interface SecretStorageFile {
  version: 3;
  /** Present in files from geth, ethers and MetaMask; absent in the specification's test vectors. */
  address?: string;
  crypto: Record<string, unknown>;
}

/** The parsed file, or null when it is not keystore v3 JSON. */
export function parseSecretStorage(json: string): SecretStorageFile | null {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    return null;
  }
  if (typeof data !== "object" || data === null) return null;
  const d = data as Record<string, unknown>;
  const c = d.crypto ?? d.Crypto;
  if (Number(d.version) !== 3 || typeof c !== "object" || c === null) return null;
  return { version: 3, ...(typeof d.address === "string" ? { address: d.address } : {}), crypto: c as Record<string, unknown> };
}

/** The 32-byte private key; WRONG_PASSPHRASE when the MAC does not match, KEYSTORE_CORRUPT when the file cannot be used. */
export async function decryptSecretStorage(file: SecretStorageFile, passphrase: string): Promise<Uint8Array> {
  const c = file.crypto;
  const corrupt = (why: string) => new SecretStorageError("KEYSTORE_CORRUPT", why);
  if (c.cipher !== "aes-128-ctr") throw corrupt(`cipher ${String(c.cipher).slice(0, 32)} is not aes-128-ctr`);
  const iv = hex((c.cipherparams as { iv?: unknown } | undefined)?.iv, 16);
  const ciphertext = hex(c.ciphertext);
  const mac = hex(c.mac, 32);
  if (!iv || !ciphertext || ciphertext.length !== 32 || !mac) throw corrupt("iv, ciphertext or mac is missing or malformed");
  const derived = await deriveKey(c, Buffer.from(passphrase.normalize("NFKC")));
  const expected = keccak_256(Buffer.concat([derived.subarray(16, 32), ciphertext]));
  if (!crypto.timingSafeEqual(Buffer.from(expected), mac)) throw new SecretStorageError("WRONG_PASSPHRASE", "the passphrase does not match the file's MAC");
  const decipher = crypto.createDecipheriv("aes-128-ctr", derived.subarray(0, 16), iv);
  return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
}

async function deriveKey(c: Record<string, unknown>, password: Buffer): Promise<Buffer> {
  const params = (c.kdfparams ?? {}) as Record<string, unknown>;
  const salt = hex(params.salt);
  const dklen = Number(params.dklen);
  if (!salt || dklen !== 32) throw new SecretStorageError("KEYSTORE_CORRUPT", "kdfparams need a hex salt and dklen 32");
  if (c.kdf === "pbkdf2") {
    const rounds = Number(params.c);
    if (params.prf !== "hmac-sha256" || !Number.isInteger(rounds) || rounds < 1 || rounds > MAX_PBKDF2_ROUNDS) {
      throw new SecretStorageError("KEYSTORE_CORRUPT", `pbkdf2 needs prf hmac-sha256 and 1..${MAX_PBKDF2_ROUNDS} rounds`);
    }
    return crypto.pbkdf2Sync(password, salt, rounds, 32, "sha256");
  }
  if (c.kdf === "scrypt") {
    const [N, r, p] = [Number(params.n), Number(params.r), Number(params.p)];
    const valid = Number.isInteger(N) && N > 1 && (N & (N - 1)) === 0 && Number.isInteger(r) && r >= 1 && r <= 32 && Number.isInteger(p) && p >= 1 && p <= 64;
    if (!valid || 128 * r * (N + p) > MAX_SCRYPT_MEMORY)
      throw new SecretStorageError("KEYSTORE_CORRUPT", `scrypt parameters n=${params.n} r=${params.r} p=${params.p} are invalid or too costly`);
    try {
      // OpenSSL: fast, but it refuses N >= 2^(16·r) (e.g. r = 1 with N = 2^18).
      return crypto.scryptSync(password, salt, 32, { N, r, p, maxmem: MAX_SCRYPT_MEMORY + 1024 * 1024 });
    } catch {
      return Buffer.from(await scryptAsync(password, salt, { N, r, p, dkLen: 32, maxmem: MAX_SCRYPT_MEMORY + 1024 * 1024 }));
    }
  }
  throw new SecretStorageError("KEYSTORE_CORRUPT", `kdf ${String(c.kdf).slice(0, 32)} is neither scrypt nor pbkdf2`);
}
