import crypto, { type ECDH, type KeyObject } from "node:crypto";
import * as secp from "@noble/secp256k1";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";
import { getAddress, getBytes, hashMessage } from "ethers";
import { MystError } from "../errors/MystError";
import { sameAddress, type Address } from "../values/address";
import { privateKeyObject, signBytes } from "./protocol-signature";

secp.hashes.hmacSha256 = (key, msg) => hmac(sha256, key, msg);
secp.hashes.sha256 = sha256;

export class InvalidKeyError extends MystError {
  constructor(message: string) {
    super("INVALID_KEY", message);
  }
}

export class InvalidSignatureError extends MystError {
  constructor(message: string) {
    super("INVALID_SIGNATURE", message);
  }
}

/** A 0x-prefixed, lower-case hex string. */
export type Hex = `0x${string}`;

export function toHex(bytes: Uint8Array): Hex {
  return `0x${bytesToHex(bytes)}`;
}

export function fromHex(hex: string, what = "value"): Uint8Array {
  const body = hex.startsWith("0x") || hex.startsWith("0X") ? hex.slice(2) : hex;
  if (body.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(body)) throw new InvalidKeyError(`${what} is not hex`);
  return hexToBytes(body);
}

/** The identity of a public key: the last 20 bytes of keccak256 of its 64-byte (x‖y) form. */
export function addressOfPublicKey(publicKey: Uint8Array): Address {
  const raw = uncompressed64(publicKey);
  return getAddress(toHex(keccak_256(raw).slice(12))) as Address;
}

/** Accepts a 33-byte compressed, 65-byte (0x04‖x‖y) or 64-byte (x‖y) key; returns x‖y. */
export function uncompressed64(publicKey: Uint8Array): Uint8Array {
  if (publicKey.length === 64) {
    if (!secp.utils.isValidPublicKey(concat(Uint8Array.of(4), publicKey), false)) {
      throw new InvalidKeyError("public key is not a point on secp256k1");
    }
    return publicKey;
  }
  try {
    return secp.Point.fromBytes(publicKey).toBytes(false).slice(1);
  } catch {
    throw new InvalidKeyError(`public key of ${publicKey.length} bytes is not a secp256k1 point`);
  }
}

/** keccak256 of an EIP-191 personal message, as wallets (`personal_sign`) hash it. */
export function hashPersonalMessage(message: Uint8Array): Uint8Array {
  return getBytes(hashMessage(message));
}

/** Recovers the signer's address from a 65-byte r‖s‖v signature over a 32-byte digest. */
export function recoverAddress(digest: Uint8Array, signature: Uint8Array): Address {
  return addressOfPublicKey(recoverPublicKey(digest, signature));
}

export function recoverPublicKey(digest: Uint8Array, signature: Uint8Array): Uint8Array {
  if (signature.length !== 65) throw new InvalidSignatureError(`signature must be 65 bytes, got ${signature.length}`);
  const v = signature[64];
  const recovery = v >= 27 ? v - 27 : v;
  if (recovery !== 0 && recovery !== 1) throw new InvalidSignatureError(`signature recovery byte ${v} is invalid`);
  const s = secp.etc.bytesToNumberBE(signature.subarray(32, 64));
  if (s > secp.Point.CURVE().n / 2n) throw new InvalidSignatureError("signature is malleable (high s)");
  try {
    const recovered = concat(Uint8Array.of(recovery), signature.subarray(0, 64));
    return secp.recoverPublicKey(recovered, digest, { prehash: false });
  } catch {
    throw new InvalidSignatureError("signature does not recover a public key");
  }
}

/** Whether `signature` over `message` (EIP-191) was made by `address`. Never throws. */
export function verifyMessage(message: Uint8Array, signature: Uint8Array, address: string): boolean {
  try {
    return sameAddress(recoverAddress(hashPersonalMessage(message), signature), address);
  } catch {
    return false;
  }
}

/** An unlocked identity: a secp256k1 secret key and what derives from it. */
export class IdentityKey {
  readonly publicKey: Uint8Array;
  readonly address: Address;
  readonly #secret: Uint8Array;
  #protocolKey?: KeyObject;
  #ecdh?: ECDH;

  constructor(secretKey: Uint8Array) {
    if (!secp.utils.isValidSecretKey(secretKey)) throw new InvalidKeyError("private key is not a valid secp256k1 scalar");
    this.#secret = Uint8Array.from(secretKey);
    this.publicKey = secp.getPublicKey(this.#secret, false).slice(1);
    this.address = addressOfPublicKey(this.publicKey);
  }

  static generate(): IdentityKey {
    return new IdentityKey(secp.utils.randomSecretKey());
  }

  static fromHex(privateKey: string): IdentityKey {
    const bytes = fromHex(privateKey.trim(), "private key");
    if (bytes.length !== 32) throw new InvalidKeyError(`private key must be 32 bytes, got ${bytes.length}`);
    return new IdentityKey(bytes);
  }

  /** The secret key, for the keystore only. */
  privateKeyHex(): Hex {
    return toHex(this.#secret);
  }

  /** Signs a 32-byte digest: 65 bytes r‖s‖v with v = 27 | 28, low s (what ecrecover and OZ ECDSA take). */
  signDigest(digest: Uint8Array): Uint8Array {
    if (digest.length !== 32) throw new InvalidSignatureError(`digest must be 32 bytes, got ${digest.length}`);
    const sig = secp.sign(digest, this.#secret, { format: "recovered", prehash: false });
    return concat(sig.subarray(1, 65), Uint8Array.of(27 + sig[0]));
  }

  /** Signs an EIP-191 personal message, as `personal_sign` would. */
  signMessage(message: Uint8Array): Uint8Array {
    return this.signDigest(hashPersonalMessage(message));
  }

  /** Signs a protocol message's exact bytes (see protocol-signature.ts): 64 bytes r‖s. */
  signProtocol(bytes: Uint8Array): Uint8Array {
    this.#protocolKey ??= privateKeyObject(this.#secret, this.publicKey);
    return signBytes(this.#protocolKey, bytes);
  }

  /**
   * The ECDH shared secret (x coordinate) with a public key (64-byte x‖y, or 33/65-byte SEC1).
   * OpenSSL's curve, for speed: it is on every incoming dialog's first message.
   */
  sharedSecret(publicKey: Uint8Array): Uint8Array {
    if (!this.#ecdh) {
      this.#ecdh = crypto.createECDH("secp256k1");
      this.#ecdh.setPrivateKey(this.#secret);
    }
    const point = publicKey.length === 64 ? concat(Uint8Array.of(4), publicKey) : publicKey;
    try {
      return this.#ecdh.computeSecret(point);
    } catch {
      throw new InvalidKeyError("the peer's public key is not a secp256k1 point");
    }
  }
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  return secp.etc.concatBytes(...parts);
}
