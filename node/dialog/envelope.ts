import crypto from "node:crypto";
import type { ErrorCode } from "../errors/catalogue";
import { MystError } from "../errors/MystError";
import { randomSecretKey, type IdentityKey } from "../identity/key";
import { secp256k1 } from "../identity/secp256k1";
import { randomBytes } from "./random-pool";

/**
 * The sealed envelope that travels on the broker. Binary:
 *
 *   version (1) ‖ ephemeral public key (33, compressed) ‖ nonce (12) ‖ AES-256-GCM ciphertext+tag
 *
 * The key is HKDF-SHA256(ECDH(ephemeral, recipient's registered key), salt = ephemeral ‖ recipient
 * key, info "myst/dialog/v1"). The header is authenticated as associated data. The plaintext is
 * the sender's 64-byte signature followed by the exact signed message bytes, so the broker and any
 * other subscriber learn nothing but the subject and the size.
 */

export const ENVELOPE_VERSION = 1;
const HEADER = 1 + 33;
const NONCE = 12;
const TAG = 16;
const INFO = Buffer.from("myst/dialog/v1");

export type EnvelopeErrorCode = "BAD_RECIPIENT_KEY" | "UNDECRYPTABLE";

export class EnvelopeError extends MystError<EnvelopeErrorCode> {}

function deriveKey(shared: Uint8Array, ephemeral: Uint8Array, recipient: Uint8Array): Buffer {
  const salt = Buffer.concat([ephemeral, recipient]);
  return Buffer.from(crypto.hkdfSync("sha256", shared, salt, INFO, 32));
}

/**
 * The sending half of a dialog direction: one ephemeral key per (dialog, recipient), so the
 * ECDH runs once per dialog rather than once per message.
 */
export class Sealer {
  readonly #ephemeral: Buffer;
  readonly #key: Buffer;
  readonly #header: Buffer;

  constructor(recipientPublicKey: Uint8Array) {
    const secret = randomSecretKey();
    this.#ephemeral = Buffer.from(secp256k1.compressedPublicKey(secret));
    const shared = recipientPublicKey.length === 64 ? secp256k1.sharedSecret(secret, recipientPublicKey) : null;
    if (!shared) throw new EnvelopeError("BAD_RECIPIENT_KEY", "the recipient's registered public key is not a curve point");
    this.#key = deriveKey(shared, this.#ephemeral, recipientPublicKey);
    this.#header = Buffer.concat([Buffer.of(ENVELOPE_VERSION), this.#ephemeral]);
  }

  seal(signature: Uint8Array, message: Uint8Array): Uint8Array {
    const nonce = randomBytes(NONCE);
    const cipher = crypto.createCipheriv("aes-256-gcm", this.#key, nonce);
    cipher.setAAD(this.#header);
    const body = Buffer.concat([cipher.update(signature), cipher.update(message), cipher.final(), cipher.getAuthTag()]);
    return Buffer.concat([this.#header, nonce, body]);
  }
}

/** The receiving half: opens envelopes addressed to `key`, caching derived keys per ephemeral key. */
export class Opener {
  readonly #key: IdentityKey;
  readonly #derived = new Map<string, Buffer>();
  readonly #maxKeys: number;

  constructor(key: IdentityKey, options: { maxCachedKeys?: number } = {}) {
    this.#key = key;
    this.#maxKeys = options.maxCachedKeys ?? 10_000;
  }

  /** Returns the signature and the signed bytes, or throws EnvelopeError("UNDECRYPTABLE"). */
  open(envelope: Uint8Array): { signature: Uint8Array; message: Uint8Array } {
    if (envelope.length < HEADER + NONCE + TAG + 64 || envelope[0] !== ENVELOPE_VERSION) {
      throw new EnvelopeError("UNDECRYPTABLE", "not a version-1 envelope");
    }
    const buf = Buffer.from(envelope.buffer, envelope.byteOffset, envelope.length);
    const header = buf.subarray(0, HEADER);
    const ephemeral = buf.subarray(1, HEADER);
    const nonce = buf.subarray(HEADER, HEADER + NONCE);
    const tag = buf.subarray(buf.length - TAG);
    const ciphertext = buf.subarray(HEADER + NONCE, buf.length - TAG);
    const key = this.#derive(ephemeral);
    let plain: Buffer;
    try {
      const decipher = crypto.createDecipheriv("aes-256-gcm", key, nonce);
      decipher.setAAD(header);
      decipher.setAuthTag(tag);
      plain = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch (err) {
      throw new EnvelopeError("UNDECRYPTABLE", "the envelope does not decrypt with this identity's key", { cause: err });
    }
    return { signature: plain.subarray(0, 64), message: plain.subarray(64) };
  }

  #derive(ephemeral: Buffer): Buffer {
    const id = ephemeral.toString("hex");
    let key = this.#derived.get(id);
    if (key) return key;
    let shared: Uint8Array;
    try {
      shared = this.#key.sharedSecret(ephemeral);
    } catch (err) {
      throw new EnvelopeError("UNDECRYPTABLE", "the envelope's ephemeral key is not a curve point", { cause: err });
    }
    key = deriveKey(shared, ephemeral, this.#key.publicKey);
    if (this.#derived.size >= this.#maxKeys) this.#derived.delete(this.#derived.keys().next().value!);
    this.#derived.set(id, key);
    return key;
  }
}

/**
 * The one thing sent in clear: a refusal to a sender the recipient cannot encrypt to (it is not
 * registered, so it has no published key). Version byte 0, then JSON {code, message}. It says
 * nothing the chain does not already say, and a receiver treats it as an error, never as data.
 */
export const PLAIN_REFUSAL_VERSION = 0;

export function plainRefusal(code: ErrorCode, message: string): Uint8Array {
  return Buffer.concat([Buffer.of(PLAIN_REFUSAL_VERSION), Buffer.from(JSON.stringify({ code, message }))]);
}

export function readPlainRefusal(bytes: Uint8Array): { code: string; message: string } | null {
  if (bytes.length === 0 || bytes[0] !== PLAIN_REFUSAL_VERSION || bytes.length > 1024) return null;
  try {
    const v = JSON.parse(Buffer.from(bytes.subarray(1)).toString("utf8"));
    if (typeof v?.code === "string" && typeof v?.message === "string") return { code: v.code.slice(0, 64), message: v.message.slice(0, 256) };
  } catch {
    // not a refusal
  }
  return null;
}
