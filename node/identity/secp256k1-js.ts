import crypto, { type ECDH, type KeyObject } from "node:crypto";
import * as secp from "@noble/secp256k1";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import type { Secp256k1 } from "./secp256k1";

/**
 * The fallback when libsecp256k1's binding does not load: Node's OpenSSL where it is faster than
 * JS (protocol signatures, their verification, ECDH), @noble/secp256k1 where OpenSSL cannot help
 * (deterministic Ethereum signatures and public-key recovery).
 */

secp.hashes.hmacSha256 = (key, msg) => hmac(sha256, key, msg);
secp.hashes.sha256 = sha256;

const b64url = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");

/** Per secret key (the caller's own array, kept as long as it is): its OpenSSL objects. */
const signingKeys = new WeakMap<Uint8Array, KeyObject>();
const ecdhKeys = new WeakMap<Uint8Array, ECDH>();

const publicKeys = new Map<string, KeyObject>();
/** A discovery replica sees every provider: keep all their keys (a KeyObject is a few hundred bytes). */
const PUBLIC_KEY_CACHE = 100_000;
/** DER SubjectPublicKeyInfo of an uncompressed secp256k1 point, up to the point's 0x04 prefix. */
const SPKI_SECP256K1 = Buffer.from("3056301006072a8648ce3d020106052b8104000a03420004", "hex");

/** The KeyObject of a 64-byte (x‖y) public key, cached (bounded). Imported as DER: half the cost of JWK. */
function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const id = Buffer.from(publicKey).toString("hex");
  let key = publicKeys.get(id);
  if (!key) {
    key = crypto.createPublicKey({ format: "der", type: "spki", key: Buffer.concat([SPKI_SECP256K1, publicKey]) });
    if (publicKeys.size >= PUBLIC_KEY_CACHE) publicKeys.delete(publicKeys.keys().next().value!);
    publicKeys.set(id, key);
  }
  return key;
}

function ecdhOf(secret: Uint8Array): ECDH {
  let ecdh = ecdhKeys.get(secret);
  if (!ecdh) {
    ecdh = crypto.createECDH("secp256k1");
    ecdh.setPrivateKey(secret);
    ecdhKeys.set(secret, ecdh);
  }
  return ecdh;
}

const sec1 = (publicKey: Uint8Array) => (publicKey.length === 64 ? secp.etc.concatBytes(Uint8Array.of(4), publicKey) : publicKey);

export const jsSecp256k1: Secp256k1 = {
  implementation: "noble+openssl",

  isValidSecretKey: (secret) => secp.utils.isValidSecretKey(secret),

  publicKey: (secret) => secp.getPublicKey(secret, false).subarray(1),

  compressedPublicKey: (secret) => ecdhOf(secret).getPublicKey(null, "compressed"),

  toXY(publicKey) {
    if (publicKey.length !== 33 && publicKey.length !== 64 && publicKey.length !== 65) return null;
    try {
      return secp.Point.fromBytes(sec1(publicKey)).toBytes(false).subarray(1);
    } catch {
      return null;
    }
  },

  signDigest(digest, secret) {
    const sig = secp.sign(digest, secret, { format: "recovered", prehash: false });
    return { signature: sig.subarray(1, 65), recovery: sig[0] as 0 | 1 };
  },

  recover(digest, signature, recovery) {
    try {
      const recovered = secp.etc.concatBytes(Uint8Array.of(recovery), signature);
      return secp.recoverPublicKey(recovered, digest, { prehash: false, isCompressed: false }).subarray(1);
    } catch {
      return null;
    }
  },

  signSha256(bytes, secret, publicKey) {
    let key = signingKeys.get(secret);
    if (!key) {
      key = crypto.createPrivateKey({
        format: "jwk",
        key: { kty: "EC", crv: "secp256k1", d: b64url(secret), x: b64url(publicKey.subarray(0, 32)), y: b64url(publicKey.subarray(32, 64)) },
      });
      signingKeys.set(secret, key);
    }
    return crypto.sign("sha256", bytes, { key, dsaEncoding: "ieee-p1363" });
  },

  verifySha256(bytes, signature, publicKey) {
    if (signature.length !== 64 || publicKey.length !== 64) return false;
    try {
      return crypto.verify("sha256", bytes, { key: publicKeyObject(publicKey), dsaEncoding: "ieee-p1363" }, signature);
    } catch {
      return false;
    }
  },

  sharedSecret(secret, publicKey) {
    try {
      return ecdhOf(secret).computeSecret(sec1(publicKey));
    } catch {
      return null;
    }
  },
};
