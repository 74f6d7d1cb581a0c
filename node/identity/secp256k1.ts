import { jsSecp256k1 } from "./secp256k1-js";
import { loadNativeSecp256k1 } from "./secp256k1-native";

/**
 * Every secp256k1 operation the node does, behind one port with two adapters:
 *
 * - `libsecp256k1`: Bitcoin Core's C library through the `secp256k1` npm package's bundled
 *   prebuilt binding (linux-x64 glibc/musl, darwin-arm64, win32-x64; nothing is downloaded or
 *   compiled at install). About 0.05–0.1 ms a signature, a verification, a recovery or an ECDH.
 * - `noble+openssl`: what runs when that binding does not load: Node's own OpenSSL for protocol
 *   signatures, their verification and ECDH (about 0.3 ms each), @noble/secp256k1 (pure JS) for
 *   Ethereum signatures and recovery (about 0.7 and 3 ms).
 *
 * Both sign Ethereum digests deterministically (RFC 6979, low s) and so give the same bytes; both
 * recover, verify and agree on ECDH alike (test/node/identity/secp256k1.test.ts). Protocol
 * signatures are ECDSA over SHA-256 of the bytes: OpenSSL's nonce is random, libsecp256k1's is
 * RFC 6979, and each verifies the other's (a high s, as OpenSSL may make, is accepted).
 *
 * `MYST_SECP256K1=js` forces the fallback (to measure or test it).
 */
export interface Secp256k1 {
  readonly implementation: "libsecp256k1" | "noble+openssl";
  isValidSecretKey(secret: Uint8Array): boolean;
  /** The 64-byte x‖y public key of a valid secret key. */
  publicKey(secret: Uint8Array): Uint8Array;
  /** The 33-byte compressed public key of a valid secret key. */
  compressedPublicKey(secret: Uint8Array): Uint8Array;
  /** x‖y of a 33-byte compressed, 65-byte (0x04‖x‖y) or 64-byte (x‖y) key; null when it is not a curve point. */
  toXY(publicKey: Uint8Array): Uint8Array | null;
  /** Signs a 32-byte digest: r‖s (64 bytes, low s, RFC 6979) and the recovery bit. */
  signDigest(digest: Uint8Array, secret: Uint8Array): { signature: Uint8Array; recovery: 0 | 1 };
  /** The x‖y public key that made r‖s over `digest` with `recovery` (0 or 1); null when none does. */
  recover(digest: Uint8Array, signature: Uint8Array, recovery: 0 | 1): Uint8Array | null;
  /** A protocol signature: ECDSA over SHA-256 of `bytes`, 64 bytes r‖s. */
  signSha256(bytes: Uint8Array, secret: Uint8Array, publicKey: Uint8Array): Uint8Array;
  /** Whether r‖s over SHA-256 of `bytes` was made by the x‖y key `publicKey`, whatever half s is in. Never throws. */
  verifySha256(bytes: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean;
  /** The ECDH shared secret: the x coordinate of secret·publicKey (33/64/65-byte key); null when the key is not a curve point. */
  sharedSecret(secret: Uint8Array, publicKey: Uint8Array): Uint8Array | null;
}

function choose(): Secp256k1 {
  if (process.env.MYST_SECP256K1 === "js") return jsSecp256k1;
  return loadNativeSecp256k1() ?? jsSecp256k1;
}

/** The implementation this process uses: the native one when it loads. */
export const secp256k1: Secp256k1 = choose();
