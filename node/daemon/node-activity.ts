import type { ChainConnection } from "../chain/connect";
import type { IdentityRegistryClient } from "../chain/registry";
import type { Logger } from "../log/logger";
import { DailyEarnings, type DayEarnings } from "../payments/earnings-per-day";
import type { ConsumerNode } from "./consumer-node";
import type { ProviderNode } from "./provider-node";
import { providerSessionPath } from "../session/provider";
import type { Db } from "../store/database";
import { storeCheck } from "../store/errors";

/** Why a session did not start or stopped: what the dashboard shows under "why". */
export interface SessionNote {
  at: string;
  kind: "refused" | "ended";
  consumer: string;
  sessionId?: string;
  serviceType?: string;
  /** A refusal's code (ours, sent to the consumer). */
  code?: string;
  reason: string;
}

/** A provider session running now, as the dashboard lists it. */
export interface LiveSession {
  id: string;
  consumer: string;
  serviceType: string;
  state: string;
  startedAt: string;
  durationSeconds: number;
  bytesIn: number;
  bytesOut: number;
  /** What this session's stored promises added so far. */
  earnedWei: string;
  /** The path it takes (relayed: through which relay), once the consumer confirmed it. */
  path?: ReturnType<typeof providerSessionPath>;
}

/** One check of a dependency: up or not, and in words why. */
export interface Check {
  ok: boolean;
  detail: string;
}

/** Whether discovery lists a service's proposal right now, and every reason it may not. */
export interface Visibility {
  serviceType: string;
  announcement: string;
  listed: boolean | null;
  reasons: string[];
}

export interface NodeHealth {
  checkedAt: string;
  nats: Check;
  chain: Check & { block?: number };
  discovery: Check;
  registration: Check;
  /** Whether the node can write its state (promises, settlements, sessions) in its data dir. */
  store: Check;
  visibility: Visibility[];
}

const NOTES_KEPT = 20;
/** The most days a daily view shows (the API's limit), and how many time zones' views are kept. */
const DAILY_DAYS_MAX = 90;
const DAILY_ZONES_KEPT = 8;
const CHECK_TIMEOUT_MS = 3000;

/**
 * What the dashboard shows a provider beyond the plain API records: sessions live with their
 * bytes and earnings, earnings per day, settlement fees, the health of NATS, chain and discovery,
 * and why the node is or is not visible (each proposal looked up in discovery; the last reasons
 * sessions were refused or ended). Reads the nodes it is given; changes nothing.
 */
export class NodeActivity {
  readonly #notes: SessionNote[] = [];
  readonly #fees = new Map<string, bigint>();
  readonly #listeners = new Set<() => void>();
  /** Running sums of live sessions' promises, and the last promise read into them. */
  readonly #earned = new Map<string, bigint>();
  #lastPromise = -1;
  /** Earnings per day, per viewer's time zone, with the last promise read into them. */
  readonly #daily = new Map<number, { daily: DailyEarnings; lastPromise: number }>();

