import { expect } from "chai";
import path from "node:path";
import { openDatabase, type Db } from "../../../node/store/database";
import { StoreError, storeCheck } from "../../../node/store/errors";
import { PromiseStore, type StoredPromise } from "../../../node/store/promise-store";
import { tempDir } from "../../../scripts/lib/tmp";

/** A promise of a pair (filler: each one a new pair, so each is stored). */
const promise = (i: number): StoredPromise => ({
  pairId: `0x${i.toString(16).padStart(64, "0")}`,
  consumer: `0x${"c".repeat(40)}`,
  provider: `0x${"p".repeat(40)}`,
  sessionId: "a".repeat(32),
  amount: 10n ** 18n + BigInt(i),
  increase: 1n,
  signature: `0x${"5".repeat(130)}`,
  receivedAt: Date.now(),
});

describe("the promise store when its disk cannot take more", function () {
  let tmp: ReturnType<typeof tempDir>;
  let db: Db;
  let file: string;
  beforeEach(() => {
    tmp = tempDir("myst-store-");
    file = path.join(tmp.dir, "myst.db");
    db = openDatabase(file);
  });
  afterEach(() => {
    db.close();
    tmp.cleanup();
  });

  /** Saves promises until the store refuses one; returns that refusal. */
  const saveUntilRefused = (store: PromiseStore): unknown => {
    for (let i = 0; i < 100_000; i++) {
      try {
        store.save(promise(i));
      } catch (err) {
        return err;
      }
    }
    return undefined;
  };

  it("refuses a promise with STORE_FULL when the database is at its max_page_count, and health says the disk is full, naming the file", function () {
    const store = new PromiseStore(db);
    expect(storeCheck(db)).to.include({ ok: true });
    // SQLite's own limit stands in for a full disk: the same SQLITE_FULL, "database or disk is full".
    db.pragma(`max_page_count = ${(db.pragma("page_count", { simple: true }) as number) + 2}`);
    const refused = saveUntilRefused(store);
    expect(refused).to.be.instanceOf(StoreError);
    expect((refused as StoreError).code).to.equal("STORE_FULL");
    expect((refused as StoreError).message)
      .to.include("store is full")
      .and.not.include(tmp.dir);
    const health = storeCheck(db);
    expect(health.ok).to.equal(false);
    expect(health.detail).to.include(file).and.include("the disk is full").and.include("SQLITE_FULL");
    // Room again (the operator freed space): the next write succeeds and health is green again.
    db.pragma("max_page_count = 1000000");
    store.save(promise(1_000_001));
    expect(storeCheck(db)).to.include({ ok: true });
  });

  it("refuses a promise with STORE_READ_ONLY when the database cannot be written, and health says so", function () {
    const store = new PromiseStore(db);
    db.pragma("query_only = 1");
    expect(() => store.save(promise(1)))
      .to.throw(StoreError)
      .with.property("code", "STORE_READ_ONLY");
    const health = storeCheck(db);
    expect(health.ok).to.equal(false);
    expect(health.detail).to.include(file).and.include("read-only");
  });
});
