import type { Broker } from "../broker/broker";
import { isMystError, MystError } from "../errors/MystError";
import type { Logger } from "../log/logger";
import { DISCOVERY_SUBJECTS, type AnnounceReply } from "./announcements";

/** A replica already verifying as many announcements as it allows at once. */
export class DiscoveryBusyError extends MystError {
  constructor(limit: number) {
    super("DISCOVERY_BUSY", `discovery is verifying ${limit} announcements already; retry later`);
  }
}

/** What a replica does with what arrives over NATS (server.ts). */
export interface DiscoveryHandlers {
  /** A signed proposal (register or ping): verified, decided, written. */
  announce(input: unknown): Promise<string>;
  /** A signed unregister: whether it removed the proposal. */
  unregister(input: unknown): Promise<"removed" | "ignored">;
  /** A signed receipt (fire and forget); `tooLarge`: refused unread. */
  receipt(input: unknown): Promise<unknown>;
  receiptTooLarge(): void;
}

export interface DiscoverySubscriptionOptions {
  /** The queue group each subject is taken in (one replica takes each message), or none (every replica hears it). */
  announcementQueue?: string;
  receiptQueue?: string;
  /** Announcements verified at once; more are answered DISCOVERY_BUSY. */
  maxInFlight: number;
  log: Logger;
}

/** The largest receipt message taken from NATS. */
const MAX_RECEIPT_MESSAGE = 4096;

/**
 * Subscribes a replica to discovery's subjects: announcements and unregisters answered with an
 * `AnnounceReply` (at most `maxInFlight` at once), receipts taken without a reply (a rejected one
 * is counted by `handlers`, not answered).
 */
export function subscribeDiscovery(broker: Broker, handlers: DiscoveryHandlers, o: DiscoverySubscriptionOptions): { unsubscribe(): void }[] {
  const reply = (respond: ((d: Uint8Array) => void) | undefined, body: AnnounceReply) => respond?.(Buffer.from(JSON.stringify(body)));
  let inFlight = 0;
  const guarded = (handle: (data: Uint8Array) => Promise<AnnounceReply>) => async (data: Uint8Array, respond: ((d: Uint8Array) => void) | undefined) => {
    if (inFlight >= o.maxInFlight) return reply(respond, { ok: false, ...describe(new DiscoveryBusyError(o.maxInFlight)) });
    inFlight++;
    try {
      reply(respond, await handle(data));
    } catch (err) {
      const { code, message } = describe(err);
      o.log.info({ code, message }, "announcement rejected");
      reply(respond, { ok: false, code, message });
    } finally {
      inFlight--;
    }
  };
  const onAnnounce = guarded(async (data) => ({ ok: true, result: await handlers.announce(parseJson(data)) }));
  const onUnregister = guarded(async (data) => ({ ok: true, result: await handlers.unregister(parseJson(data)) }));
  const queue = o.announcementQueue === undefined ? {} : { queue: o.announcementQueue };
  return [
    broker.subscribe(DISCOVERY_SUBJECTS.register, (d, r) => void onAnnounce(d, r), queue),
    broker.subscribe(DISCOVERY_SUBJECTS.ping, (d, r) => void onAnnounce(d, r), queue),
    broker.subscribe(DISCOVERY_SUBJECTS.unregister, (d, r) => void onUnregister(d, r), queue),
    broker.subscribe(
      DISCOVERY_SUBJECTS.receipt,
      (d) => {
        if (d.length > MAX_RECEIPT_MESSAGE) return handlers.receiptTooLarge();
        void handlers.receipt(parseJson(d)).catch(() => undefined);
      },
      o.receiptQueue === undefined ? {} : { queue: o.receiptQueue },
    ),
  ];
}

function parseJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data).toString("utf8"));
  } catch {
    return undefined;
  }
}

function describe(err: unknown): { code: string; message: string } {
  if (isMystError(err)) return { code: err.code, message: err.message };
  return { code: "INTERNAL", message: "internal error" };
}
