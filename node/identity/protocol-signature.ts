import crypto, { type KeyObject } from "node:crypto";

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
