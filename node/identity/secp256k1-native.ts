import crypto from "node:crypto";
import type { Secp256k1 } from "./secp256k1";

/**
 * libsecp256k1 through the `secp256k1` package's prebuilt binding (`secp256k1/bindings`: the
 * binding alone, never the package's own silent fallback to elliptic). Null when it does not load
 * on this platform; the caller then uses the JS fallback.
 */

/** What this file uses of the package's v4 API (see its API.md). */
interface Binding {
  privateKeyVerify(secret: Uint8Array): boolean;
  publicKeyCreate(secret: Uint8Array, compressed: boolean): Uint8Array;
  publicKeyConvert(publicKey: Uint8Array, compressed: boolean): Uint8Array;
  signatureNormalize(signature: Uint8Array): Uint8Array;
  ecdsaSign(digest: Uint8Array, secret: Uint8Array): { signature: Uint8Array; recid: number };
  ecdsaVerify(signature: Uint8Array, digest: Uint8Array, publicKey: Uint8Array): boolean;
  ecdsaRecover(signature: Uint8Array, recid: number, digest: Uint8Array, compressed: boolean): Uint8Array;
  ecdh(publicKey: Uint8Array, secret: Uint8Array, options: { hashfn: (x: Uint8Array) => Uint8Array }, output: Uint8Array): Uint8Array;
}

const sha256 = (bytes: Uint8Array) => crypto.hash("sha256", bytes, "buffer");
const sec1 = (publicKey: Uint8Array) => (publicKey.length === 64 ? Buffer.concat([Buffer.of(4), publicKey]) : publicKey);
/** ECDH's output is the x coordinate, as OpenSSL's and noble's (the package's default would hash the point). */
const X_ONLY = { hashfn: (x: Uint8Array) => x };

export function nativeSecp256k1(n: Binding): Secp256k1 {
  return {
    implementation: "libsecp256k1",

    isValidSecretKey: (secret) => secret.length === 32 && n.privateKeyVerify(secret),

    publicKey: (secret) => n.publicKeyCreate(secret, false).subarray(1),

    compressedPublicKey: (secret) => n.publicKeyCreate(secret, true),

    toXY(publicKey) {
      if (publicKey.length !== 33 && publicKey.length !== 64 && publicKey.length !== 65) return null;
      try {
        return n.publicKeyConvert(sec1(publicKey), false).subarray(1);
      } catch {
        return null;
      }
    },

    signDigest(digest, secret) {
      const { signature, recid } = n.ecdsaSign(digest, secret);
      return { signature, recovery: recid as 0 | 1 };
    },

    recover(digest, signature, recovery) {
      try {
        return n.ecdsaRecover(signature, recovery, digest, false).subarray(1);
      } catch {
        return null;
      }
    },

    signSha256: (bytes, secret) => n.ecdsaSign(sha256(bytes), secret).signature,

    verifySha256(bytes, signature, publicKey) {
      if (signature.length !== 64 || publicKey.length !== 64) return false;
      try {
        // libsecp256k1 accepts only low s; OpenSSL (the fallback, and older nodes) signs either half.
        const lowS = signature[32] < 0x7f ? signature : n.signatureNormalize(Uint8Array.from(signature));
        return n.ecdsaVerify(lowS, sha256(bytes), sec1(publicKey));
      } catch {
        return false;
      }
    },

    sharedSecret(secret, publicKey) {
      if (publicKey.length !== 33 && publicKey.length !== 64 && publicKey.length !== 65) return null;
      try {
        return n.ecdh(sec1(publicKey), secret, X_ONLY, new Uint8Array(32));
      } catch {
        return null;
      }
    },
  };
}

/** The native implementation, or null when its binding does not load here. */
export function loadNativeSecp256k1(): Secp256k1 | null {
  try {
    return nativeSecp256k1(require("secp256k1/bindings") as Binding);
  } catch {
    return null;
  }
}
