import { expect } from "chai";
import http from "node:http";
import path from "node:path";
import { DashboardLogins, LOGIN_LINK_TTL_MS } from "../../../node/ops/dashboard/auth";
import { NodeClient } from "../../../node/api/client";
import { ApiServer } from "../../../node/api/server";
import type { MystNode } from "../../../node/ops/node";
import type { DiscoveryService } from "../../../node/discovery/server";
import type { Broker } from "../../../node/broker/broker";
import { isMystError } from "../../../node/errors/MystError";
import { silentLogger } from "../../../node/log/logger";
import { until } from "../../../scripts/lib/until";
import { buildDashboard } from "../../support/browser";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { tempDir } from "../../../scripts/lib/tmp";
import { startApiNode, startTestDiscovery } from "../../support/api-node";
import type { Db } from "../../../node/store/database";

/** Reads server-sent events from a response body: `until` reads on until the events so far satisfy `enough`. */
function eventReader(res: Response) {
  const events: { event: string; data: unknown }[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  return {
    events,
    async until(enough: (events: { event: string; data: unknown }[]) => boolean): Promise<void> {
      while (!enough(events)) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the event stream ended");
        buffer += decoder.decode(value, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) });
        }
      }
    },
    close: () => reader.cancel(),
  };
}

describe("the dashboard's API: login links, the session cookie, origins, events, health, the visible IP", function () {
  this.timeout(120_000);
  const net = new TestNetwork();
  const dir = tempDir();
  let discovery: DiscoveryService;
  let discoveryBroker: Broker;
  let daemon: MystNode;
  let api: ApiServer;
  let token: string;
  let ipEcho: http.Server;
  let ipAnswer = "203.0.113.7";

  const login = async (): Promise<string> => {
    const code = new URL(api.loginLink()).hash.replace("#login=", "");
    const res = await fetch(`${api.url}/v1/ui/session`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code }) });
    expect(res.status).to.equal(200);
    return res.headers.get("set-cookie")!;
  };
  const asPage = (setCookie: string, extra: Record<string, string> = {}) => ({ cookie: setCookie.split(";")[0], ...extra });

  before(async function () {
    buildDashboard();
    await net.start();
    ipEcho = http.createServer((_req, res) => res.end(ipAnswer));
    await new Promise<void>((resolve) => ipEcho.listen(0, "127.0.0.1", resolve));
    ({ discovery, broker: discoveryBroker } = await startTestDiscovery(net));
    ({ daemon, api, token } = await startApiNode(net, dir.dir, discovery.url, {
      MYST_IP_CHECK_URL: `http://127.0.0.1:${(ipEcho.address() as { port: number }).port}/`,
    }));
  });
  after(async function () {
    await api?.stop();
    await daemon?.stop();
    await discovery?.stop();
    await discoveryBroker?.stop();
    ipEcho?.close();
    await net.stop();
    dir.cleanup();
  });

  describe("logging in", function () {
    it("serves the page to anyone, and nothing of the node without the token or the session", async function () {
      const page = await fetch(`${api.url}/`);
      expect(page.status).to.equal(200);
      expect(page.headers.get("content-type")).to.match(/text\/html/);
      expect(page.headers.get("content-security-policy")).to.include("default-src 'self'").and.include("frame-ancestors 'none'");
      expect(page.headers.get("x-frame-options")).to.equal("DENY");
      const html = await page.text();
      expect(html).to.include('<div id="app">');
      const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1];
      expect((await fetch(api.url + script)).status).to.equal(200);
      // A link from another site (a mail, a chat) opens the page; the page's own requests decide the rest.
      expect((await fetch(`${api.url}/`, { headers: { "sec-fetch-site": "cross-site" } })).status).to.equal(200);
      // Only the page's files: any other path wants the token, so a route added later is not public by accident.
      expect((await fetch(`${api.url}/anything-else`)).status).to.equal(401);
      for (const route of ["/v1/events", "/v1/node/health", "/v1/provider/sessions", "/v1/earnings/daily", "/v1/connection/visible-ip"]) {
        const res = await fetch(api.url + route);
        expect(res.status, route).to.equal(401);
      }
    });

    it("trades a login code once for an HttpOnly SameSite=Strict cookie", async function () {
      const code = new URL(api.loginLink()).hash.replace("#login=", "");
      const trade = () =>
        fetch(`${api.url}/v1/ui/session`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code }) });
      const first = await trade();
      expect(await first.json()).to.deep.equal({ identity: daemon.identity });
      const cookie = first.headers.get("set-cookie")!;
      expect(cookie).to.match(new RegExp(`^myst_ui_${new URL(api.url).port}=[\\w-]{40,};`));
      expect(cookie)
        .to.match(/HttpOnly/)
        .and.match(/SameSite=Strict/)
        .and.match(/Path=\//);
      const second = await trade();
      expect(second.status).to.equal(401);
      expect(await second.json()).to.include({ code: "LOGIN_LINK_INVALID" });
      expect((await fetch(`${api.url}/v1/services`, { headers: asPage(cookie) })).status).to.equal(200);
    });

    it("refuses an expired login code and forgets idle sessions", function () {
      const logins = new DashboardLogins();
      const { code } = logins.issue(1000);
      expect(() => logins.redeem(code, 1000 + LOGIN_LINK_TTL_MS + 1))
        .to.throw()
        .that.satisfies((e: unknown) => isMystError(e, "LOGIN_LINK_INVALID"));
      const session = logins.redeem(logins.issue(1000).code, 1000);
      expect(logins.valid(session, 2000)).to.equal(true);
      expect(logins.valid(session, 2000 + 13 * 3600_000)).to.equal(false);
      expect(logins.valid("made-up", 2000)).to.equal(false);
    });

    it("logs out: the cookie stops working", async function () {
      const cookie = await login();
      const origin = { origin: api.url };
      expect((await fetch(`${api.url}/v1/ui/session`, { method: "DELETE", headers: asPage(cookie, origin) })).status).to.equal(200);
      expect((await fetch(`${api.url}/v1/services`, { headers: asPage(cookie) })).status).to.equal(401);
    });
  });

  describe("another site", function () {
    it("refuses a request from a foreign origin, with the cookie or even with the token", async function () {
      const cookie = await login();
      for (const headers of [
        asPage(cookie, { origin: "http://evil.example" }),
        asPage(cookie, { "sec-fetch-site": "cross-site" }),
        { authorization: `Bearer ${token}`, origin: "http://127.0.0.1:1" },
      ]) {
        const res = await fetch(`${api.url}/v1/services`, { headers });
        expect(res.status).to.equal(403);
        expect(await res.json()).to.include({ code: "BAD_ORIGIN" });
      }
    });

    it("takes a change made with the cookie only when the page says it comes from the node's own origin", async function () {
      const cookie = await login();
      const post = (headers: Record<string, string>) => fetch(`${api.url}/v1/ui/login-link`, { method: "POST", headers });
      expect((await post(asPage(cookie))).status).to.equal(403);
      const same = await post(asPage(cookie, { origin: api.url }));
      expect(same.status).to.equal(200);
      expect(((await same.json()) as { url: string }).url).to.match(/#login=/);
      // The CLI sends no Origin: its token is enough.
      expect((await post({ authorization: `Bearer ${token}` })).status).to.equal(200);
    });
  });

  describe("what the page shows", function () {
    it("streams every topic at once, then a change as it happens (/v1/events)", async function () {
      const res = await fetch(`${api.url}/v1/events?utcOffsetMinutes=60&days=3`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).to.equal(200);
      expect(res.headers.get("content-type")).to.match(/^text\/event-stream/);
      const stream = eventReader(res);
      const topicsSeen = () => new Set(stream.events.map((e) => e.event));
      await stream.until(() => topicsSeen().size === 4);
      const selling = (e: { event: string; data: unknown }) => e.event === "provider" && (e.data as { services: { type: string }[] }).services.length > 0;
      expect(stream.events.some(selling)).to.equal(false);
      await daemon.services.start({ type: "noop" }, { country: "NL", ipType: "residential", pricePerHour: 1n, pricePerGiB: 0n, bandwidthMbps: 10 });
      await stream.until((ev) => ev.some(selling));
      await stream.close();
      const events = stream.events;
      const topics = new Set(events.map((e) => e.event));
      expect([...topics]).to.include.members(["provider", "earnings", "connection", "health"]);
      const earnings = events.find((e) => e.event === "earnings")!.data as { daily: unknown[]; feesWei: string };
      expect(earnings.daily).to.have.length(3);
      expect(earnings.feesWei).to.equal("0");
      expect(events.find((e) => e.event === "connection")!.data).to.deep.equal({ state: "disconnected" });
      const bad = await fetch(`${api.url}/v1/events?utcOffsetMinutes=9999`, { headers: { authorization: `Bearer ${token}` } });
      expect(bad.status).to.equal(400);
    });

    it("streams only the topics asked for, and the connection as soon as it changes (what `myst connect` follows)", async function () {
      const endpoint = { url: api.url, pid: process.pid, identity: daemon.identity!, startedAt: new Date().toISOString() };
      const client = NodeClient.of(endpoint, token);
      const stop = new AbortController();
      const seen: { event: string; data: unknown }[] = [];
      const failed = (e: { event: string; data: unknown }) => e.event === "connection" && "lastFailure" in (e.data as object);
      const reading = (async () => {
        for await (const e of client.events({ topics: ["connection"] }, stop.signal)) {
          seen.push(e);
          if (failed(e)) return;
        }
      })();
      await until(async () => seen.length > 0, "the first event");
      expect(seen[0]).to.deep.equal({ event: "connection", data: { state: "disconnected" } });
      // A connect that finds no provider changes the connection: its failure is the next event.
      await client.connect({ serviceType: "noop", country: "FR" }).catch(() => undefined);
      await reading;
      stop.abort();
      expect(seen.map((e) => e.event)).to.deep.equal(seen.map(() => "connection"));
      expect((seen.at(-1)!.data as { lastFailure: { code: string } }).lastFailure.code).to.be.oneOf(["NO_PROPOSAL", "DISCOVERY_UNREACHABLE"]);
    });

    it("ends the streams it serves when the API stops, instead of waiting on them", async function () {
      const second = new ApiServer({ daemon, token, host: "127.0.0.1", port: 0, version: "test", log: silentLogger });
      await second.start();
      const res = await fetch(`${second.url}/v1/events`, { headers: { authorization: `Bearer ${token}` } });
      const stream = eventReader(res);
      await stream.until((ev) => ev.length > 0);
      await second.stop();
      const ended = await stream
        .until(() => false)
        .then(
          () => "open",
          (err: Error) => err.message,
        );
      expect(ended).to.equal("the event stream ended");
    });

    it("says whether discovery lists each proposal, and why not", async function () {
      const health = await until(async () => {
        // biome-ignore lint/suspicious/noExplicitAny: the test reads the JSON field by field
        const h: any = await (await fetch(`${api.url}/v1/node/health`, { headers: { authorization: `Bearer ${token}` } })).json();
        return h.visibility.find((v: { serviceType: string; listed: boolean }) => v.serviceType === "noop" && v.listed) && h;
      }, "discovery to list the noop proposal");
      expect(health).to.deep.include({ nats: { ok: true, detail: "connected" }, registration: { ok: true, detail: "registered" } });
      expect(health.chain.ok).to.equal(true);
      expect(health.visibility.find((v: { serviceType: string }) => v.serviceType === "noop").reasons).to.deep.equal([]);
      await daemon.services.stop("noop");
    });

    it("says in words when the node cannot write its promises (a read-only store), and green again once it can", async function () {
      const health = async () =>
        // biome-ignore lint/suspicious/noExplicitAny: the test reads the JSON field by field
        (await (await fetch(`${api.url}/v1/node/health`, { headers: { authorization: `Bearer ${token}` } })).json()) as any;
      expect((await health()).store).to.include({ ok: true });
      // The node's own database handle (private to the store): SQLite refuses every write, as on a read-only disk.
      const db = (daemon.provider.store as unknown as { db: Db }).db;
      db.pragma("query_only = 1");
      try {
        const promise = { pairId: `0x${"1".repeat(64)}`, consumer: `0x${"2".repeat(40)}`, provider: daemon.identity!, sessionId: "a".repeat(32) };
        expect(() => daemon.provider.store.save({ ...promise, amount: 5n, increase: 5n, signature: `0x${"3".repeat(130)}`, receivedAt: Date.now() }))
          .to.throw()
          .with.property("code", "STORE_READ_ONLY");
        const h = await health();
        expect(h.store.ok).to.equal(false);
        expect(h.store.detail).to.include(path.join(dir.dir, "myst.db")).and.include("read-only");
        db.pragma("query_only = 0");
        daemon.provider.store.save({ ...promise, amount: 6n, increase: 1n, signature: `0x${"3".repeat(130)}`, receivedAt: Date.now() });
        expect((await health()).store).to.include({ ok: true });
      } finally {
        db.pragma("query_only = 0");
      }
    });

    it("checks the visible IP with the configured service, and says so when the answer is not an address", async function () {
      const get = async (q = "") => {
        const res = await fetch(`${api.url}/v1/connection/visible-ip${q}`, { headers: { authorization: `Bearer ${token}` } });
        return { status: res.status, body: (await res.json()) as { ip?: string; code?: string } };
      };
      expect((await get()).body).to.include({ ip: "203.0.113.7" });
      ipAnswer = "<html>hello</html>";
      expect(await get()).to.deep.include({ status: 502 });
      expect((await get()).body.code).to.equal("IP_CHECK_FAILED");
      ipAnswer = "203.0.113.7";
      const bad = await get("?netns=..%2Fetc");
      expect(bad.status).to.equal(400);
      expect(bad.body.code).to.equal("BAD_NETNS");
    });
  });
});
