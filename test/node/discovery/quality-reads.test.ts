import { expect } from "chai";
import type { FastifyInstance } from "fastify";
import { Registry } from "prom-client";
import { buildDiscoveryApp } from "../../../node/discovery/http-api";
import { ProposalIndex } from "../../../node/discovery/index";
import { QualityBook } from "../../../node/discovery/quality";
import { clientOf, type QualityReadLimits } from "../../../node/discovery/quality-reads";
import { LocalReceiptStore, type StoredReceipt } from "../../../node/discovery/receipt-store";
import { IdentityKey } from "../../../node/identity/key";
import { silentLogger } from "../../../node/log/logger";
import { type Receipt, signReceipt } from "../../../node/quality/receipt";
import { promiseCheckOf } from "../../../node/quality/score";

/** A store that counts its reads of a provider's records, and can hold them until let go. */
class CountingStore extends LocalReceiptStore {
  reads = 0;
  gate?: Promise<void>;
  override async read(provider: string): Promise<StoredReceipt[]> {
    this.reads++;
    await this.gate;
    return super.read(provider);
  }
}

/**
 * `GET /v1/quality/{provider}` reads the provider's raw records from the store's disk (JetStream: a
 * stream info call and an ordered consumer each time): a replica bounds what one client address can
 * make it do, how many reads run at once, and serves an unchanged provider's answer from a small cache.
 */
