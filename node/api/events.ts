import type { IncomingMessage, ServerResponse } from "node:http";
import type { MystNode } from "../daemon/node";
import type { NodeHealth } from "../daemon/node-activity";
import type { Logger } from "../log/logger";

const TICK_MS = 1000;
const HEALTH_EVERY_MS = 5000;
const KEEPALIVE_MS = 15_000;
const EARNINGS_EVERY_MS = 3000;

interface Follower {
  res: ServerResponse;
  days: number;
  utcOffsetMinutes: number;
  /** The last JSON sent per topic: a topic is sent again only when it changed. */
  sent: Map<string, string>;
  nextId: number;
}

/**
 * `/v1/events`: server-sent events of the node's state. Each follower gets every topic's value at
 * once and again when it changes; the values are the API's own answers, so a page needs no
 * polling and a script reads the same shapes as the REST routes. The node is looked at once a
 * second while anyone follows (and at once when a session starts, ends or is refused); nothing
 * runs when no one does.
 */
export class NodeEventStream {
  readonly #followers = new Set<Follower>();
  #timer?: NodeJS.Timeout;
  #keepalive?: NodeJS.Timeout;
  #health?: { at: number; value: Promise<NodeHealth> };
  /** The earnings topic as last read, with what it was read at (see #send). */
  #earnings?: { version: { promises: number; rest: string }; at: number; report: object; daily: Map<string, unknown> };
  #unsubscribe?: () => void;
  #busy = false;
  #again = false;

  constructor(
    private readonly daemon: MystNode,
    private readonly log: Logger,
  ) {}

  follow(req: IncomingMessage, res: ServerResponse, o: { days: number; utcOffsetMinutes: number; lastEventId?: string | string[] }): void {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    res.write("retry: 2000\n\n");
    const last = Number(Array.isArray(o.lastEventId) ? o.lastEventId[0] : o.lastEventId);
    const follower: Follower = { res, days: o.days, utcOffsetMinutes: o.utcOffsetMinutes, sent: new Map(), nextId: Number.isSafeInteger(last) ? last + 1 : 1 };
    this.#followers.add(follower);
    req.on("close", () => this.#drop(follower));
    res.on("error", () => this.#drop(follower));
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#look(), TICK_MS);
      this.#keepalive = setInterval(() => this.#followers.forEach((f) => f.res.write(": keepalive\n\n")), KEEPALIVE_MS);
      this.#unsubscribe = this.daemon.activity.onChange(() => this.#look());
    }
    this.#look();
  }

  /** Ends every stream (the API is closing). */
  close(): void {
    for (const f of this.#followers) f.res.end();
    this.#followers.clear();
    this.#idle();
  }

  #drop(f: Follower): void {
    this.#followers.delete(f);
    if (this.#followers.size === 0) this.#idle();
  }

  #idle(): void {
    clearInterval(this.#timer);
    clearInterval(this.#keepalive);
    this.#timer = this.#keepalive = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#health = undefined;
    this.#earnings = undefined;
  }

  /** One look at the node; a look asked for while one runs runs right after it. */
  #look(): void {
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = true;
    void this.#send()
      .catch((err) => this.log.error({ err: (err as Error).message }, "the event stream could not read the node"))
      .finally(() => {
        this.#busy = false;
        if (this.#again) {
          this.#again = false;
          if (this.#followers.size > 0) this.#look();
        }
      });
  }

  async #send(): Promise<void> {
    if (this.#followers.size === 0) return;
    const d = this.daemon;
    const now = Date.now();
    if (!this.#health || now - this.#health.at >= HEALTH_EVERY_MS) {
      const value = d.activity.health();
      value.catch(() => undefined);
      this.#health = { at: now, value };
    }
    const health = await this.#health.value;
    const shared = {
      provider: { sessions: d.activity.liveSessions(), services: d.services() },
      connection: d.connection(),
      health: { ...health, notes: d.activity.notes() },
    };
    // The earnings report reads the whole promise table: read it again when a settlement, the
    // settlement queue or the hour changed (a new day in any time zone starts on one) at once, and
    // for new promises at most every few seconds (a busy provider stores several a second).
    const version = d.activity.earningsVersion();
    const last = this.#earnings;
    const stale = !last || last.version.rest !== version.rest || (last.version.promises !== version.promises && now - last.at >= EARNINGS_EVERY_MS);
    if (stale) {
      const fees = await d.activity.settlementFees();
      this.#earnings = { version, at: now, report: { ...d.earnings(), gasFeesWei: fees.gasFeesWei, settlementsMined: fees.settlements }, daily: new Map() };
    }
    const earnings = this.#earnings!;
    for (const f of this.#followers) {
      const key = `${f.days}/${f.utcOffsetMinutes}`;
      if (!earnings.daily.has(key)) earnings.daily.set(key, d.activity.daily(f.days, f.utcOffsetMinutes));
      const topics: Record<string, unknown> = { ...shared, earnings: { ...earnings.report, daily: earnings.daily.get(key) } };
      for (const [topic, value] of Object.entries(topics)) {
        const json = JSON.stringify(value);
        if (f.sent.get(topic) === json) continue;
        f.sent.set(topic, json);
        f.res.write(`id: ${f.nextId++}\nevent: ${topic}\ndata: ${json}\n\n`);
      }
    }
  }
}
