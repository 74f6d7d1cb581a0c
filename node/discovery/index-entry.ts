import type { Proposal, SignedProposal } from "../proposal/proposal";

/** Length of `0x` + 64 bytes of signature in hex: the head of an entry's body. */
export const SIGNATURE_LENGTH = 130;

/**
 * One (provider, service type) the index knows: its live proposal (listed), or only its history
 * (the newest `createdAt` seen, or the withdrawal time), kept as long as the shared store keeps it.
 * Compact on purpose (one string for the signed proposal, a few numbers): a replica holds them all.
 */
export class IndexEntry {
  /** In the query arrays. */
  listed = false;
  withdrawn = false;
  /** Newest createdAt seen, or the withdrawal's time. */
  createdAt = 0;
  expiresAt = 0;
  /** When queries stop returning it: the proposal's own expiry, or the store's TTL if sooner. */
  liveUntil = 0;
  /** When the store forgets this key (stored time + TTL), and so does this index. */
  keepUntil = 0;
  serviceType = "";
  country = "";
  ipType = "";
  perHour = 0n;
  perGiB = 0n;
  /** Price bands (see `band`) of perHour and perGiB. */
  hourBand = 0;
  gibBand = 0;
  bandwidthMbps = 0;
  ipv6 = false;
  accessPolicy: "open" | "allowlist" = "open";
  /** The signature followed by the signed proposal text; "" when not listed. */
  body = "";

  constructor(
    readonly key: string,
    /** The store's revision of this key (0: the store has none). */
    public revision: number,
  ) {}

  get provider(): string {
    return this.key.slice(0, 42);
  }

  get signed(): SignedProposal {
    return { proposal: this.body.slice(SIGNATURE_LENGTH), signature: this.body.slice(0, SIGNATURE_LENGTH) };
  }

  get proposal(): Proposal {
    return JSON.parse(this.body.slice(SIGNATURE_LENGTH)) as Proposal;
  }

  /** `{"signed": …, "proposal": …}` as the API serves it, built from the stored text (no re-serialization). */
  json(): string {
    const text = this.body.slice(SIGNATURE_LENGTH);
    return `{"signed":{"proposal":${JSON.stringify(text)},"signature":"${this.body.slice(0, SIGNATURE_LENGTH)}"},"proposal":${text}}`;
  }
}
