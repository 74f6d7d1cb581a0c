import { expect } from "chai";
import { connect, type NatsConnection } from "nats";
import pino from "pino";
import { authOptions, Broker, checkSubject } from "../../../node/broker/broker";
import { ADMIN_CREDENTIALS } from "../../../scripts/lib/nats-server";
import { startNatsServer, type NatsServer } from "../../../scripts/lib/test-network";
import { rejectionOf } from "../../support/rejection";

describe("the broker refuses subjects that are not plain NATS subjects", function () {
  let nats: NatsServer;
  let broker: Broker;
  let watcher: NatsConnection;
  let seen: string[];

  before(async function () {
    nats = await startNatsServer();
    // Any subject at all: the administrator's rights (a node may use only the protocol's subjects).
    broker = new Broker({ servers: [nats.url], credentials: ADMIN_CREDENTIALS });
    await broker.start();
    watcher = await connect({ servers: nats.url, ...authOptions(ADMIN_CREDENTIALS) });
    seen = [];
    watcher.subscribe(">", { callback: (_e, m) => seen.push(m.subject) });
    await watcher.flush();
  });
  after(async function () {
    await watcher.drain();
    await broker.stop();
    await nats.stop();
  });

  const hostile = [
    "myst.x 0\r\n\r\nUNSUB 1\r\nPUB myst.evil",
    "myst.with space",
    "myst.tab\there",
    "myst.*",
    "myst.>",
    "myst..empty",
    ".leading",
    "",
    "a".repeat(256),
    "myst.nul\u0000",
  ];

  for (const subject of hostile) {
    it(`publish and request refuse ${JSON.stringify(subject.slice(0, 40))} and send nothing`, async function () {
      expect(() => broker.publish(subject, Buffer.from("x")))
        .to.throw()
        .with.property("code", "INVALID_SUBJECT");
      expect((await rejectionOf(broker.request(subject, Buffer.from("x"), 200))).code).to.equal("INVALID_SUBJECT");
    });
  }

  it("subscribe refuses whitespace and protocol lines but takes wildcards", async function () {
    expect(() => broker.subscribe("myst.a\r\nUNSUB 1", () => undefined))
      .to.throw()
      .with.property("code", "INVALID_SUBJECT");
    expect(() => broker.subscribe("myst.a", () => undefined, { queue: "q 1" }))
      .to.throw()
      .with.property("code", "INVALID_SUBJECT");
    expect(() => broker.subscribe("myst.>.x", () => undefined))
      .to.throw()
      .with.property("code", "INVALID_SUBJECT");
    broker.subscribe("myst.*.ok.>", () => undefined).unsubscribe();
    expect(checkSubject("_INBOX.abc.def")).to.equal("_INBOX.abc.def");
  });

  it("the connection still works after the refusals, and nothing hostile reached the server", async function () {
    const got = new Promise<string>((resolve) => broker.subscribe("myst.ok", (d) => resolve(Buffer.from(d).toString())));
    await broker.flush();
    broker.publish("myst.ok", Buffer.from("fine"));
    expect(await got).to.equal("fine");
    await watcher.flush();
    expect(seen).to.deep.equal(["myst.ok"]);
  });
});

describe("the broker answers only on request inboxes (no confused deputy)", function () {
  let nats: NatsServer;
  let node: Broker;
  let sender: NatsConnection;
  const logged: { reply?: string; msg: string }[] = [];
  const handled: string[] = [];
  const seenOnReplies: string[] = [];
  const hostileReplies = [
    "$KV.myst-proposals.0xabc.openvpn",
    "$JS.API.STREAM.PURGE.KV_myst-proposals",
    "$SYS.REQ.SERVER.PING",
    "myst.discovery.unregister",
    "_INBOX",
  ];

  before(async function () {
    nats = await startNatsServer();
    const log = pino({ level: "warn" }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    // A node as providers run it: no credentials, answering requests on its dialog subject.
    node = new Broker({ servers: [nats.url], log });
    await node.start();
    node.subscribe("myst.dialog.deputy", (data, respond) => {
      handled.push(Buffer.from(data).toString());
      respond?.(Buffer.from("answer"));
    });
    await node.flush();
    sender = await connect({ servers: nats.url, ...authOptions(ADMIN_CREDENTIALS) });
    for (const r of hostileReplies) sender.subscribe(r, { callback: (_e, m) => seenOnReplies.push(m.subject) });
    await sender.flush();
  });
  after(async function () {
    await sender.drain();
    await node.stop();
    await nats.stop();
  });

  it("drops a request whose reply subject is not _INBOX.<id>, with the reason in the log, and answers the next", async function () {
    for (const reply of hostileReplies) sender.publish("myst.dialog.deputy", Buffer.from(`to ${reply}`), { reply });
    const answer = await sender.request("myst.dialog.deputy", Buffer.from("honest"), { timeout: 5000 });
    expect(Buffer.from(answer.data).toString()).to.equal("answer");
    await sender.flush();
    expect(handled).to.deep.equal(["honest"]);
    expect(seenOnReplies).to.deep.equal([]);
    expect(logged.map((l) => l.reply)).to.deep.equal(hostileReplies);
    expect(logged[0].msg).to.match(/not a request inbox/);
  });
});
