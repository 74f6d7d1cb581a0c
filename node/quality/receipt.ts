import crypto from "node:crypto";
import { MystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import { checkSigner, type SignerDirectory } from "../identity/protocol-signature";

/**
 * A session receipt: what a consumer saw of one session (or one attempt) with a provider, signed by
 * the consumer. It carries the consumer's latest promise to the provider, so anyone holding the
 * vault's EIP-712 domain can check how much money stands behind it (score.ts weighs it by that).
 *
 * Canonical form: one JSON array, fields in a fixed order, no spaces, integers in decimal, addresses
 * in lower case, wei as decimal strings. The signature (the node's protocol signature, 64 bytes over
 * the exact text) covers that text; the decoder parses it, re-encodes it and refuses anything that
 * does not come back byte for byte, so two texts never carry one receipt.
 */

/** The stages of a session, in order. A receipt names the last one passed and the one that failed. */
export const STAGES = ["dialog", "negotiation", "reachability", "tunnel", "dns", "first-byte", "throughput"] as const;
export type Stage = (typeof STAGES)[number];
export const PATHS = ["public", "mapped", "local", "punched", "relayed", "none"] as const;
export type ReceiptPath = (typeof PATHS)[number];

export const RECEIPT_VERSION = "myst-receipt/1";
/** A prober's signed probe result: the same fields as a receipt under its own version (docs/quality.md "Probers"). */
export const PROBE_VERSION = "myst-probe/1";
/**
 * What a signed record is evidence of: a consumer's session ("receipt") or a prober's probe of a
 * provider ("probe"). The version field says which, so a receipt never passes as a probe result nor
 * the other way round; the signer is the consumer (receipt) or the prober (probe).
 */
export type EvidenceKind = "receipt" | "probe";
const VERSIONS: Record<EvidenceKind, string> = { receipt: RECEIPT_VERSION, probe: PROBE_VERSION };
/** The largest receipt text accepted (the signed text; the wire form adds the signature). */
export const MAX_RECEIPT_BYTES = 1024;
/** The largest wire message: `{"receipt": text, "signature": 0x…}` with JSON's escapes. */
export const MAX_SIGNED_RECEIPT_BYTES = 2048;

export interface Receipt {
  sessionId: string;
  /** The signer. Lower case. */
  consumer: string;
  /** Lower case. */
  provider: string;
  serviceType: string;
  path: ReceiptPath;
  /** The last stage passed; null when the first one (dialog) failed. */
  reached: Stage | null;
  /** The stage that failed; null when every stage checked passed. */
  failed: Stage | null;
  /** From the first message to the provider to the tunnel up (ms); 0 when it never came up. */
  connectMs: number;
  bytesIn: number;
  bytesOut: number;
  /** Measured by the consumer's throughput test, kbit/s (0: not measured). */
  throughputKbps: number;
  /** What the proposal advertised, Mbit/s. */
  advertisedMbps: number;
  durationMs: number;
  /** Wei promised in this session. */
  promisedWei: bigint;
  /**
   * The consumer's latest (cumulative) promise, its amount and EIP-712 signature (65 bytes): to the
   * receipt's provider after a paid session, to the provider it paid last (lower case) after a failed
   * one; the money standing behind the receipt (score.ts).
   */
  promise: { provider: string; amount: bigint; signature: string } | null;
  /** When the consumer signed it, ms since the epoch. */
  at: number;
}

export interface SignedReceipt {
  receipt: string;
  /** 0x + 64 bytes (r‖s), the consumer's protocol signature over `receipt`. */
  signature: string;
}

export type ReceiptRejectionCode = "RECEIPT_MALFORMED" | "RECEIPT_TOO_LARGE" | "RECEIPT_BAD_SIGNATURE" | "RECEIPT_UNREGISTERED" | "RECEIPT_STALE";

export class ReceiptRejected extends MystError<ReceiptRejectionCode> {}

const ADDRESS = /^0x[0-9a-f]{40}$/;
const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/;
const SERVICE_TYPE = /^[a-z][a-z0-9-]{0,31}$/;
const WEI = /^(0|[1-9][0-9]{0,28})$/;
const SIG65 = /^0x[0-9a-f]{130}$/;
const SIG64 = /^0x[0-9a-f]{128}$/;
/** Counts and times fit in 2^53; a receipt's counts above 2^50 are junk. */
const MAX_COUNT = 2 ** 50;

/** The canonical text of a receipt. */
export function encodeReceipt(r: Receipt, kind: EvidenceKind = "receipt"): string {
  return JSON.stringify([
    VERSIONS[kind],
    r.sessionId,
    r.consumer.toLowerCase(),
    r.provider.toLowerCase(),
    r.serviceType,
    r.path,
    r.reached,
    r.failed,
    r.connectMs,
    r.bytesIn,
    r.bytesOut,
    r.throughputKbps,
    r.advertisedMbps,
    r.durationMs,
    r.promisedWei.toString(),
    r.promise ? r.promise.provider.toLowerCase() : null,
    r.promise ? r.promise.amount.toString() : null,
    r.promise ? r.promise.signature.toLowerCase() : null,
    r.at,
  ]);
}

/** Signs a receipt with the consumer's key (which must be `r.consumer`). */
export function signReceipt(key: IdentityKey, r: Receipt, kind: EvidenceKind = "receipt"): SignedReceipt {
  if (key.address.toLowerCase() !== r.consumer.toLowerCase()) throw new ReceiptRejected("RECEIPT_MALFORMED", "a receipt is signed by its consumer");
  const receipt = encodeReceipt(r, kind);
  return { receipt, signature: `0x${Buffer.from(key.signProtocol(Buffer.from(receipt))).toString("hex")}` };
}

const bad = (why: string) => new ReceiptRejected("RECEIPT_MALFORMED", `receipt: ${why}`);

function count(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v > MAX_COUNT) throw bad(`${what} is not a count`);
  return v;
}

