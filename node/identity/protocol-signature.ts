import crypto, { type KeyObject } from "node:crypto";
import * as secp from "@noble/secp256k1";
import { keccak_256 } from "@noble/hashes/sha3.js";

/**
 * Signatures of the node's own protocol messages (dialog messages, proposals): ECDSA over SHA-256
 * of the exact bytes, on secp256k1 with the identity's key, 64 bytes r‖s. OpenSSL does these in
 * about 0.3 ms each way where the pure-JS curve needs 2.2 ms to verify, and the dialog signs every
 * message. (Ethereum signatures for the contracts stay in key.ts.) Verification is against the
 * public key the identity registered on chain.
 */

const b64url = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");

export function privateKeyObject(secret: Uint8Array, publicKey: Uint8Array): KeyObject {
  return crypto.createPrivateKey({
    format: "jwk",
    key: { kty: "EC", crv: "secp256k1", d: b64url(secret), x: b64url(publicKey.subarray(0, 32)), y: b64url(publicKey.subarray(32, 64)) },
  });
}

const publicKeys = new Map<string, KeyObject>();
/** A discovery replica sees every provider: keep all their keys (a KeyObject is a few hundred bytes). */
const PUBLIC_KEY_CACHE = 100_000;
/** DER SubjectPublicKeyInfo of an uncompressed secp256k1 point, up to the point's 0x04 prefix. */
const SPKI_SECP256K1 = Buffer.from("3056301006072a8648ce3d020106052b8104000a03420004", "hex");

/** The KeyObject of a 64-byte (x‖y) public key, cached (bounded). Imported as DER: half the cost of JWK. */
export function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const id = Buffer.from(publicKey).toString("hex");
  let key = publicKeys.get(id);
  if (!key) {
    key = crypto.createPublicKey({ format: "der", type: "spki", key: Buffer.concat([SPKI_SECP256K1, publicKey]) });
    if (publicKeys.size >= PUBLIC_KEY_CACHE) publicKeys.delete(publicKeys.keys().next().value!);
    publicKeys.set(id, key);
  }
  return key;
}

export function signBytes(privateKey: KeyObject, bytes: Uint8Array): Uint8Array {
  return crypto.sign("sha256", bytes, { key: privateKey, dsaEncoding: "ieee-p1363" });
}

/** Whether `signature` (64 bytes) over `bytes` was made by the key `publicKey` (64 bytes). Never throws. */
export function verifyBytes(publicKey: Uint8Array, bytes: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 64) return false;
  try {
    return crypto.verify("sha256", bytes, { key: publicKeyObject(publicKey), dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    return false;
  }
}

/**
 * The public key that made `signature` over `bytes`, when its address is `claimed`; null when the
 * signature was made by any other key or is no signature at all. Pure computation (public-key
 * recovery, about 2.5 ms per candidate in JS): it asks no registry, so junk costs no chain call.
 */
export function recoverClaimedSigner(claimed: string, bytes: Uint8Array, signature: Uint8Array): Uint8Array | null {
  if (signature.length !== 64 || !/^0x[0-9a-fA-F]{40}$/.test(claimed)) return null;
  const digest = crypto.createHash("sha256").update(bytes).digest();
  const want = claimed.slice(2).toLowerCase();
  for (const recovery of [0, 1]) {
    let publicKey: Uint8Array;
    try {
      publicKey = secp.recoverPublicKey(Uint8Array.from([recovery, ...signature]), digest, { prehash: false, isCompressed: false }).subarray(1);
    } catch {
      continue;
    }
    if (Buffer.from(keccak_256(publicKey).subarray(12)).toString("hex") === want) return publicKey;
  }
  return null;
}

/** Who is registered, and with which key: the chain's registry, cached (see chain/registry.ts). */
/** Who is registered, and with which key (the chain's registry, cached): what every signature check asks. */
export type PublicKeyDirectory = SignerDirectory;

export interface SignerDirectory {
  publicKeyOf(identity: string): Promise<Uint8Array | null>;
  /** The key when already known locally, without asking the chain; undefined when not known. */
  knownPublicKeyOf?(identity: string): Uint8Array | undefined;
}

export type SignerCheck = { publicKey: Uint8Array } | { fail: "bad-signature" | "unregistered" };

/**
 * Checks that `claimed` signed `bytes`, cheapest test first: against a key already known (OpenSSL,
 * 0.3 ms), else by recovering the signer from the signature; the registry is asked only once the
 * signature is known to be the claimed identity's own. A directory failure is thrown.
 */
export async function checkSigner(claimed: string, bytes: Uint8Array, signature: Uint8Array, directory: SignerDirectory): Promise<SignerCheck> {
  const known = directory.knownPublicKeyOf?.(claimed);
  if (known) return verifyBytes(known, bytes, signature) ? { publicKey: known } : { fail: "bad-signature" };
  const recovered = recoverClaimedSigner(claimed, bytes, signature);
  if (!recovered) return { fail: "bad-signature" };
  const registered = await directory.publicKeyOf(claimed);
  if (!registered) return { fail: "unregistered" };
  return Buffer.from(registered).equals(Buffer.from(recovered)) ? { publicKey: registered } : { fail: "bad-signature" };
}
