import { MystError } from "../errors/MystError";
import type { SignerDirectory } from "../identity/protocol-signature";
import { parseSignedProposal } from "../proposal/proposal";
import { type SignerCheckFn, verifyUnregister } from "./announcements";
import { indexKey } from "./index";
import { proposalRecord, type StoredRecord } from "./record";
import type { RecordMarker } from "./record-mark";

/** A value of the bucket that a replica does not index: why, in one word, and in words. */
export class RecordRejected extends MystError<"RECORD_REJECTED"> {
  constructor(
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super("RECORD_REJECTED", message, options);
  }
}

export interface RecordCheckOptions {
  /** The registry: the provider must be registered (as for an announcement). */
  directory: SignerDirectory;
  /** The signature check (discovery's signature threads). */
  check: SignerCheckFn;
  now?: number;
  /** Accepted clock difference for times in the future. Default 60 s. */
  clockSkewMs?: number;
  /** The replicas' key: a value carrying its mark had its signature verified by a replica holding it. */
  marker?: RecordMarker;
}

/** A value that passed, rebuilt from its signed text, and how its signature was vouched for. */
export interface CheckedRecord {
  record: StoredRecord;
  /** "mark": a replica holding our key verified the signature (record-mark.ts); "signature": checked here. */
  by: "mark" | "signature";
}

/**
 * Verifies a value read from the shared bucket, whoever wrote it, as an announcement is verified:
 * a proposal's signed text by schema, its signature by the provider it names (a registered one),
 * not expired, not from the future, and stored under its own key; a withdrawal only with the
 * provider's signed unregister for that key and time. What it returns is rebuilt from the signed
 * text alone, so a header that relabels a proposal (another country, another price) is not believed.
 * A value with the replicas' mark is taken as its header says, its times checked (record-mark.ts).
 * Throws RecordRejected.
 */
export async function verifyStoredRecord(key: string, record: StoredRecord, o: RecordCheckOptions): Promise<CheckedRecord> {
  const vouched = markedRecord(key, record, o);
  if (vouched) return vouched;
  const now = o.now ?? Date.now();
  const skew = o.clockSkewMs ?? 60_000;
  const rejected = (reason: string, message: string, cause?: unknown) => new RecordRejected(reason, `${key}: ${message}`, { cause });
  if (record.kind === "withdrawal") {
    if (record.signature === undefined || record.text === undefined) throw rejected("unsigned-withdrawal", "a withdrawal its provider did not sign");
    let u: Awaited<ReturnType<typeof verifyUnregister>>;
    try {
      u = await verifyUnregister({ unregister: record.text, signature: record.signature }, o.directory, o.check);
    } catch (err) {
      throw rejected(codeOf(err), `withdrawal: ${(err as Error).message}`, err);
    }
    if (indexKey(u.provider, u.serviceType) !== key || u.at !== record.at) throw rejected("wrong-key", "the signed unregister is for another key or time");
    if (u.at > now + skew) throw rejected("from-future", "a withdrawal signed for a time in the future");
    return { record: { kind: "withdrawal", at: u.at, signature: record.signature, text: record.text }, by: "signature" };
  }
  let parsed: ReturnType<typeof parseSignedProposal>;
  try {
    parsed = parseSignedProposal({ proposal: record.text, signature: record.signature });
  } catch (err) {
    throw rejected("malformed", (err as Error).message, err);
  }
  const { signed, proposal } = parsed;
  if (indexKey(proposal.provider, proposal.serviceType) !== key) throw rejected("wrong-key", "the signed proposal is another provider's or service type's");
  // Times before the signature: they cost nothing, a signature check costs ~0.35 ms of a thread.
  if (proposal.expiresAt <= now) throw rejected("expired", `expired at ${new Date(proposal.expiresAt).toISOString()}`);
  if (proposal.createdAt > now + skew) throw rejected("from-future", "created in the future");
  const signer = await o.check(proposal.provider, Buffer.from(signed.proposal), Buffer.from(signed.signature.slice(2), "hex"), o.directory);
  if ("fail" in signer && signer.fail === "bad-signature") throw rejected("bad-signature", `not signed by its provider ${proposal.provider}`);
  if ("fail" in signer) throw rejected("unregistered", `provider ${proposal.provider} is not a registered identity`);
  return { record: proposalRecord(signed, proposal), by: "signature" };
}

/**
 * `verifyStoredRecord` for a value carrying the replicas' mark, at once (no signature to check: what
 * a replica loading a bucket its peers wrote does for nearly every value); undefined when it carries
 * none (or another key's). Throws RecordRejected.
 */
export function markedRecord(key: string, record: StoredRecord, o: Pick<RecordCheckOptions, "marker" | "now" | "clockSkewMs">): CheckedRecord | undefined {
  if (!o.marker?.verifies(key, record)) return undefined;
  return { record: vouchedRecord(key, record, o.now ?? Date.now(), o.clockSkewMs ?? 60_000), by: "mark" };
}

/**
 * A value whose mark vouches that a replica holding the replicas' key verified it and wrote its header
 * from the signed text (record-mark.ts): only what time changes is checked again.
 */
function vouchedRecord(key: string, record: StoredRecord, now: number, skew: number): StoredRecord {
  const rejected = (reason: string, message: string) => new RecordRejected(reason, `${key}: ${message}`);
  if (record.kind === "withdrawal") {
    if (record.at > now + skew) throw rejected("from-future", "a withdrawal signed for a time in the future");
    return { kind: "withdrawal", at: record.at, signature: record.signature, text: record.text };
  }
  if (record.expiresAt <= now) throw rejected("expired", `expired at ${new Date(record.expiresAt).toISOString()}`);
  if (record.createdAt > now + skew) throw rejected("from-future", "created in the future");
  // Taken as it is, its mark too (the index reads the fields it keeps; no copy per value of a load).
  return record;
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code.toLowerCase().replace(/_/g, "-") : "invalid";
}