function stage(v: unknown, what: string): Stage | null {
  if (v === null) return null;
  if (typeof v !== "string" || !(STAGES as readonly string[]).includes(v)) throw bad(`${what} is not a stage`);
  return v as Stage;
}

/**
 * Parses a receipt's text, strictly: the exact canonical form, every field in its range, the stages
 * consistent (the failed one after the one reached). Throws ReceiptRejected.
 */
export function parseReceipt(text: unknown, kind: EvidenceKind = "receipt"): Receipt {
  if (typeof text !== "string") throw bad("not a text");
  if (Buffer.byteLength(text) > MAX_RECEIPT_BYTES)
    throw new ReceiptRejected("RECEIPT_TOO_LARGE", `receipt of ${Buffer.byteLength(text)} bytes (at most ${MAX_RECEIPT_BYTES})`);
  let a: unknown;
  try {
    a = JSON.parse(text);
  } catch {
    throw bad("not JSON");
  }
  if (!Array.isArray(a) || a.length !== 19) throw bad("not an array of 19 fields");
  if (a[0] !== VERSIONS[kind]) throw bad(`version is not ${VERSIONS[kind]}`);
  const str = (i: number, re: RegExp, what: string): string => {
    if (typeof a[i] !== "string" || !re.test(a[i])) throw bad(`${what} is malformed`);
    return a[i];
  };
  const path = a[5];
  if (typeof path !== "string" || !(PATHS as readonly string[]).includes(path)) throw bad("path is not one of " + PATHS.join(", "));
  const reached = stage(a[6], "reached");
  const failed = stage(a[7], "failed");
  const next = reached === null ? 0 : STAGES.indexOf(reached) + 1;
  // A stage a tunnel cannot check (DNS without a resolver) is skipped: the failed one comes after the one reached.
  if (failed !== null && STAGES.indexOf(failed) < next) throw bad("the failed stage is not after the stage reached");
  if (failed === null && reached === null) throw bad("no stage reached and none failed");
  const hasPromise = a[15] !== null || a[16] !== null || a[17] !== null;
  const r: Receipt = {
    sessionId: str(1, SESSION_ID, "sessionId"),
    consumer: str(2, ADDRESS, "consumer"),
    provider: str(3, ADDRESS, "provider"),
    serviceType: str(4, SERVICE_TYPE, "serviceType"),
    path: path as ReceiptPath,
    reached,
    failed,
    connectMs: count(a[8], "connectMs"),
    bytesIn: count(a[9], "bytesIn"),
    bytesOut: count(a[10], "bytesOut"),
    throughputKbps: count(a[11], "throughputKbps"),
    advertisedMbps: count(a[12], "advertisedMbps"),
    durationMs: count(a[13], "durationMs"),
    promisedWei: BigInt(str(14, WEI, "promisedWei")),
    promise: hasPromise
      ? { provider: str(15, ADDRESS, "promise provider"), amount: BigInt(str(16, WEI, "promise amount")), signature: str(17, SIG65, "promise signature") }
      : null,
    at: count(a[18], "at"),
  };
  if (r.promisedWei > 0n && (!r.promise || r.promise.provider !== r.provider || r.promisedWei > r.promise.amount))
    throw bad("promises more in the session than the cumulative promise to the provider it carries");
  if (encodeReceipt(r, kind) !== text) throw bad("not in canonical form");
  return r;
}

