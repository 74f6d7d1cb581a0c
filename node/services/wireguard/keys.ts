import crypto from "node:crypto";

/** A WireGuard (X25519) key pair; keys in WireGuard's base64 form, as `wg` prints them. */
export interface WireGuardKeyPair {
  privateKey: string;
  publicKey: string;
}

/** A fresh X25519 key pair from OpenSSL (node:crypto). */
export function generateKeyPair(): WireGuardKeyPair {
  const { publicKey, privateKey } = crypto.generateKeyPairSync("x25519");
  const jwk = privateKey.export({ format: "jwk" });
  return { privateKey: fromBase64url(jwk.d!), publicKey: fromBase64url(publicKey.export({ format: "jwk" }).x!) };
}

/** The public key of a base64 private key. */
export function publicKeyOf(privateKey: string): string {
  const d = Buffer.from(privateKey, "base64").toString("base64url");
  const key = crypto.createPrivateKey({ key: { kty: "OKP", crv: "X25519", d, x: "" }, format: "jwk" });
  return fromBase64url(crypto.createPublicKey(key).export({ format: "jwk" }).x!);
}

/** A WireGuard key as text: 32 bytes in standard base64 (44 characters, one `=`). */
export const KEY_PATTERN = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$";
const KEY = new RegExp(KEY_PATTERN);

export function isKey(text: string): boolean {
  return KEY.test(text);
}

/** The UAPI's form of a key: 64 lowercase hex characters. */
export function keyHex(key: string): string {
  return Buffer.from(key, "base64").toString("hex");
}

export function keyFromHex(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64");
}

function fromBase64url(text: string): string {
  return Buffer.from(text, "base64url").toString("base64");
}