  constructor(
    private readonly o: {
      identity: string;
      provider: ProviderNode;
      consumer: ConsumerNode;
      conn: ChainConnection;
      registry: IdentityRegistryClient;
      /** The node's database, whose writes the store check follows. */
      db: Db;
      log: Logger;
    },
  ) {
    // The ends before this start, from the session history (refusals are not kept across restarts).
    for (const r of o.provider.history.list(NOTES_KEPT, "provider")) {
      if (r.endedAt !== null)
        this.#notes.push({
          at: new Date(r.endedAt).toISOString(),
          kind: "ended",
          consumer: r.peer,
          sessionId: r.id,
          serviceType: r.serviceType,
          reason: r.endReason || "ended",
        });
    }
    const sessions = o.provider.sessions;
    sessions.on("session-refused", (r) => this.#note({ kind: "refused", consumer: r.consumer, code: r.code, reason: `${r.code}: ${r.message}` }));
    sessions.on("session-ended", (s) =>
      this.#note({ kind: "ended", consumer: s.consumer, sessionId: s.id, serviceType: s.serviceType, reason: s.endReason ?? "ended" }),
    );
    sessions.on("session-accepted", () => this.#changed());
    sessions.on("session-active", () => this.#changed());
  }

  /** Calls `listener` whenever sessions start, end or are refused; returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The last refusals and session ends, newest first. */
  notes(): SessionNote[] {
    return [...this.#notes];
  }

  liveSessions(): LiveSession[] {
    const now = Date.now();
    const live = this.o.provider.sessions.list().filter((s) => s.state !== "ended");
    this.#readEarned(live.map((s) => s.id));
    return live.map((s) => {
      const usage = this.o.provider.usage(s.id);
      const path = providerSessionPath(s);
      return {
        id: s.id,
        consumer: s.consumer,
        serviceType: s.serviceType,
        state: s.state,
        startedAt: new Date(s.createdAt).toISOString(),
        durationSeconds: Math.max(0, Math.round((now - s.createdAt) / 1000)),
        bytesIn: usage?.bytesIn ?? 0,
        bytesOut: usage?.bytesOut ?? 0,
        earnedWei: (this.#earned.get(s.id) ?? 0n).toString(),
        ...(path ? { path } : {}),
      };
    });
  }

  /**
   * Brings the live sessions' earnings up to date from the promises stored since the last look
   * (read once a second by the event stream: no scan of the whole promise table each time).
   */
  #readEarned(live: string[]): void {
    const store = this.o.provider.store;
    if (this.#lastPromise < 0) this.#lastPromise = store.version().lastPromise;
    for (const p of store.increasesAfter(this.#lastPromise)) {
      this.#lastPromise = p.rowid;
      const sum = this.#earned.get(p.sessionId);
      if (sum !== undefined) this.#earned.set(p.sessionId, sum + p.increase);
    }
    const wanted = new Set(live);
    for (const id of this.#earned.keys()) if (!wanted.has(id)) this.#earned.delete(id);
    // A session seen for the first time: its promises so far, once.
    for (const id of live) if (!this.#earned.has(id)) this.#earned.set(id, store.sessionAmount(id));
  }

  /**
   * Changes whenever earnings could have: `promises` when a promise is stored, `rest` when a
   * settlement is stored, the settlement queue changes or the hour turns.
   */
  earningsVersion(): { promises: number; rest: string } {
    const v = this.o.provider.store.version();
    const pending = this.o.provider.settler.pending();
    const rest = JSON.stringify([v.settlements, pending, Math.floor(Date.now() / 3_600_000)], (_k, x) => (typeof x === "bigint" ? x.toString() : x));
    return { promises: v.lastPromise, rest };
  }

  /**
   * Earnings per calendar day (see DailyEarnings); `utcOffsetMinutes` is the viewer's time zone
   * (east positive). Kept per time zone and fed only the promises stored since the last call.
   */
  daily(days: number, utcOffsetMinutes: number): DayEarnings[] {
    const store = this.o.provider.store;
    const now = Date.now();
    let kept = this.#daily.get(utcOffsetMinutes);
    if (!kept) {
      if (this.#daily.size >= DAILY_ZONES_KEPT) this.#daily.clear();
      kept = { daily: new DailyEarnings(utcOffsetMinutes), lastPromise: 0 };
      this.#daily.set(utcOffsetMinutes, kept);
    }
    // Two days more than can be shown: a promise just inside pays for time since its predecessor.
    const since = now - (DAILY_DAYS_MAX + 2) * 86_400_000;
    const fresh = store.increasesAfter(kept.lastPromise, since);
    if (fresh.length > 0) {
      const starts = this.o.provider.history.startTimes(fresh.map((i) => i.sessionId));
      kept.daily.add(fresh, (id) => starts.get(id));
      kept.lastPromise = fresh[fresh.length - 1].rowid;
      kept.daily.prune(since);
    }
    return kept.daily.days(days, now);
  }

  /** What settling cost in gas so far (wei of the chain's coin), from each mined settlement's receipt. */
  async settlementFees(): Promise<{ gasFeesWei: string; settlements: number }> {
    const mined = this.o.provider.store.settlements().filter((s) => s.status === "mined" && s.txHash);
    for (const s of mined) {
      if (this.#fees.has(s.txHash!)) continue;
      const receipt = await this.o.conn.provider.getTransactionReceipt(s.txHash!).catch(() => null);
      if (receipt) this.#fees.set(s.txHash!, receipt.gasUsed * receipt.gasPrice);
    }
    const fees = mined.reduce((sum, s) => sum + (this.#fees.get(s.txHash!) ?? 0n), 0n);
    return { gasFeesWei: fees.toString(), settlements: mined.length };
  }

  /** NATS, chain, discovery and registration, and whether discovery lists each proposal now. */
  async health(): Promise<NodeHealth> {
    const { provider, consumer, conn, registry, identity } = this.o;
    const broker = provider.broker.status;
    const nats: Check = { ok: broker === "connected", detail: broker === "connected" ? "connected" : `${broker}: no session can start or be paid` };
    const [chain, registration, listed] = await Promise.all([
      within(conn.provider.getBlockNumber())
        .then((block) => ({ ok: true, detail: `block ${block}`, block }))
        .catch((err: Error) => ({ ok: false, detail: `unreachable: ${err.message}` })),
      within(registry.isRegistered(identity))
        .then((yes) => ({ ok: yes, detail: yes ? "registered" : "not registered on chain: discovery refuses its proposals" }))
        .catch((err: Error) => ({ ok: false, detail: `unknown: ${err.message}` })),
      within(consumer.discovery.search({ providerIds: [identity] }, { limit: 100 }))
        .then((r) => new Set(r.proposals.map((p) => p.proposal.serviceType)))
        .catch((err: Error) => err),
    ]);
    const discovery: Check = listed instanceof Error ? { ok: false, detail: `unreachable: ${listed.message}` } : { ok: true, detail: "answering" };
    const visibility = provider.selling().map((s): Visibility => {
      const reasons: string[] = [];
      const isListed = listed instanceof Error ? null : listed.has(s.type);
      if (!isListed) {
        if (!registration.ok) reasons.push(registration.detail);
        if (!nats.ok) reasons.push(`NATS ${nats.detail}`);
        if (s.announcement.lastError) reasons.push(`the last announcement failed: ${s.announcement.lastError}`);
        if (s.announcement.state !== "announced") reasons.push(`announcement ${s.announcement.state}`);
        if (listed instanceof Error) reasons.push(`discovery ${discovery.detail}`);
        if (reasons.length === 0) reasons.push("discovery does not list it (yet): announced, not indexed");
      }
      return { serviceType: s.type, announcement: s.announcement.state, listed: isListed, reasons };
    });
    return { checkedAt: new Date().toISOString(), nats, chain, discovery, registration, store: storeCheck(this.o.db), visibility };
  }

  #note(n: Omit<SessionNote, "at">): void {
    this.#notes.unshift({ at: new Date().toISOString(), ...n });
    this.#notes.length = Math.min(this.#notes.length, NOTES_KEPT);
    this.#changed();
  }

  #changed(): void {
    for (const l of this.#listeners) {
      try {
        l();
      } catch (err) {
        this.o.log.error({ err: (err as Error).message }, "an activity listener failed");
      }
    }
  }
}

/** A check that does not answer in time fails. */
function within<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${CHECK_TIMEOUT_MS / 1000} s`)), CHECK_TIMEOUT_MS))),
  ]).finally(() => clearTimeout(timer));
}
