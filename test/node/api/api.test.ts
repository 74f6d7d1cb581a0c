import { expect } from "chai";
import net_ from "node:net";
import fs from "node:fs";
import path from "node:path";
import { parseEther } from "ethers";
import type { DiscoveryService } from "../../../node/discovery/server";
import type { Broker } from "../../../node/broker/broker";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { openapiProblems } from "../../support/openapi-validator";
import { rejectionOf } from "../../support/rejection";
import { tempDir } from "../../../scripts/lib/tmp";
import { startApiNode, startTestDiscovery, type ApiNode } from "../../support/api-node";
import { until } from "../../../scripts/lib/until";
import { OPENAPI_FILE, openapiText } from "../../../scripts/openapi";

interface Answer {
  status: number;
  headers?: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: each test checks the JSON it reads field by field
  body: any;
  text: string;
}

describe("the daemon's REST API (real chain, NATS and discovery; over HTTP)", function () {
  this.timeout(120_000);
  const net = new TestNetwork();
  const dirs: ReturnType<typeof tempDir>[] = [];
  const running: ApiNode[] = [];
  let discovery: DiscoveryService;
  let discoveryBroker: Broker;
  let provider: ApiNode;
  let consumer: ApiNode;

  async function startDaemon(dir?: string): Promise<ApiNode> {
    if (!dir) {
      const tmp = tempDir();
      dirs.push(tmp);
      dir = tmp.dir;
    }
    const r = await within(startApiNode(net, dir, discovery.url), "the daemon's start");
    running.push(r);
    return r;
  }

  async function stopDaemon(d: ApiNode): Promise<void> {
    running.splice(running.indexOf(d), 1);
    await within(d.api.stop(), "the API server's stop");
    await within(d.daemon.stop(), "the daemon's stop");
  }

  /** `p`, or an error naming the step that did not finish (a CI run once timed out in this file with no clue where). */
  async function within<T>(p: Promise<T>, what: string, ms = 30_000): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms)));
    try {
      return await Promise.race([p, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function call(d: ApiNode, method: string, route: string, options: { body?: unknown; raw?: string; token?: string | null } = {}): Promise<Answer> {
    const token = options.token === undefined ? d.token : options.token;
    const hasBody = options.body !== undefined || options.raw !== undefined;
    const res = await fetch(d.url + route, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(hasBody ? { "content-type": "application/json" } : {}) },
      body: options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body)),
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON (metrics): the text is the body.
    }
    return { status: res.status, headers: res.headers, body, text };
  }

  function expectError(a: Answer, status: number, code: string, message?: RegExp): void {
    expect(a.status, a.text).to.equal(status);
    expect(a.body.code, a.text).to.equal(code);
    expect(a.body.message).to.be.a("string").and.not.be.empty;
    if (message) expect(a.body.message).to.match(message);
  }

  before(async function () {
    await net.start();
    ({ discovery, broker: discoveryBroker } = await startTestDiscovery(net));
    provider = await startDaemon();
    consumer = await startDaemon();
  });
  after(async function () {
    for (const d of [...running]) await stopDaemon(d).catch(() => undefined);
    await discovery?.stop();
    await discoveryBroker?.stop();
    await net.stop();
    for (const t of dirs) t.cleanup();
  });

  describe("authentication", function () {
    it("keeps the API token in the data dir, readable by its owner only", function () {
      const file = path.join(provider.dir, "api-token");
      expect(fs.readFileSync(file, "utf8").trim()).to.equal(provider.token);
      expect(fs.statSync(file).mode & 0o777).to.equal(0o600);
    });

    it("answers 401 without a token or with a wrong one, on every route but /health and /openapi.json", async function () {
      for (const [method, route] of [
        ["GET", "/v1/identities"],
        ["GET", "/v1/services"],
        ["DELETE", "/v1/services/noop"],
        ["PUT", "/v1/connection"],
        ["GET", "/v1/earnings"],
        ["GET", "/metrics"],
      ]) {
        expectError(await call(provider, method, route, { token: null }), 401, "UNAUTHORIZED", /no API token/);
        expectError(await call(provider, method, route, { token: "x".repeat(43) }), 401, "UNAUTHORIZED", /a wrong API token/);
      }
      const health = await call(provider, "GET", "/health", { token: null });
      expect(health.status).to.equal(200);
      expect(health.body).to.include({ status: "ok", identity: provider.address });
    });

    it("documents every route in an OpenAPI document that asks for the bearer token", async function () {
      const doc = (await call(provider, "GET", "/openapi.json", { token: null })).body;
      expect(doc.openapi).to.match(/^3\./);
      expect(doc.components.securitySchemes.token).to.include({ type: "http", scheme: "bearer" });
      expect(Object.keys(doc.paths)).to.include.members([
        "/health",
        "/metrics",
        "/v1/identities",
        "/v1/identities/{address}",
        "/v1/identities/{address}/registration",
        "/v1/services",
        "/v1/services/{type}",
        "/v1/proposals",
        "/v1/connection",
        "/v1/connection/statistics",
        "/v1/sessions",
        "/v1/vault",
        "/v1/vault/deposit",
        "/v1/vault/exit",
        "/v1/vault/withdrawal",
        "/v1/earnings",
        "/v1/earnings/settlement",
        "/v1/ui/login-link",
        "/v1/ui/session",
        "/v1/events",
        "/v1/provider/sessions",
        "/v1/earnings/daily",
        "/v1/node/health",
        "/v1/connection/visible-ip",
      ]);
      expect(doc.paths["/health"].get.security).to.deep.equal([]);
      // docs/openapi.json is this document (regenerate it with `npm run openapi`).
      const committed = JSON.parse(fs.readFileSync(OPENAPI_FILE, "utf8"));
      expect(JSON.parse(await openapiText())).to.deep.equal(committed, "docs/openapi.json is stale: run npm run openapi");
      expect({ ...doc, info: { ...doc.info, version: committed.info.version } }).to.deep.equal(committed);
      expect(doc.paths["/v1/services"].post.requestBody.content["application/json"].schema.additionalProperties).to.equal(false);
    });

    it("serves an OpenAPI document valid for the version it declares (an independent validator)", async function () {
      const doc = (await call(provider, "GET", "/openapi.json", { token: null })).body;
      expect(doc.openapi).to.equal("3.0.3");
      expect(await openapiProblems(doc)).to.deep.equal([]);
    });
  });

  describe("bad requests", function () {
    it("refuses a body that is not JSON with 400 BAD_JSON", async function () {
      expectError(await call(provider, "POST", "/v1/services", { raw: '{"type": "noop",' }), 400, "BAD_JSON", /not valid JSON/);
      expectError(await call(provider, "POST", "/v1/identities", { raw: "" }), 400, "BAD_JSON", /empty/);
    });

    it("refuses unknown fields, naming them, instead of ignoring them", async function () {
      expectError(await call(provider, "POST", "/v1/services", { body: { type: "noop", colour: "red" } }), 400, "BAD_REQUEST", /unknown field "colour"/);
      expectError(
        await call(provider, "POST", "/v1/services", { body: { type: "noop", offer: { country: "DE", speed: 9 } } }),
        400,
        "BAD_REQUEST",
        /unknown field "speed"/,
      );
      expectError(
        await call(consumer, "PUT", "/v1/connection", { body: { serviceType: "noop", provder: provider.address } }),
        400,
        "BAD_REQUEST",
        /unknown field "provder"/,
      );
      expectError(await call(provider, "GET", "/v1/sessions?limit=5&colour=red"), 400, "BAD_FILTER", /unknown filter "colour"/);
    });

    it("names the field whose value is wrong", async function () {
      expectError(await call(provider, "POST", "/v1/services", { body: { type: "teleport" } }), 400, "BAD_REQUEST", /body\.type/);
      expectError(
        await call(provider, "POST", "/v1/services", { body: { type: "noop", offer: { pricePerHour: "cheap" } } }),
        400,
        "BAD_REQUEST",
        /body\.offer\.pricePerHour must match pattern/,
      );
      expectError(await call(provider, "GET", "/v1/identities/0x1234"), 400, "BAD_REQUEST", /params\.address/);
      expectError(await call(provider, "GET", "/v1/sessions?limit=0"), 400, "BAD_REQUEST", /querystring\.limit must be >= 1/);
    });

    /** One raw HTTP/1.1 exchange, so headers Node's client would refuse can be sent. */
    function raw(request: string): Promise<{ status: number; body: { code?: string; message?: string } }> {
      return new Promise((resolve, reject) => {
        const u = new URL(provider.url);
        const socket = net_.connect(Number(u.port), u.hostname, () => socket.end(request));
        let text = "";
        socket.on("data", (d) => (text += d.toString("latin1")));
        socket.on("error", reject);
        socket.on("close", () => {
          const [head, ...rest] = text.split("\r\n\r\n");
          const body = rest.join("\r\n\r\n");
          resolve({ status: Number(head.split(" ")[1]), body: body ? JSON.parse(body) : {} });
        });
      });
    }

    it("refuses text/plain with 415 UNSUPPORTED_MEDIA_TYPE", async function () {
      const body = "type=noop";
      const a = await raw(
        `POST /v1/services HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${provider.token}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      );
      expect(a).to.deep.include({ status: 415 });
      expect(a.body.code).to.equal("UNSUPPORTED_MEDIA_TYPE");
    });

    it("answers an over-long path parameter with 414 and {code, message}", async function () {
      const a = await raw(
        `GET /v1/identities/0x${"a".repeat(300)} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${provider.token}\r\nconnection: close\r\n\r\n`,
      );
      expect(a.status).to.equal(414);
      expect(a.body.code).to.equal("URI_TOO_LONG");
    });

    it("answers oversized headers with 431 and {code, message}", async function () {
      const a = await raw(`GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-junk: ${"a".repeat(20_000)}\r\nconnection: close\r\n\r\n`);
      expect(a.status).to.equal(431);
      expect(a.body.code).to.equal("HEADERS_TOO_LARGE");
    });

    it("answers a request for another host name (DNS rebinding) with 421 BAD_HOST, even on /health", async function () {
      const a = await raw(`GET /health HTTP/1.1\r\nhost: rebind.attacker.example:${new URL(provider.url).port}\r\nconnection: close\r\n\r\n`);
      expect(a.status).to.equal(421);
      expect(a.body.code).to.equal("BAD_HOST");
      const ok = await raw(`GET /health HTTP/1.1\r\nhost: localhost:${new URL(provider.url).port}\r\nconnection: close\r\n\r\n`);
      expect(ok.status).to.equal(200);
    });

    it("answers an unknown route with 404 NOT_FOUND", async function () {
      expectError(await call(provider, "GET", "/v1/teleport"), 404, "NOT_FOUND", /no route GET \/v1\/teleport/);
    });
  });

  describe("identities", function () {
    it("lists the keystore, marking the node's own identity", async function () {
      const a = await call(provider, "GET", "/v1/identities");
      expect(a.status).to.equal(200);
      expect(a.body.identities).to.have.length(1);
      expect(a.body.identities[0]).to.include({ address: provider.address, node: true, registered: true });
    });

    it("creates, shows and registers another identity", async function () {
      const created = await call(provider, "POST", "/v1/identities", { body: { passphrase: "second" } });
      expect(created.status, created.text).to.equal(201);
      const address: string = created.body.address;
      expect(fs.existsSync(created.body.keystoreFile)).to.equal(true);

      const shown = await call(provider, "GET", `/v1/identities/${address}`);
      expect(shown.status).to.equal(200);
      expect(shown.body).to.include({ address, node: false, balanceWei: "0" });
      expect(shown.body.registration.state).to.equal("unregistered");

      expectError(await call(provider, "POST", `/v1/identities/${address}/registration`, { body: {} }), 400, "PASSPHRASE_REQUIRED", /give its passphrase/);
      expectError(await call(provider, "POST", `/v1/identities/${address}/registration`, { body: { passphrase: "wrong" } }), 403, "WRONG_PASSPHRASE");
      expectError(await call(provider, "POST", `/v1/identities/${address}/registration`, { body: { passphrase: "second" } }), 422, "INSUFFICIENT_FUNDS");

      await net.chain.fund([address], { eth: parseEther("1"), myst: 0n });
      const registered = await call(provider, "POST", `/v1/identities/${address}/registration`, {
        body: { passphrase: "second", beneficiary: provider.address },
      });
      expect(registered.status, registered.text).to.equal(200);
      expect(registered.body).to.include({ state: "registered", identity: address, beneficiary: provider.address });
      const listed = (await call(provider, "GET", "/v1/identities")).body.identities;
      expect(listed.find((i: { address: string }) => i.address === address)).to.include({ node: false, registered: true });
    });

    it("says which identity it cannot find", async function () {
      const stranger = "0x" + "ab".repeat(20);
      expectError(await call(provider, "POST", `/v1/identities/${stranger}/registration`, { body: { passphrase: "pw" } }), 404, "IDENTITY_NOT_FOUND");
      expectError(
        await call(provider, "POST", "/v1/identities", { body: { passphrase: "" } }),
        400,
        "BAD_REQUEST",
        /passphrase must NOT have fewer than 1 characters/,
      );
    });
  });

  describe("services, proposals, the connection, sessions, the vault and earnings", function () {
    it("starts a service, shows it, refuses a second of the same type and an incomplete openvpn one", async function () {
      const started = await call(provider, "POST", "/v1/services", {
        body: { type: "noop", offer: { country: "de", ipType: "residential", pricePerHour: "36", pricePerGiB: "0.1", bandwidthMbps: 250 } },
      });
      expect(started.status, started.text).to.equal(201);
      expect(started.body.offer).to.include({
        country: "DE",
        ipType: "residential",
        pricePerHourWei: parseEther("36").toString(),
        pricePerGiBWei: parseEther("0.1").toString(),
        bandwidthMbps: 250,
      });
      await until(
        async () => (await call(provider, "GET", "/v1/services")).body.services[0]?.announcement.state === "announced",
        "the proposal to be announced",
      );
      const list = (await call(provider, "GET", "/v1/services")).body.services;
      expect(list).to.have.length(1);
      expect(list[0]).to.include({ type: "noop", sessions: 0 });

      expectError(await call(provider, "POST", "/v1/services", { body: { type: "noop" } }), 409, "SERVICE_EXISTS", /already running/);
      expectError(await call(provider, "POST", "/v1/services", { body: { type: "openvpn" } }), 400, "BAD_SERVICE_SETTINGS", /publicIp/);
      expectError(
        await call(provider, "POST", "/v1/services", { body: { type: "openvpn", openvpn: { publicIp: "somewhere" } } }),
        400,
        "BAD_SERVICE_SETTINGS",
        /not an IP address/,
      );
      expectError(await call(provider, "POST", "/v1/services", { body: { type: "wireguard" } }), 400, "BAD_SERVICE_SETTINGS", /publicIp/);
      expectError(
        await call(provider, "POST", "/v1/services", { body: { type: "wireguard", wireguard: { publicIp: "198.18.0.1", device: "no spaces allowed" } } }),
        400,
        "BAD_REQUEST",
        /device/,
      );
      expectError(
        await call(provider, "POST", "/v1/services", { body: { type: "wireguard", openvpn: { publicIp: "198.18.0.1" } } }),
        400,
        "BAD_SERVICE_SETTINGS",
        /takes `wireguard` settings/,
      );
      expectError(await call(provider, "DELETE", "/v1/services/openvpn"), 404, "SERVICE_UNKNOWN", /no openvpn service/);
    });

    it("refuses provider controls it cannot use with 400 and a code that names the setting, before anything starts", async function () {
      const openvpn = (controls: unknown) => ({ body: { type: "openvpn", openvpn: { publicIp: "198.18.3.2" }, controls } });
      expectError(await call(provider, "POST", "/v1/services", openvpn({ schedule: ["someday 08:00-22:00"] })), 400, "BAD_SCHEDULE", /"someday" is not a day/);
      expectError(await call(provider, "POST", "/v1/services", openvpn({ schedule: ["mon 08:00-25:00"] })), 400, "BAD_SCHEDULE", /not a time of day/);
      expectError(
        await call(provider, "POST", "/v1/services", openvpn({ access: { allowFile: "/nonexistent/allow.txt" } })),
        400,
        "ACCESS_LIST_UNREADABLE",
        /cannot read the access list/,
      );
      expectError(
        await call(provider, "POST", "/v1/services", openvpn({ egress: { blockCidrs: ["10.0.0.0/33"] } })),
        400,
        "BAD_EGRESS_POLICY",
        /10\.0\.0\.0\/33/,
      );
      expectError(await call(provider, "POST", "/v1/services", openvpn({ trafficCap: { dailyGiB: -1 } })), 400, "BAD_REQUEST", /dailyGiB/);
      expectError(await call(provider, "POST", "/v1/services", openvpn({ access: { allow: ["bob"] } })), 400, "BAD_REQUEST", /allow/);
      expect((await call(provider, "GET", "/v1/services")).body.services.map((s: { type: string }) => s.type)).to.deep.equal(["noop"]);
    });

    it("searches discovery with filters", async function () {
      const found = await until(async () => {
        const a = await call(consumer, "GET", "/v1/proposals?service_type=noop&country=DE&ip_type=residential");
        return a.body.proposals?.length === 1 && a;
      }, "the proposal in discovery");
      expect(found.status).to.equal(200);
      expect(found.body.proposals[0]).to.include({ provider: provider.address, serviceType: "noop", bandwidthMbps: 250 });
      expect(found.body.nextCursor).to.equal(null);
      const none = await call(consumer, "GET", "/v1/proposals?country=FR");
      expect(none.body.proposals).to.deep.equal([]);
      const cheap = await call(consumer, "GET", `/v1/proposals?max_price_per_hour=${parseEther("1")}`);
      expect(cheap.body.proposals).to.deep.equal([]);
      expectError(await call(consumer, "GET", "/v1/proposals?ip_type=satellite"), 400, "BAD_FILTER", /ip_type must be one of/);
      // The noop service has no allow list: an open access policy.
      expect((await call(consumer, "GET", "/v1/proposals?access_policy=open")).body.proposals).to.have.length(1);
      expect((await call(consumer, "GET", "/v1/proposals?access_policy=allowlist")).body.proposals).to.deep.equal([]);
      expectError(await call(consumer, "GET", "/v1/proposals?access_policy=friends"), 400, "BAD_FILTER", /access_policy must be/);
    });

    it("says it is not connected before the first connection", async function () {
      expect((await call(consumer, "GET", "/v1/connection")).body).to.deep.equal({ state: "disconnected" });
      expectError(await call(consumer, "DELETE", "/v1/connection"), 409, "NOT_CONNECTED");
      expectError(await call(consumer, "GET", "/v1/connection/statistics"), 409, "NOT_CONNECTED");
      expectError(
        await call(consumer, "PUT", "/v1/connection", { body: { serviceType: "noop", country: "FR" } }),
        404,
        "NO_PROPOSAL",
        /no noop proposal matches/,
      );
      expectError(
        await call(consumer, "PUT", "/v1/connection", { body: { serviceType: "noop", provider: provider.address } }),
        422,
        "SESSION_REFUSED",
        /PAYMENT_NOT_COVERED: the vault holds 0 wei/,
      );
    });

    it("deposits into the vault once, then connects with no transaction, meters and pays, and disconnects", async function () {
      const deposited = await call(consumer, "POST", "/v1/vault/deposit", { body: { amount: "2", escrow: "0.5" } });
      expect(deposited.status, deposited.text).to.equal(200);
      expect(deposited.body.vault).to.include({ consumer: consumer.address, balanceWei: parseEther("2").toString(), escrowWei: parseEther("0.5").toString() });
      const nonce = await net.conn.provider.getTransactionCount(consumer.address);
      const connected = await call(consumer, "PUT", "/v1/connection", {
        body: { serviceType: "noop", provider: provider.address, maxPricePerHour: "40" },
      });
      expect(connected.status, connected.text).to.equal(201);
      expect(connected.body).to.include({ state: "connected", provider: provider.address, serviceType: "noop", country: "DE", promisedWei: "0" });
      expect(await net.conn.provider.getTransactionCount(consumer.address), "no transaction to connect").to.equal(nonce);
      const sessionId: string = connected.body.sessionId;

      expectError(await call(consumer, "PUT", "/v1/connection", { body: { serviceType: "noop" } }), 409, "ALREADY_CONNECTED", new RegExp(sessionId));
      expect((await call(consumer, "GET", "/v1/connection")).body).to.include({ state: "connected", sessionId });
      expect((await call(provider, "GET", "/v1/services")).body.services[0].sessions).to.equal(1);

      const paid = await until(async () => {
        const s = (await call(consumer, "GET", "/v1/connection/statistics")).body;
        return BigInt(s.promisedWei) > 0n && s.invoices >= 2 && s;
      }, "two invoices paid with promises");
      expect(paid).to.include({ state: "connected", sessionId });

      const ended = await call(consumer, "DELETE", "/v1/connection");
      expect(ended.status, ended.text).to.equal(200);
      expect(ended.body).to.include({ state: "disconnected", sessionId, endReason: "consumer disconnected" });
      expect(BigInt(ended.body.promisedWei)).to.be.greaterThanOrEqual(BigInt(paid.promisedWei));
      expect((await call(consumer, "GET", "/v1/connection")).body).to.deep.equal({ state: "disconnected", sessionId, endReason: "consumer disconnected" });
      const last = (await call(consumer, "GET", "/v1/connection/statistics")).body;
      expect(last).to.include({ state: "disconnected", sessionId });

      const mine = (await call(consumer, "GET", "/v1/sessions?role=consumer")).body.sessions;
      expect(mine[0]).to.include({ id: sessionId, role: "consumer", peer: provider.address, serviceType: "noop", endReason: "consumer disconnected" });
      expect(mine[0].promisedWei).to.equal(ended.body.promisedWei);
      await until(async () => (await call(provider, "GET", "/v1/sessions")).body.sessions[0]?.endedAt, "the provider to record the end");
      const theirs = (await call(provider, "GET", "/v1/sessions?limit=1")).body.sessions;
      expect(theirs[0]).to.include({ id: sessionId, role: "provider", peer: consumer.address });
    });

    it("shows the provider's earnings and settles them on request", async function () {
      const before = (await call(provider, "GET", "/v1/earnings")).body;
      expect(BigInt(before.totalPromisedWei)).to.be.greaterThan(0n);
      expect(before.settledWei).to.equal("0");
      expect(before.sessions[0]).to.include({ consumer: consumer.address });

      const settled = await call(provider, "POST", "/v1/earnings/settlement");
      expect(settled.status, settled.text).to.equal(200);
      expect(settled.body.settledWei).to.equal(before.totalPromisedWei);
      expect(settled.body.unsettledWei).to.equal("0");
      expect(settled.body).to.include({ feesWei: "0", netWei: before.totalPromisedWei });
      expect(settled.body.settlements[0].txHash).to.match(/^0x[0-9a-f]{64}$/);
      // Paid out of the vault's credit to the provider's account in the same request.
      expect(await net.conn.vault.earnings(provider.address)).to.equal(0n);
    });

    it("shows the consumer's vault, tops it up, refuses bad amounts and leaves it in two steps", async function () {
      const vault = (await call(consumer, "GET", "/v1/vault")).body;
      expect(vault).to.include({ consumer: consumer.address, exitReadyAt: null });
      expect(BigInt(vault.balanceWei)).to.be.lessThan(parseEther("2")); // the provider settled from it

      const topped = await call(consumer, "POST", "/v1/vault/deposit", { body: { amount: "0.5" } });
      expect(topped.status, topped.text).to.equal(200);
      expect(BigInt(topped.body.vault.balanceWei)).to.equal(BigInt(vault.balanceWei) + parseEther("0.5"));
      expectError(await call(consumer, "POST", "/v1/vault/deposit", { body: { amount: "0" } }), 400, "BAD_AMOUNT", /positive/);
      expectError(await call(consumer, "POST", "/v1/vault/deposit", { body: { amount: "100000" } }), 400, "BAD_AMOUNT", /the identity holds/);
      expectError(await call(consumer, "POST", "/v1/vault/deposit", { body: { amount: "1", extra: 1 } }), 400, "BAD_REQUEST");
      expectError(await call(consumer, "POST", "/v1/vault/withdrawal"), 409, "EXIT_NOT_REQUESTED", /request an exit first/);

      const requested = await call(consumer, "POST", "/v1/vault/exit");
      expect(requested.status, requested.text).to.equal(200);
      expect(requested.body.vault.exitReadyAt).to.be.a("string");
      expectError(await call(consumer, "POST", "/v1/vault/exit"), 409, "EXIT_PENDING", /already pending/);
      const early = await call(consumer, "POST", "/v1/vault/withdrawal", { body: {} });
      expect(early.status, early.text).to.equal(422);
      expect(early.body.message).to.match(/ExitNotReady/);
    });

    it("counts sessions, bytes, promises, settlements and errors in its Prometheus metrics", async function () {
      const p = (await call(provider, "GET", "/metrics")).text;
      expect(p).to.match(/myst_sessions_started_total\{role="provider",service_type="noop"\} 1/);
      expect(p).to.match(/myst_sessions_ended_total\{role="provider",service_type="noop"\} 1/);
      expect(p).to.match(/myst_sessions_active\{role="provider"\} 0/);
      expect(p).to.match(/myst_promises_total\{role="provider",result="accepted"\} [1-9]/);
      expect(p).to.match(/myst_settlements_total\{result="mined"\} 1/);
      expect(p).to.match(/myst_settled_myst_total 0\.\d+/);
      expect(p).to.match(/myst_errors_total\{source="api",code="UNAUTHORIZED"\} [1-9]/);
      expect(p).to.match(/myst_errors_total\{source="session",code="PAYMENT_NOT_COVERED"\} 1/);
      expect(p).to.match(/myst_session_bytes_total\{role="provider",direction="in"\} \d+/);
      const c = (await call(consumer, "GET", "/metrics")).text;
      expect(c).to.match(/myst_sessions_started_total\{role="consumer",service_type="noop"\} 1/);
      expect(c).to.match(/myst_promises_total\{role="consumer",result="issued"\} [1-9]/);
      expect(c).to.match(/myst_errors_total\{source="connect",code="NO_PROPOSAL"\} 1/);
    });

    it("takes one filter spelling (camelCase, prices in MYST) for proposals and the connect, and the old one (snake_case, wei) for one more version", async function () {
      const found = await call(consumer, "GET", "/v1/proposals?serviceType=noop&country=de&ipType=residential&accessPolicy=open&minBandwidthMbps=250");
      expect(found.body.proposals, found.text).to.have.length(1);
      expect(found.headers?.get("deprecation")).to.equal(null);
      // The provider asks 36 MYST an hour: 36 passes, 35.9 does not, in either spelling.
      expect((await call(consumer, "GET", "/v1/proposals?maxPricePerHour=36")).body.proposals).to.have.length(1);
      expect((await call(consumer, "GET", "/v1/proposals?maxPricePerHour=35.9")).body.proposals).to.deep.equal([]);
      const old = await call(consumer, "GET", `/v1/proposals?max_price_per_hour=${parseEther("36")}&service_type=noop`);
      expect(old.body.proposals).to.have.length(1);
      expect(old.headers?.get("deprecation")).to.equal("true");
      expect((await call(consumer, "GET", `/v1/proposals?providerId=${provider.address}`)).body.proposals).to.have.length(1);
      expectError(await call(consumer, "GET", "/v1/proposals?serviceType=noop&service_type=noop"), 400, "BAD_FILTER", /given twice/);
      expectError(await call(consumer, "GET", "/v1/proposals?maxPricePerHour=1e18"), 400, "BAD_REQUEST", /maxPricePerHour/);
      // The connect takes the same fields: a price limit below the provider's finds no one.
      expectError(await call(consumer, "PUT", "/v1/connection", { body: { serviceType: "noop", maxPricePerHour: "35.9" } }), 404, "NO_PROPOSAL");
      expectError(await call(consumer, "PUT", "/v1/connection", { body: { serviceType: "noop", minBandwidthMbps: 251 } }), 404, "NO_PROPOSAL");
    });

    it("stops a service: its proposal leaves discovery; starts one of two concurrent requests; a restarted daemon brings remembered services back", async function () {
      const stopped = await call(provider, "DELETE", "/v1/services/noop");
      expect(stopped.status, stopped.text).to.equal(200);
      expect(stopped.body).to.deep.equal({ type: "noop", stopped: true });
      expect((await call(provider, "GET", "/v1/services")).body.services).to.deep.equal([]);
      await until(async () => (await call(consumer, "GET", "/v1/proposals?service_type=noop")).body.proposals.length === 0, "the proposal to leave discovery");

      // Two requests at once for one type: one starts it, the other is told it exists.
      const both = await Promise.all([1, 2].map(() => call(provider, "POST", "/v1/services", { body: { type: "noop", offer: { country: "NL" } } })));
      expect(both.map((a) => a.status).sort()).to.deep.equal([201, 409]);
      await stopDaemon(provider);
      provider = await startDaemon(provider.dir);
      const services = (await call(provider, "GET", "/v1/services")).body.services;
      expect(services).to.have.length(1);
      expect(services[0].offer).to.include({ country: "NL", pricePerHourWei: parseEther("0.01").toString() });
      await until(async () => (await call(consumer, "GET", "/v1/proposals?country=NL")).body.proposals.length === 1, "the restarted service in discovery");
    });

    it("keeps a remembered service that fails to start again in services.json until the operator stops it", async function () {
      const file = path.join(provider.dir, "services.json");
      await stopDaemon(provider);
      const saved = JSON.parse(fs.readFileSync(file, "utf8"));
      // An OpenVPN service in a namespace that is gone: it cannot start (and touches nothing here).
      const broken = { spec: { type: "openvpn", openvpn: { publicIp: "198.18.0.1", port: 1194, netns: "myst-gone-ns" } }, offer: saved[0].offer };
      fs.writeFileSync(file, JSON.stringify([...saved, broken]));
      provider = await startDaemon(provider.dir);
      expect((await call(provider, "GET", "/v1/services")).body.services.map((s: { type: string }) => s.type)).to.deep.equal(["noop"]);
      // An operator's change to another service rewrites the file: the failed one is still in it.
      expect((await call(provider, "DELETE", "/v1/services/noop")).status).to.equal(200);
      expect(JSON.parse(fs.readFileSync(file, "utf8")).map((s: { spec: { type: string } }) => s.spec.type)).to.deep.equal(["openvpn"]);
      // Stopping the failed one is how the operator forgets it.
      expect((await call(provider, "DELETE", "/v1/services/openvpn")).status).to.equal(200);
      expect(JSON.parse(fs.readFileSync(file, "utf8"))).to.deep.equal([]);
      fs.writeFileSync(file, JSON.stringify(saved));
      await stopDaemon(provider);
      provider = await startDaemon(provider.dir);
    });

    it("checks a hand-edited services.json: a bad entry is named and kept aside, the others start; a file that is not a list stops the start", async function () {
      const file = path.join(provider.dir, "services.json");
      await stopDaemon(provider);
      const saved = JSON.parse(fs.readFileSync(file, "utf8"));
      expect(saved).to.have.length(1);
      const edited = [
        ...saved,
        { spec: { type: "openvpn", openvpn: { publicIp: "198.18.0.1", port: "1194" } }, offer: saved[0].offer },
        { spec: { type: "noop" }, offer: { ...saved[0].offer, ipType: "satellite" } },
      ];
      fs.writeFileSync(file, JSON.stringify(edited));
      provider = await startDaemon(provider.dir);
      expect((await call(provider, "GET", "/v1/services")).body.services.map((s: { type: string }) => s.type)).to.deep.equal(["noop"]);
      expect((await call(provider, "GET", "/metrics")).text).to.match(/myst_errors_total\{source="service",code="SERVICES_FILE_INVALID"\} 2/);
      expect(JSON.parse(fs.readFileSync(`${file}.invalid`, "utf8"))).to.deep.equal(edited);

      await stopDaemon(provider);
      fs.writeFileSync(file, '{"spec": ');
      const err = await rejectionOf(startDaemon(provider.dir));
      expect(err.code).to.equal("SERVICES_FILE_CORRUPT");
      expect(err.message).to.include(file);
      fs.writeFileSync(file, JSON.stringify(saved));
      provider = await startDaemon(provider.dir);
      expect((await call(provider, "GET", "/v1/services")).body.services).to.have.length(1);
    });
  });
});
