import type { IncomingMessage, ServerResponse } from "node:http";
import type { NodeCore } from "../../daemon/core";
import type { NodeHealth } from "../../daemon/node-activity";
import type { Logger } from "../../log/logger";
import type { ConnectionOps } from "../connection/connection";
import type { EarningsOps } from "../earnings/earnings";
import type { ServiceOps } from "../services/services";
import { TOPICS, type Topic } from "./schemas";

/** What the event stream (and the dashboard's routes) read of a node: its core and the operations whose answers it sends. */
export interface WatchedNode {
  core: NodeCore;
  services: ServiceOps;
  connection: ConnectionOps;
  earnings: EarningsOps;
}

const TICK_MS = 1000;
const HEALTH_EVERY_MS = 5000;
const KEEPALIVE_MS = 15_000;
const EARNINGS_EVERY_MS = 3000;

/** The earnings topic as last read, with what it was read at. */
interface EarningsRead {
  version: { promises: number; rest: string };
  at: number;
  report: object;
  daily: Map<string, unknown>;
}

interface Follower {
  res: ServerResponse;
  days: number;
  utcOffsetMinutes: number;
  /** The topics it follows. */
  topics: Set<Topic>;
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
  #earnings?: EarningsRead;
  #unsubscribe?: () => void;
  #busy = false;
  #again = false;

  constructor(
    private readonly daemon: WatchedNode,
    private readonly log: Logger,
  ) {}

  follow(req: IncomingMessage, res: ServerResponse, o: { days: number; utcOffsetMinutes: number; topics?: Topic[]; lastEventId?: string | string[] }): void {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    res.write("retry: 2000\n\n");
    const last = Number(Array.isArray(o.lastEventId) ? o.lastEventId[0] : o.lastEventId);
    const follower: Follower = {
      res,
      days: o.days,
      utcOffsetMinutes: o.utcOffsetMinutes,
      topics: new Set(o.topics?.length ? o.topics : TOPICS),
      sent: new Map(),
      nextId: Number.isSafeInteger(last) ? last + 1 : 1,
    };
    this.#followers.add(follower);
    req.on("close", () => this.#drop(follower));
    res.on("error", () => this.#drop(follower));
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#look(), TICK_MS);
      this.#keepalive = setInterval(() => this.#followers.forEach((f) => f.res.write(": keepalive\n\n")), KEEPALIVE_MS);
      const look = () => this.#look();
      const unwatchActivity = this.daemon.core.online().activity.onChange(look);
      // A connection that ends or changes is told at once (a foreground `myst connect` follows it).
      this.daemon.connection.on("change", look);
      this.#unsubscribe = () => {
        unwatchActivity();
        this.daemon.connection.off("change", look);
      };
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

  /** Whether any follower follows the topic (a topic no one follows is not read). */
  #followed(topic: Topic): boolean {
    for (const f of this.#followers) if (f.topics.has(topic)) return true;
    return false;
  }

  async #send(): Promise<void> {
    if (this.#followers.size === 0) return;
    const d = this.daemon;
    const activity = d.core.online().activity;
    const shared: Partial<Record<Topic, unknown>> = {};
    if (this.#followed("provider")) shared.provider = { sessions: activity.liveSessions(), services: d.services.list() };
    if (this.#followed("connection")) shared.connection = d.connection.status();
    if (this.#followed("health")) shared.health = { ...(await this.#readHealth()), notes: activity.notes() };
    const earnings = this.#followed("earnings") ? await this.#readEarnings() : undefined;
    for (const f of this.#followers) {
      const topics: Partial<Record<Topic, unknown>> = { ...shared };
      if (earnings && f.topics.has("earnings")) {
        const key = `${f.days}/${f.utcOffsetMinutes}`;
        if (!earnings.daily.has(key)) earnings.daily.set(key, activity.daily(f.days, f.utcOffsetMinutes));
        topics.earnings = { ...earnings.report, daily: earnings.daily.get(key) };
      }
      for (const [topic, value] of Object.entries(topics) as [Topic, unknown][]) {
        if (!f.topics.has(topic)) continue;
        const json = JSON.stringify(value);
        if (f.sent.get(topic) === json) continue;
        f.sent.set(topic, json);
        f.res.write(`id: ${f.nextId++}\nevent: ${topic}\ndata: ${json}\n\n`);
      }
    }
  }

  /** The node's health, looked at every few seconds (it asks NATS, the chain and discovery). */
  #readHealth(): Promise<NodeHealth> {
    const now = Date.now();
    if (!this.#health || now - this.#health.at >= HEALTH_EVERY_MS) {
      const value = this.daemon.core.online().activity.health();
      value.catch(() => undefined);
      this.#health = { at: now, value };
    }
    return this.#health.value;
  }

  /**
   * The earnings report reads the whole promise table: read it again when a settlement, the
   * settlement queue or the hour changed (a new day in any time zone starts on one) at once, and
   * for new promises at most every few seconds (a busy provider stores several a second).
   */
  async #readEarnings(): Promise<EarningsRead> {
    const now = Date.now();
    const activity = this.daemon.core.online().activity;
    const version = activity.earningsVersion();
    const last = this.#earnings;
    const stale = !last || last.version.rest !== version.rest || (last.version.promises !== version.promises && now - last.at >= EARNINGS_EVERY_MS);
    if (stale) {
      const fees = await activity.settlementFees();
      this.#earnings = {
        version,
        at: now,
        report: { ...this.daemon.earnings.report(), gasFeesWei: fees.gasFeesWei, settlementsMined: fees.settlements },
        daily: new Map(),
      };
    }
    return this.#earnings!;
  }
}
