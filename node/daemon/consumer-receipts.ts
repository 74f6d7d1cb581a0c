import type { DiscoveryClient, FoundProposal } from "../discovery/client";
import type { IdentityKey } from "../identity/key";
import type { Logger } from "../log/logger";
import type { ConsumerPromises } from "../payments/consumer-promises";
import { type EvidenceKind, type Receipt, type ReceiptPath, receiptId, signReceipt, type Stage } from "../quality/receipt";
import { DEFAULT_SCORE_PARAMS } from "../quality/score";
import { SessionRefusedError } from "../session/errors";
import type { TunnelCheck } from "../session/service";
import type { OwnEvidence, OwnReceipts } from "../store/own-receipts";

/** Where an attempt stopped: the last stage passed and the one that failed. */
export interface StageOutcome {
  reached: Stage | null;
  failed: Stage | null;
}

/** The stage a failed connect attempt stopped at, from its error (codes of session/consumer.ts). */
export function stageOfError(err: unknown): StageOutcome {
  const code = (err as { code?: string }).code;
  if (err instanceof SessionRefusedError || code === "BAD_RESPONSE" || code === "SERVICE_MISMATCH") return { reached: "dialog", failed: "negotiation" };
  if (code === "NO_DIRECT_PATH") return { reached: "negotiation", failed: "reachability" };
  if (code === "TUNNEL_FAILED") return { reached: "reachability", failed: "tunnel" };
  return { reached: null, failed: "dialog" };
}

/** The stage the checks after the tunnel stopped at (none: every check passed). */
export function stageOfCheck(c: TunnelCheck | undefined, advertisedMbps: number): StageOutcome {
  if (!c) return { reached: "tunnel", failed: null };
  if (c.dns === false) return { reached: "tunnel", failed: "dns" };
  const afterDns: Stage = c.dns === true ? "dns" : "tunnel";
  if (c.dataChecked === false) return { reached: afterDns, failed: null };
  if (c.firstByteMs === null) return { reached: afterDns, failed: "first-byte" };
  const kbps = throughputKbps(c);
  if (advertisedMbps > 0 && kbps < advertisedMbps * 1000 * DEFAULT_SCORE_PARAMS.minBandwidthRatio) return { reached: "first-byte", failed: "throughput" };
  return { reached: "throughput", failed: null };
}

export function throughputKbps(c: TunnelCheck | undefined): number {
  if (!c || c.bytes <= 0) return 0;
  // Bytes that all came within the clock's millisecond (ms 0) came at least that fast: not a failed throughput.
  return Math.round((c.bytes * 8) / Math.max(1, c.ms));
}

/** How much a throughput test moves: a quarter second at the advertised rate, between 64 KiB and 4 MiB. */
export function checkSize(advertisedMbps: number): { maxBytes: number; timeoutMs: number } {
  const bytes = Math.round((advertisedMbps * 1e6) / 8 / 4);
  return { maxBytes: Math.min(4 << 20, Math.max(64 << 10, bytes)), timeoutMs: 2000 };
}

/** A receipt not signed yet: everything but the money, which is known at the end. */
export type PendingReceipt = Omit<Receipt, "consumer" | "promisedWei" | "promise" | "at">;

/** The receipt of an attempt that failed before a session existed (no session id from the provider: one of ours). */
export function failedAttempt(found: FoundProposal, outcome: StageOutcome, attemptId: string, startedAt: number): PendingReceipt {
  return {
    sessionId: attemptId,
    provider: found.proposal.provider.toLowerCase(),
    serviceType: found.proposal.serviceType,
    path: "none",
    reached: outcome.reached,
    failed: outcome.failed ?? "dialog",
    connectMs: 0,
    bytesIn: 0,
    bytesOut: 0,
    throughputKbps: 0,
    advertisedMbps: Math.round(found.proposal.bandwidthMbps),
    durationMs: Date.now() - startedAt,
  };
}

/** A session's receipt before its end: the stages, the path, the connect time and the check. */
export function sessionReceipt(
  found: FoundProposal,
  s: { id: string; path: ReceiptPath; connectMs: number },
  outcome: StageOutcome,
  check?: TunnelCheck,
): PendingReceipt {
  return {
    sessionId: s.id,
    provider: found.proposal.provider.toLowerCase(),
    serviceType: found.proposal.serviceType,
    path: s.path,
    reached: outcome.reached,
    failed: outcome.failed,
    connectMs: s.connectMs,
    bytesIn: 0,
    bytesOut: 0,
    throughputKbps: throughputKbps(check),
    advertisedMbps: Math.round(found.proposal.bandwidthMbps),
    durationMs: 0,
  };
}