describe("the quality route bounds its cost: per client address, reads at once, a cache of unchanged answers", () => {
  const provider = IdentityKey.generate();
  const consumers = Array.from({ length: 3 }, () => IdentityKey.generate());
  const known = new Map([provider, ...consumers].map((k) => [k.address.toLowerCase(), k.publicKey]));
  const directory = { publicKeyOf: async (id: string) => known.get(id.toLowerCase()) ?? null };
  let store: CountingStore;
  let book: QualityBook;
  let app: FastifyInstance;
  let n = 0;

  const receipt = (consumer: IdentityKey): Receipt => ({
    sessionId: `s-${n++}`,
    consumer: consumer.address.toLowerCase(),
    provider: provider.address.toLowerCase(),
    serviceType: "noop",
    path: "public",
    reached: "throughput",
    failed: null,
    connectMs: 120,
    bytesIn: 1000,
    bytesOut: 200,
    throughputKbps: 50_000,
    advertisedMbps: 100,
    durationMs: 60_000,
    promisedWei: 0n,
    promise: null,
    at: Date.now() - 1000,
  });
  const ask = (from: string) =>
    app
      .inject({ method: "GET", url: `/v1/quality/${provider.address}`, remoteAddress: from })
      .then((r) => ({ status: r.statusCode, headers: r.headers, body: r.json() }));

  beforeEach(async () => {
    store = new CountingStore();
    book = new QualityBook({ directory, promiseCheck: promiseCheckOf(31337n, "0x5FbDB2315678afecb367f032d93F642f64180aa3"), store });
    await book.start();
    await book.ingest(signReceipt(consumers[0], receipt(consumers[0])));
    await book.idle();
    app = await appWith({ perMinute: 6, burst: 3, inFlight: 2, cacheMs: 60_000 });
  });

  const appWith = (qualityReads: QualityReadLimits) =>
    buildDiscoveryApp(
      {
        ready: true,
        index: new ProposalIndex(3_600_000),
        quality: book,
        postReceipt: (b) => book.ingest(b),
        postProbe: (b) => book.ingest(b, "probe"),
        metrics: new Registry(),
        post: async () => "refreshed",
        health: () => ({ broker: "connected", store: "ok" }),
        queryTimer: () => () => undefined,
      },
      { log: silentLogger, qualityReads },
    );

  afterEach(async () => {
    await app.close();
    await book.stop();
  });

  it("answers one address its burst, then 429 QUALITY_READ_LIMITED with Retry-After; another address is still answered", async () => {
    for (let i = 0; i < 3; i++) expect((await ask("10.0.0.1")).status).to.equal(200);
    const limited = await ask("10.0.0.1");
    expect(limited.status).to.equal(429);
    expect(limited.body.code).to.equal("QUALITY_READ_LIMITED");
    expect(limited.body.message).to.match(/10\.0\.0\.1 asked for more than 6 quality reports a minute/);
    expect(Number(limited.headers["retry-after"])).to.be.within(1, 10);
    const other = await ask("10.0.0.2");
    expect(other.status).to.equal(200);
    expect(other.body.receipts).to.have.length(1);
  });

  it("reads an unchanged provider's records from the store once, and again as soon as a receipt about it arrives", async () => {
    const first = await ask("10.0.0.1");
    const again = await ask("10.0.0.2");
    expect(store.reads).to.equal(1);
    expect(again.body).to.deep.equal(first.body);
    await book.ingest(signReceipt(consumers[1], receipt(consumers[1])));
    await book.idle();
    const after = await ask("10.0.0.3");
    expect(store.reads).to.equal(2);
    expect(after.body.receipts).to.have.length(2);
    expect(after.body.reports[0].receipts).to.equal(2);
  });

  it("refuses a read beyond the reads in progress from every address, and answers again once they end", async () => {
    let letGo = () => {};
    store.gate = new Promise<void>((resolve) => (letGo = resolve));
    // Two reads (every service type, and noop alone: two answers) hold the store.
    const held = [
      app.inject({ method: "GET", url: `/v1/quality/${provider.address}`, remoteAddress: "10.0.0.1" }),
      app.inject({ method: "GET", url: `/v1/quality/${provider.address}?service_type=noop`, remoteAddress: "10.0.0.2" }),
    ];
    while (store.reads < 2) await new Promise((r) => setImmediate(r));
    const busy = await app
      .inject({ method: "GET", url: `/v1/quality/${provider.address}?service_type=wireguard`, remoteAddress: "10.0.0.3" })
      .then((r) => ({ status: r.statusCode, headers: r.headers, body: r.json() }));
    expect(busy.status).to.equal(429);
    expect(busy.headers["retry-after"]).to.equal("1");
    expect(busy.body.code).to.equal("QUALITY_READ_LIMITED");
    expect(busy.body.message).to.match(/being read from the store/);
    letGo();
    for (const r of await Promise.all(held)) expect(r.statusCode).to.equal(200);
    expect((await ask("10.0.0.3")).status).to.equal(200);
  });

  it("counts an IPv6 client by its /64: addresses rotated inside one /64 share one allowance", async () => {
    expect(clientOf("2001:db8:1:2:aaaa::1")).to.equal("2001:db8:1:2::/64");
    expect(clientOf("2001:0db8:0001:0002:0:0:0:9")).to.equal("2001:db8:1:2::/64");
    expect(clientOf("2001:db8::7")).to.equal("2001:db8:0:0::/64");
    expect(clientOf("::ffff:10.0.0.1")).to.equal("10.0.0.1");
    expect(clientOf("10.0.0.1")).to.equal("10.0.0.1");
    for (let i = 0; i < 3; i++) expect((await ask(`2001:db8:1:2::${i + 1}`)).status).to.equal(200);
    expect((await ask("2001:db8:1:2:ffff::9")).status, "another address of the same /64").to.equal(429);
    expect((await ask("2001:db8:1:3::1")).status, "another /64").to.equal(200);
  });

  it("lets one client hold at most its share of the store reads, so another is still read; a read refused for that costs no allowance", async () => {
    const app2 = await appWith({ perMinute: 6, burst: 3, inFlight: 4, inFlightPerClient: 1, cacheMs: 60_000 });
    try {
      let letGo = () => {};
      store.gate = new Promise<void>((resolve) => (letGo = resolve));
      const get = (query: string, from: string) =>
        app2
          .inject({ method: "GET", url: `/v1/quality/${provider.address}${query}`, remoteAddress: from })
          .then((r) => ({ status: r.statusCode, body: r.json() }));
      const held = get("", "10.0.0.1");
      while (store.reads < 1) await new Promise((r) => setImmediate(r));
      const second = await get("?service_type=noop", "10.0.0.1");
      expect(second.status).to.equal(429);
      expect(second.body.message).to.match(/1 of 10\.0\.0\.1's quality reports are being read/);
      const other = get("?service_type=noop", "10.0.0.2");
      while (store.reads < 2) await new Promise((r) => setImmediate(r));
      letGo();
      expect((await held).status).to.equal(200);
      expect((await other).status, "another client's read went ahead").to.equal(200);
      // 10.0.0.1 spent 1 of its 3 on the answered read; the refused one was given back: two more are answered.
      expect((await get("?service_type=a", "10.0.0.1")).status).to.equal(200);
      expect((await get("?service_type=b", "10.0.0.1")).status).to.equal(200);
      expect((await get("?service_type=c", "10.0.0.1")).status).to.equal(429);
    } finally {
      await app2.close();
    }
  });
});
