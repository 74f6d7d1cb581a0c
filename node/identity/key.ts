import crypto from "node:crypto";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { bytesToHex, concatBytes, hexToBytes } from "@noble/hashes/utils.js";
import { getAddress, getBytes, hashMessage } from "ethers";
import { MystError } from "../errors/MystError";
import { sameAddress, type Address } from "../values/address";
import { secp256k1 } from "./secp256k1";

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
  return addressOfXY(uncompressed64(publicKey));
}

/** The address of an x‖y key already known to be a curve point. */
function addressOfXY(xy: Uint8Array): Address {
  return getAddress(toHex(keccak_256(xy).subarray(12))) as Address;
}

/** Accepts a 33-byte compressed, 65-byte (0x04‖x‖y) or 64-byte (x‖y) key; returns x‖y. */
export function uncompressed64(publicKey: Uint8Array): Uint8Array {
  const xy = secp256k1.toXY(publicKey);
  if (xy) return publicKey.length === 64 ? publicKey : xy;
  throw new InvalidKeyError(
    publicKey.length === 64 ? "public key is not a point on secp256k1" : `public key of ${publicKey.length} bytes is not a secp256k1 point`,
  );
}

/** keccak256 of an EIP-191 personal message, as wallets (`personal_sign`) hash it. */
export function hashPersonalMessage(message: Uint8Array): Uint8Array {
  return getBytes(hashMessage(message));
}

/** Recovers the signer's address from a 65-byte r‖s‖v signature over a 32-byte digest. */
export function recoverAddress(digest: Uint8Array, signature: Uint8Array): Address {
  return addressOfXY(recoverPublicKey(digest, signature));
}

/** Whether the x‖y key `publicKey` is the key of `address` (0x + 40 hex, any case): bytes compared, no checksum made. */
export function isKeyOf(publicKey: Uint8Array, address: string): boolean {
  return /^0x[0-9a-fA-F]{40}$/.test(address) && Buffer.from(address.slice(2), "hex").equals(keccak_256(publicKey).subarray(12));
}

/** Half the curve order: an s above it is the malleable twin of a valid signature (EIP-2). */
const HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

/** The 64-byte x‖y key that made a 65-byte r‖s‖v signature over a 32-byte digest. */
export function recoverPublicKey(digest: Uint8Array, signature: Uint8Array): Uint8Array {
  if (signature.length !== 65) throw new InvalidSignatureError(`signature must be 65 bytes, got ${signature.length}`);
  if (digest.length !== 32) throw new InvalidSignatureError(`digest must be 32 bytes, got ${digest.length}`);
  const v = signature[64];
  const recovery = v >= 27 ? v - 27 : v;
  if (recovery !== 0 && recovery !== 1) throw new InvalidSignatureError(`signature recovery byte ${v} is invalid`);
  if (BigInt(toHex(signature.subarray(32, 64))) > HALF_N) throw new InvalidSignatureError("signature is malleable (high s)");
  const publicKey = secp256k1.recover(digest, signature.subarray(0, 64), recovery);
  if (!publicKey) throw new InvalidSignatureError("signature does not recover a public key");
  return publicKey;
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

  constructor(secretKey: Uint8Array) {
    if (!secp256k1.isValidSecretKey(secretKey)) throw new InvalidKeyError("private key is not a valid secp256k1 scalar");
    this.#secret = Uint8Array.from(secretKey);
    this.publicKey = Uint8Array.from(secp256k1.publicKey(this.#secret));
    this.address = addressOfPublicKey(this.publicKey);
  }

  static generate(): IdentityKey {
    return new IdentityKey(randomSecretKey());
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
    const { signature, recovery } = secp256k1.signDigest(digest, this.#secret);
    return concat(signature, Uint8Array.of(27 + recovery));
  }

  /** Signs an EIP-191 personal message, as `personal_sign` would. */
  signMessage(message: Uint8Array): Uint8Array {
    return this.signDigest(hashPersonalMessage(message));
  }

  /** Signs a protocol message's exact bytes (see protocol-signature.ts): 64 bytes r‖s. */
  signProtocol(bytes: Uint8Array): Uint8Array {
    return secp256k1.signSha256(bytes, this.#secret, this.publicKey);
  }

  /**
   * The ECDH shared secret (x coordinate) with a public key (64-byte x‖y, or 33/65-byte SEC1).
   * It is on every incoming dialog's first message.
   */
  sharedSecret(publicKey: Uint8Array): Uint8Array {
    const shared = secp256k1.sharedSecret(this.#secret, publicKey);
    if (!shared) throw new InvalidKeyError("the peer's public key is not a secp256k1 point");
    return shared;
  }
}

/** A uniformly random valid secret key. */
export function randomSecretKey(): Uint8Array {
  for (;;) {
    const secret = crypto.randomBytes(32);
    if (secp256k1.isValidSecretKey(secret)) return secret;
  }
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(...parts);
}
