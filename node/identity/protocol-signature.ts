import crypto from "node:crypto";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { secp256k1 } from "./secp256k1";

/**
 * Signatures of the node's own protocol messages (dialog messages, proposals): ECDSA over SHA-256
 * of the exact bytes, on secp256k1 with the identity's key, 64 bytes r‖s. libsecp256k1 signs and
 * verifies these in under 0.1 ms (OpenSSL, the fallback, in about 0.3 ms; see secp256k1.ts), and
 * the dialog signs every message. (Ethereum signatures for the contracts stay in key.ts.)
 * Verification is against the public key the identity registered on chain.
 */

/** Whether `signature` (64 bytes) over `bytes` was made by the key `publicKey` (64 bytes). Never throws. */
export function verifyBytes(publicKey: Uint8Array, bytes: Uint8Array, signature: Uint8Array): boolean {
  return secp256k1.verifySha256(bytes, signature, publicKey);
}

/**
 * The public key that made `signature` over `bytes`, when its address is `claimed`; null when the
 * signature was made by any other key or is no signature at all. Pure computation (public-key
 * recovery: about 0.1 ms with libsecp256k1, 3 ms in JS): it asks no registry, so junk costs no chain call.
 */
export function recoverClaimedSigner(claimed: string, bytes: Uint8Array, signature: Uint8Array): Uint8Array | null {
  if (signature.length !== 64 || !/^0x[0-9a-fA-F]{40}$/.test(claimed)) return null;
  const digest = crypto.hash("sha256", bytes, "buffer");
  const want = Buffer.from(claimed.slice(2), "hex");
  for (const recovery of [0, 1] as const) {
    const publicKey = secp256k1.recover(digest, signature, recovery);
    if (publicKey && want.equals(keccak_256(publicKey).subarray(12))) return publicKey;
  }
  return null;
}

/** Who is registered, and with which key (the chain's registry, cached): what every signature check asks. */
export type PublicKeyDirectory = SignerDirectory;

export interface SignerDirectory {
  publicKeyOf(identity: string): Promise<Uint8Array | null>;
  /** The key when already known locally, without asking the chain; undefined when not known. */
  knownPublicKeyOf?(identity: string): Uint8Array | undefined;
}

export type SignerCheck = { publicKey: Uint8Array } | { fail: "bad-signature" | "unregistered" };

/**
 * Checks that `claimed` signed `bytes`, cheapest test first: against a key already known (a
 * verification), else by recovering the signer from the signature; the registry is asked only once the
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
