import { expect } from "chai";
import path from "node:path";
import Database from "better-sqlite3";
import { earningsReport } from "../../../node/payments/reports";
import { openDatabase } from "../../../node/store/database";
import { PromiseStore } from "../../../node/store/promise-store";
import { SessionStore } from "../../../node/store/session-store";
import { tempDir } from "../../../scripts/lib/tmp";

const CONSUMER = "0x1111111111111111111111111111111111111111";
const PROVIDER = "0x2222222222222222222222222222222222222222";
const RELAY = "0x3333333333333333333333333333333333333333";

describe("the session history: the path each session took (issue 29)", function () {
  let tmp: ReturnType<typeof tempDir>;
  let file: string;
  beforeEach(() => {
    tmp = tempDir("myst-history-");
    file = path.join(tmp.dir, "myst.db");
  });
  afterEach(() => tmp.cleanup());

  it("keeps a relayed session's path (relay, address, port, transport) across a restart, and the last relay when it changed", function () {
    let db = openDatabase(file);
    const history = new SessionStore(db);
    history.started({ id: "s1", role: "consumer", peer: PROVIDER, serviceType: "wireguard", startedAt: 1000 });
    history.path("s1", {
      tunnel: "relayed",
      relay: { provider: "0x4444444444444444444444444444444444444444", address: "198.18.21.2", port: 443, transport: "udp" },
    });
    history.path("s1", { tunnel: "relayed", relay: { provider: RELAY, address: "198.18.20.2", port: 443, transport: "tcp" } });
    history.started({ id: "s2", role: "consumer", peer: PROVIDER, serviceType: "wireguard", startedAt: 2000 });
    history.path("s2", { tunnel: "punched" });
    history.ended("s1", { endedAt: 3000, reason: "consumer disconnected", bytes: 42, promised: 7n });
    db.close();

    db = openDatabase(file);
    const [s2, s1] = new SessionStore(db).list();
    expect(s1).to.deep.include({ id: "s1", bytes: 42, promised: 7n });
    expect(s1.path).to.deep.equal({ tunnel: "relayed", relay: { provider: RELAY, address: "198.18.20.2", port: 443, transport: "tcp" } });
    expect(s2.path).to.deep.equal({ tunnel: "punched" });
    db.close();
  });

  it("keeps how a relay's own session's consumer reached it (udp, tcp or tls) across a restart", function () {
    let db = openDatabase(file);
    const history = new SessionStore(db);
    history.started({ id: "r1", role: "provider", peer: PROVIDER, serviceType: "relay", startedAt: 1000 });
    history.path("r1", { tunnel: "public", transport: "tls" });
    db.close();
    db = openDatabase(file);
    expect(new SessionStore(db).list().find((s) => s.id === "r1")?.path).to.deep.equal({ tunnel: "public", transport: "tls" });
    db.close();
  });

  it("shows no path for a session that has none, for a row from before paths were kept, and for a damaged value", function () {
    // A database of the previous version (no path column), with one session in it.
    const old = new Database(file);
    old.exec(`CREATE TABLE sessions (id TEXT PRIMARY KEY, role TEXT NOT NULL, peer TEXT NOT NULL, service_type TEXT NOT NULL,
      started_at INTEGER NOT NULL, ended_at INTEGER, end_reason TEXT, bytes INTEGER NOT NULL DEFAULT 0, promised TEXT NOT NULL DEFAULT '0')`);
    old.prepare("INSERT INTO sessions (id, role, peer, service_type, started_at) VALUES ('old', 'provider', ?, 'openvpn', 1)").run(CONSUMER);
    // Every migration but the last has run (the others' tables stand in for theirs).
    old.exec(`CREATE TABLE promises (channel_id TEXT, consumer TEXT, provider TEXT, session_id TEXT, amount TEXT, signature TEXT, received_at INTEGER, increase TEXT NOT NULL DEFAULT '0', PRIMARY KEY (channel_id, amount));
      CREATE TABLE settlements (channel_id TEXT, amount TEXT, tx_hash TEXT, paid TEXT, status TEXT, error TEXT, at INTEGER, fee TEXT);
      CREATE TABLE issued_promises (channel_id TEXT PRIMARY KEY); CREATE TABLE traffic_days (day TEXT PRIMARY KEY, bytes INTEGER);
      CREATE TABLE receipts (id TEXT PRIMARY KEY);`);
    old.pragma("user_version = 5");
    old.close();

    const db = openDatabase(file);
    const history = new SessionStore(db);
    history.started({ id: "new", role: "provider", peer: CONSUMER, serviceType: "relay", startedAt: 2 });
    history.started({ id: "bad", role: "provider", peer: CONSUMER, serviceType: "wireguard", startedAt: 3 });
    db.prepare("UPDATE sessions SET path = ? WHERE id = 'bad'").run('{"tunnel":"teleported"}');
    const byId = new Map(history.list().map((s) => [s.id, s.path]));
    expect([...byId.entries()]).to.deep.equal([
      ["bad", null],
      ["new", null],
      ["old", null],
    ]);
    db.close();
  });

  it("puts each session's service type, bytes and path beside what it earned (a relay's earnings per relayed session)", function () {
    const db = openDatabase(file);
    const history = new SessionStore(db);
    const promises = new PromiseStore(db);
    history.started({ id: "r1", role: "provider", peer: CONSUMER, serviceType: "relay", startedAt: 1 });
    history.path("r1", { tunnel: "public" });
    history.ended("r1", { endedAt: 2, reason: "consumer disconnected", bytes: 20_000_000, promised: 5n });
    promises.save({ pairId: "0xpair", consumer: CONSUMER, provider: RELAY, sessionId: "r1", amount: 5n, increase: 5n, signature: "0x", receivedAt: 2 });
    promises.save({ pairId: "0xpair", consumer: CONSUMER, provider: RELAY, sessionId: "gone", amount: 9n, increase: 4n, signature: "0x", receivedAt: 3 });

    const report = earningsReport(promises, undefined, history);
    expect(report.sessions).to.deep.equal([
      { sessionId: "r1", consumer: CONSUMER, promisedWei: "5", serviceType: "relay", bytes: 20_000_000, path: { tunnel: "public" } },
      // A promise whose session the history does not know (a history from before, a wiped one): the amount alone.
      { sessionId: "gone", consumer: CONSUMER, promisedWei: "4" },
    ]);
    db.close();
  });
});
