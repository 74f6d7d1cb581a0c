import { expect } from "chai";
import { connect, type NatsConnection } from "nats";
import { Broker, checkSubject } from "../../../node/broker/broker";
import { startNatsServer, type NatsServer } from "../../../scripts/lib/test-network";
import { rejectionOf } from "../../support/rejection";

describe("the broker refuses subjects that are not plain NATS subjects", function () {
  let nats: NatsServer;
  let broker: Broker;
  let watcher: NatsConnection;
  let seen: string[];

  before(async function () {
    nats = await startNatsServer();
    broker = new Broker({ servers: [nats.url] });
    await broker.start();
    watcher = await connect({ servers: nats.url });
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
