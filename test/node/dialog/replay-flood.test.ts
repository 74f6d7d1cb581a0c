import { expect } from "chai";
import { Broker } from "../../../node/broker/broker";
import { Dialogs, subjectOf, type DropReason } from "../../../node/dialog/dialogs";
import { ReplayCache } from "../../../node/dialog/replay-cache";
import type { IdentityKey } from "../../../node/identity/key";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { sealForged } from "../../support/forged-message";
import { rejectionOf } from "../../support/rejection";

/**
 * The attack: a replay cache built with 2,000 entries (smaller than the default, to show it
 * quickly), 2,050 messages flooded at it, then the original request sent again.
 */
const CACHE = 2_000;
const FLOOD = 2_050;

describe("replay protection by time, not by capacity (a flood past the replay cache's size)", function () {
  this.timeout(120_000);
  const net = new TestNetwork();
  let provider: IdentityKey;
  let consumer: IdentityKey;
  let attacker: IdentityKey;
  let providerBroker: Broker;
  let consumerBroker: Broker;
  let providerDialogs: Dialogs;
  let executed: number;
  let handled: number;
  const drops: DropReason[] = [];

  before(async function () {
    await net.start();
    [provider, consumer, attacker] = [await net.registeredIdentity(), await net.registeredIdentity(), await net.registeredIdentity()];
  });
  after(async () => net.stop());

  beforeEach(async function () {
    providerBroker = new Broker({ servers: [net.nats.url] });
    consumerBroker = new Broker({ servers: [net.nats.url] });
    await Promise.all([providerBroker.start(), consumerBroker.start()]);
    providerDialogs = new Dialogs({ broker: providerBroker, key: provider, directory: net.registry, maxRecentPerPeer: CACHE, maxRecent: CACHE });
    executed = 0;
    handled = 0;
    drops.length = 0;
    providerDialogs.on("dropped", ({ reason }) => {
      drops.push(reason);
      handled++;
    });
    providerDialogs.onDialog((dialog) => {
      dialog.handle("test.transfer", () => ({ executed: ++executed }));
      dialog.on("test.note", () => handled++);
    });
    await providerDialogs.start();
  });
  afterEach(async function () {
    providerDialogs.stop();
    await Promise.all([providerBroker.stop(), consumerBroker.stop()]);
  });

  /** Publishes `FLOOD` fresh messages signed by `sender` and waits until the provider handled each one. */
  async function flood(sender: IdentityKey): Promise<void> {
    const before = handled;
    const dialog = "cd".repeat(16);
    for (let i = 0; i < FLOOD; i++) consumerBroker.publish(subjectOf(provider.address), sealForged(sender, provider, { dialog, body: null }));
    const deadline = Date.now() + 60_000;
    while (handled - before < FLOOD) {
      if (Date.now() > deadline) throw new Error(`only ${handled - before} of ${FLOOD} flooded messages were handled`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function replayAfterFloodBy(flooder: () => IdentityKey): Promise<void> {
    const original = sealForged(consumer, provider, { kind: "request", type: "test.transfer", dialog: "ef".repeat(16), body: null });
    await consumerBroker.request(subjectOf(provider.address), original, 5000);
    expect(executed).to.equal(1);

    await flood(flooder());

    drops.length = 0;
    const replay = await rejectionOf(consumerBroker.request(subjectOf(provider.address), original, 2000));
    expect(replay.code).to.equal("REQUEST_TIMEOUT");
    expect(drops).to.deep.equal(["replayed"]);
    expect(executed).to.equal(1);
  }

  it("refuses the original request replayed after its own sender flooded past the cache's size: it ran once", async function () {
    await replayAfterFloodBy(() => consumer);
  });

  it("refuses the original request replayed after another identity flooded past the cache's size: it ran once", async function () {
    await replayAfterFloodBy(() => attacker);
  });

  it("refuses a flooding sender's messages past its limit (flooding) rather than forgetting any it took", async function () {
    await flood(attacker);
    expect(drops.filter((r) => r === "flooding")).to.have.length(FLOOD - CACHE);
  });
});

describe("the replay cache", function () {
  const W = 30_000;
  const t0 = 1_000_000;

  it("keeps an id until its timestamp leaves the window, however many others arrive", function () {
    const cache = new ReplayCache({ windowMs: W, perPeer: 10, total: 100 });
    expect(cache.remember("a", "original", t0, t0)).to.equal("fresh");
    for (let i = 0; i < 1000; i++) cache.remember(i % 2 ? "a" : `b${i}`, `id${i}`, t0, t0 + 1);
    expect(cache.remember("a", "original", t0, t0 + W)).to.equal("replayed");
    // Past ts + window the time check refuses the message; the id may go.
    expect(cache.remember("a", "original", t0, t0 + W + 1)).to.equal("fresh");
  });

  it("refuses a sender past its limit until its ids expire, and keeps other senders' room", function () {
    const cache = new ReplayCache({ windowMs: W, perPeer: 3 });
    for (const id of ["1", "2", "3"]) expect(cache.remember("a", id, t0, t0)).to.equal("fresh");
    expect(cache.remember("a", "4", t0 + 5, t0 + 5)).to.equal("full");
    expect(cache.remember("b", "1", t0 + 5, t0 + 5)).to.equal("fresh");
    expect(cache.remember("a", "4", t0 + 5, t0 + W + 1)).to.equal("fresh");
    expect(cache.remember("a", "1", t0, t0 + W + 1)).to.equal("fresh");
  });

  it("keeps a message stamped in the future until that stamp leaves the window", function () {
    const cache = new ReplayCache({ windowMs: W });
    expect(cache.remember("a", "x", t0 + W, t0)).to.equal("fresh");
    expect(cache.remember("a", "x", t0 + W, t0 + 2 * W)).to.equal("replayed");
  });

  it("sweeps expired ids away", function () {
    const cache = new ReplayCache({ windowMs: W });
    for (let i = 0; i < 50; i++) cache.remember(`p${i}`, "x", t0, t0);
    expect(cache.size).to.equal(50);
    cache.sweep(t0 + W + 1);
    expect(cache.size).to.equal(0);
  });
});
