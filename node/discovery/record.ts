import { MystError } from "../errors/MystError";
import type { Proposal, SignedProposal } from "../proposal/proposal";

/**
 * What the shared index stores per (provider, service type): the live proposal as its provider
 * signed it, or the withdrawal (the provider's signed unregister) that ended it. Replicas write
 * only what they verified, but anyone with rights on the bucket can write anything: a replica
 * verifies every value it loads or watches again (record-check.ts) and serves only what passes.
 *
 * Encoding, one UTF-8 value: a JSON header line, then for a proposal the signature line and the
 * signed text, byte for byte (it may itself contain newlines). A reader parses only the header.
 *   ["p", createdAt, expiresAt, country, ipType, perHour, perGiB, bandwidthMbps, accessPolicy, {ipv6?, mark?}]\n0x<sig>\n<proposal text>
 * (records written before access policies have eight header fields: their policy is "open"; the
 * trailing object holds the other attributes filters read and the writing replica's mark, and is
 * left out when empty)
 *   ["w", at, {mark?}]\n0x<sig>\n<unregister text>
 * (the mark, record-mark.ts, says a replica holding the replicas' key verified the signature;
 * readers that do not know it ignore it)
 * (a withdrawal without the signed unregister, as earlier versions wrote it, is never trusted)
 */
export type StoredRecord = StoredProposal | StoredWithdrawal;

export interface StoredProposal {
  kind: "proposal";
  createdAt: number;
  expiresAt: number;
  country: string;
  ipType: string;
  perHour: string;
  perGiB: string;
  bandwidthMbps: number;
  /** The tunnel carries IPv6 (the `ipv6` filter). */
  ipv6?: boolean;
  accessPolicy: "open" | "allowlist";
  signature: string;
  text: string;
  /** The writing replica's mark (record-mark.ts): it verified the signature. */
  mark?: string;
}

export interface StoredWithdrawal {
  kind: "withdrawal";
  /** Nothing created up to this time comes back. */
  at: number;
  /** The provider's signed unregister that asked for it (the only proof a replica loading it accepts). */
  signature?: string;
  text?: string;
  /** The writing replica's mark (record-mark.ts). */
  mark?: string;
}

/**
 * Largest value a replica reads from the bucket (and the bucket's own limit when a replica creates
 * it): a signed proposal is at most 8,192 characters (three bytes each at worst) plus its header.
 */
export const MAX_RECORD_BYTES = 32 * 1024;

export function proposalRecord(signed: SignedProposal, p: Proposal): StoredProposal {
  return {
    kind: "proposal",
    createdAt: p.createdAt,
    expiresAt: p.expiresAt,
    country: p.location.country,
    ipType: p.location.ipType,
    perHour: p.price.perHour,
    perGiB: p.price.perGiB,
    bandwidthMbps: p.bandwidthMbps,
    accessPolicy: p.accessPolicy ?? "open",
    ...(p.ipv6 === true ? { ipv6: true } : {}),
    signature: signed.signature,
    text: signed.proposal,
  };
}

export function encodeRecord(r: StoredRecord): Uint8Array {
  if (r.kind === "withdrawal") {
    const header = JSON.stringify(r.mark === undefined ? ["w", r.at] : ["w", r.at, { mark: r.mark }]);
    return Buffer.from(r.signature === undefined ? header : `${header}\n${r.signature}\n${r.text ?? ""}`);
  }
  const fixed: unknown[] = ["p", r.createdAt, r.expiresAt, r.country, r.ipType, r.perHour, r.perGiB, r.bandwidthMbps, r.accessPolicy];
  const extra: { ipv6?: true; mark?: string } = {};
  if (r.ipv6) extra.ipv6 = true;
  if (r.mark !== undefined) extra.mark = r.mark;
  if (extra.ipv6 || extra.mark !== undefined) fixed.push(extra);
  const header = JSON.stringify(fixed);
  return Buffer.from(`${header}\n${r.signature}\n${r.text}`);
}

export class RecordFormatError extends MystError {
  constructor(message: string) {
    super("RECORD_MALFORMED", message);
  }
}

/** Decodes a value of the bucket; throws RecordFormatError for anything this version did not write. */
export function decodeRecord(value: Uint8Array): StoredRecord {
  if (value.byteLength > MAX_RECORD_BYTES) throw new RecordFormatError(`record of ${value.byteLength} bytes is over the ${MAX_RECORD_BYTES} allowed`);
  // Each part decoded on its own (a newline byte is never inside a UTF-8 sequence): the signature and
  // the text a replica keeps for every proposal do not hold on to the whole value (its header) as
  // slices of one decoded string would.
  const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  const nl = bytes.indexOf(0x0a);
  const nl2 = nl < 0 ? -1 : bytes.indexOf(0x0a, nl + 1);
  let header: unknown;
  try {
    header = JSON.parse(bytes.toString("utf8", 0, nl < 0 ? bytes.length : nl));
  } catch {
    throw new RecordFormatError("record header is not JSON");
  }
  if (!Array.isArray(header)) throw new RecordFormatError("record header is not an array");
  const signature = () => bytes.toString("utf8", nl + 1, nl2);
  const text = () => bytes.toString("utf8", nl2 + 1);
  if (header[0] === "w" && typeof header[1] === "number") {
    if (nl2 < 0) return { kind: "withdrawal", at: header[1] };
    const mark = markOf(header[2]);
    return { kind: "withdrawal", at: header[1], signature: signature(), text: text(), ...(mark ? { mark } : {}) };
  }
  if (header[0] !== "p" || header.length < 8 || header.length > 10 || nl < 0) throw new RecordFormatError("unknown record kind");
  const extra = (header[9] ?? {}) as { ipv6?: unknown };
  const mark = markOf(extra);
  if (nl2 < 0) throw new RecordFormatError("record has no signed text");
  const [, createdAt, expiresAt, country, ipType, perHour, perGiB, bandwidthMbps, accessPolicy] = header;
  return {
    kind: "proposal",
    createdAt,
    expiresAt,
    country,
    ipType,
    perHour,
    perGiB,
    bandwidthMbps,
    accessPolicy: accessPolicy === "allowlist" ? "allowlist" : "open",
    ...(extra.ipv6 === true ? { ipv6: true } : {}),
    signature: signature(),
    text: text(),
    ...(mark ? { mark } : {}),
  };
}

function markOf(extra: unknown): string | undefined {
  const mark = (extra as { mark?: unknown } | null)?.mark;
  return typeof mark === "string" && mark.length <= 128 ? mark : undefined;
}