/**
 * Signs the consumer's receipts and sends them (discovery, which every provider reads its own from)
 * and keeps them (its own evidence, preferred over discovery's when it picks a provider). Each
 * carries the money behind it: the session's promise, or for a failed attempt the latest promise
 * this consumer signed to anyone (docs/quality.md).
 */
export class ConsumerReceipts {
  constructor(
    private readonly o: {
      key: IdentityKey;
      discovery: DiscoveryClient;
      promises?: ConsumerPromises;
      own?: OwnReceipts;
      /** Called with each probe result signed (the prober's round report). */
      onProbe?: (r: Receipt) => void;
      log: Logger;
    },
  ) {}

  /**
   * Signs `pending` with the money behind it, keeps it and sends it (in the background; a failure to
   * send is logged). A prober's (`kind` "probe") is signed as a probe result and sent to POST
   * /v1/probes; it is not kept as the node's own evidence (that is what it saw as a consumer).
   */
  write(
    pending: PendingReceipt,
    money: { promisedWei: bigint; bytesIn?: number; bytesOut?: number; durationMs?: number } = { promisedWei: 0n },
    kind: EvidenceKind = "receipt",
  ): Promise<void> {
    const own = this.o.promises?.latest(pending.provider);
    const last = this.o.promises?.lastSigned;
    const promise =
      money.promisedWei > 0n && own
        ? { provider: pending.provider, amount: own.amount, signature: own.signature }
        : last
          ? { provider: last.provider.toLowerCase(), amount: last.amount, signature: last.signature }
          : null;
    const receipt: Receipt = {
      ...pending,
      bytesIn: money.bytesIn ?? pending.bytesIn,
      bytesOut: money.bytesOut ?? pending.bytesOut,
      durationMs: money.durationMs ?? pending.durationMs,
      consumer: this.o.key.address.toLowerCase(),
      promisedWei: promise && promise.provider === pending.provider ? money.promisedWei : 0n,
      promise,
      at: Date.now(),
    };
    let signed: ReturnType<typeof signReceipt>;
    try {
      signed = signReceipt(this.o.key, receipt, kind);
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, "could not sign a session receipt");
      return Promise.resolve();
    }
    if (kind === "probe") {
      this.o.onProbe?.(receipt);
      return this.o.discovery.postProbe(signed).then(
        (result) => this.o.log.debug({ provider: receipt.provider, failed: receipt.failed, result }, "probe result sent"),
        (err) => this.o.log.info({ err: (err as Error).message }, "discovery did not take a probe result"),
      );
    }
    try {
      this.o.own?.save({
        id: receiptId(receipt),
        provider: receipt.provider,
        serviceType: receipt.serviceType,
        failed: receipt.failed,
        at: receipt.at,
        signed: JSON.stringify(signed),
      });
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, "could not keep a session receipt");
    }
    return this.o.discovery.postReceipt(signed).then(
      (result) => this.o.log.debug({ provider: receipt.provider, failed: receipt.failed, result }, "session receipt sent"),
      (err) => this.o.log.info({ err: (err as Error).message }, "discovery did not take a session receipt"),
    );
  }
}

const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The order a connect by filters tries candidates in: the consumer's own evidence first (a provider
 * whose last receipt from it is a success, then those it has none about, then those whose last
 * attempt failed), then discovery's score (unrated at the neutral 50), then price per GiB and per hour.
 */
export function orderCandidates(proposals: FoundProposal[], own: Map<string, OwnEvidence>): FoundProposal[] {
  const mine = (p: FoundProposal) => {
    const e = own.get(p.proposal.provider.toLowerCase());
    if (!e) return 1;
    return e.lastFailed === null ? 0 : 2;
  };
  const rank = (p: FoundProposal) => p.quality?.score ?? 50;
  return [...proposals].sort(
    (a, b) =>
      mine(a) - mine(b) ||
      rank(b) - rank(a) ||
      cmp(BigInt(a.proposal.price.perGiB), BigInt(b.proposal.price.perGiB)) ||
      cmp(BigInt(a.proposal.price.perHour), BigInt(b.proposal.price.perHour)),
  );
}