export interface ReceiptCheckOptions {
  directory: SignerDirectory;
  now?: number;
  /** Oldest receipt accepted (ms before now). Default 7 days: the store's retention. */
  maxAgeMs?: number;
  /** Clock skew allowed into the future. Default 60 s. */
  skewMs?: number;
  /** What the record must be: a receipt (default) or a probe result. */
  kind?: EvidenceKind;
}

/**
 * A signed receipt as it arrives from anyone: shape, size, canonical text, times, the consumer's
 * signature and registration. Replays are the store's to drop (the receipt's id, `receiptId`).
 */
export async function verifySignedReceipt(input: unknown, o: ReceiptCheckOptions): Promise<{ signed: SignedReceipt; receipt: Receipt }> {
  if (typeof input !== "object" || input === null || Array.isArray(input)) throw bad("not an object");
  const keys = Object.keys(input);
  if (keys.length !== 2 || !keys.includes("receipt") || !keys.includes("signature")) throw bad('fields are not exactly "receipt" and "signature"');
  const { receipt: text, signature } = input as Record<string, unknown>;
  if (typeof signature !== "string" || !SIG64.test(signature.toLowerCase()))
    throw new ReceiptRejected("RECEIPT_BAD_SIGNATURE", "receipt: signature is not 64 bytes of hex");
  const receipt = parseReceipt(text, o.kind);
  const now = o.now ?? Date.now();
  if (receipt.at > now + (o.skewMs ?? 60_000)) throw new ReceiptRejected("RECEIPT_STALE", "receipt signed in the future (clock skew?)");
  if (receipt.at < now - (o.maxAgeMs ?? 7 * 86_400_000)) throw new ReceiptRejected("RECEIPT_STALE", "receipt older than the store keeps");
  const signer = await checkSigner(receipt.consumer, Buffer.from(text as string), Buffer.from(signature.slice(2), "hex"), o.directory);
  if ("fail" in signer && signer.fail === "unregistered") throw new ReceiptRejected("RECEIPT_UNREGISTERED", `consumer ${receipt.consumer} is not registered`);
  if ("fail" in signer) throw new ReceiptRejected("RECEIPT_BAD_SIGNATURE", `receipt is not signed by its consumer ${receipt.consumer}`);
  return { signed: { receipt: text as string, signature: signature.toLowerCase() }, receipt };
}

/** One receipt per (consumer, session): what the store deduplicates on (a replay carries the same id). */
export function receiptId(r: Pick<Receipt, "consumer" | "sessionId">, kind: EvidenceKind = "receipt"): string {
  return crypto.hash("sha256", kind === "receipt" ? `${r.consumer}/${r.sessionId}` : `probe/${r.consumer}/${r.sessionId}`, "hex").slice(0, 32);
}

/** The kind a signed record's text claims (by its version field; the strict decoder then holds it to it). */
export function kindOf(text: unknown): EvidenceKind {
  return typeof text === "string" && text.startsWith(`["${PROBE_VERSION}"`) ? "probe" : "receipt";
}

/** The words of a failed stage, for the provider (docs/quality.md). */
export const STAGE_WORDS: Record<Stage, { failed: string; hint: string }> = {
  dialog: { failed: "could not reach you over the broker (no answer to session.create)", hint: "is your node running and connected to the broker?" },
  negotiation: { failed: "reached you but the session was refused or dropped during negotiation", hint: "check your access list, schedule, caps and prices" },
  reachability: { failed: "were accepted but found no direct path to you", hint: "check your NAT / firewall, or enable a relay" },
  tunnel: { failed: "were accepted but the tunnel never came up", hint: "check that your tunnel's port is open (NAT / firewall) and the service runs" },
  dns: { failed: "had a tunnel but names did not resolve through it", hint: "check the resolver on your tunnel address" },
  "first-byte": { failed: "had a tunnel but never received a first byte", hint: "check your NAT / firewall and your egress (forwarding, masquerade)" },
  throughput: { failed: "received far less bandwidth than you advertise", hint: "advertise what your uplink really carries, or check what else uses it" },
};
