import { expect } from "chai";
import { connect } from "nats";
import { Broker } from "../../../node/broker/broker";
import { Dialogs, subjectOf, type Dialog, type DropReason } from "../../../node/dialog/dialogs";
import { Opener, Sealer } from "../../../node/dialog/envelope";
import { IdentityKey } from "../../../node/identity/key";
import { TestNetwork, startNatsServer } from "../../../scripts/lib/test-network";
import { sealForged } from "../../support/forged-message";
import { rejectionOf } from "../../support/rejection";

function nextDrop(dialogs: Dialogs): Promise<DropReason> {
  return new Promise((resolve) => dialogs.once("dropped", ({ reason }) => resolve(reason)));
}

describe("dialogs over a real NATS server, with identities from the chain's registry", function () {
  const net = new TestNetwork();
  let provider: IdentityKey;
  let consumer: IdentityKey;
  let providerBroker: Broker;
  let consumerBroker: Broker;
  let providerDialogs: Dialogs;
  let consumerDialogs: Dialogs;
  let incoming: Dialog[];

  before(async function () {
    await net.start();
    [provider, consumer] = [await net.registeredIdentity(), await net.registeredIdentity()];
  });
  after(async () => net.stop());

  beforeEach(async function () {
    providerBroker = new Broker({ servers: [net.nats.url] });
    consumerBroker = new Broker({ servers: [net.nats.url] });
    await Promise.all([providerBroker.start(), consumerBroker.start()]);
    providerDialogs = new Dialogs({ broker: providerBroker, key: provider, directory: net.registry });
    consumerDialogs = new Dialogs({ broker: consumerBroker, key: consumer, directory: net.registry });
    incoming = [];
    providerDialogs.onDialog((dialog) => {
      incoming.push(dialog);
      dialog.handle("test.echo", (body) => ({ echoed: body }));
      dialog.handle("test.fail", () => {
        throw new Error("secret internals");
      });
    });
    await providerDialogs.start();
    await consumerDialogs.start();
  });
  afterEach(async function () {
    providerDialogs.stop();
    consumerDialogs.stop();
    await Promise.all([providerBroker.stop(), consumerBroker.stop()]);
  });

  async function openDialog(): Promise<Dialog> {
    return consumerDialogs.open(provider.address, subjectOf(provider.address));
  }

  it("carries requests and responses between two registered identities", async function () {
    const dialog = await openDialog();
    expect(await dialog.request("test.echo", { hello: "provider" })).to.deep.equal({ echoed: { hello: "provider" } });
    expect(incoming).to.have.length(1);
    expect(incoming[0].peer).to.equal(consumer.address);
    expect(incoming[0].id).to.equal(dialog.id);
  });

  it("lets the provider send to the consumer unprompted", async function () {
    const dialog = await openDialog();
    await dialog.request("test.echo", 1);
    const received = new Promise((resolve) => dialog.on("test.invoice", resolve));
    incoming[0].notify("test.invoice", { amount: "42" });
    expect(await received).to.deep.equal({ amount: "42" });
    dialog.handle("test.ask", (body) => ({ answer: body }));
    expect(await incoming[0].request("test.ask", "q")).to.deep.equal({ answer: "q" });
  });

  it("turns a failed handler into a typed error without leaking its details", async function () {
    const dialog = await openDialog();
    const err = await rejectionOf(dialog.request("test.fail", null));
    expect([err.code, err.peerCode]).to.deep.equal(["PEER_ERROR", "INTERNAL"]);
    expect(err.message).to.not.include("secret internals");
    const unknown = await rejectionOf(dialog.request("test.nobody", null));
    expect([unknown.code, unknown.peerCode]).to.deep.equal(["PEER_ERROR", "UNKNOWN_TYPE"]);
  });

  it("is reachable from another connection as soon as start() resolves", async function () {
    // The subscription must be at the server, not only queued in the client, or a peer's first
    // request fails with NO_RESPONDERS.
    for (let i = 0; i < 50; i++) {
      const subject = `myst.dialog.fresh-${i}`;
      const fresh = new Dialogs({ broker: providerBroker, key: provider, directory: net.registry, subject });
      fresh.onDialog((dialog) => dialog.handle("test.echo", (body) => ({ echoed: body })));
      const dialog = await consumerDialogs.open(provider.address, subject);
      await fresh.start();
      try {
        expect(await dialog.request("test.echo", i)).to.deep.equal({ echoed: i });
      } finally {
        fresh.stop();
      }
    }
  });

  it("keeps serving other peers when a handler throws for one", async function () {
    const dialog = await openDialog();
    await dialog.request("test.echo", 0);
    incoming[0].on("test.note", () => {
      throw new TypeError("a bug in a listener");
    });
    const failures: unknown[] = [];
    const unhandled = (reason: unknown) => failures.push(reason);
    process.on("unhandledRejection", unhandled);
    try {
      const delivered = new Promise((resolve) => incoming[0].on("test.note", resolve));
      dialog.notify("test.note", { n: 1 });
      await delivered;
      const other = await net.registeredIdentity();
      const otherBroker = new Broker({ servers: [net.nats.url] });
      await otherBroker.start();
      const otherDialogs = new Dialogs({ broker: otherBroker, key: other, directory: net.registry, subject: "myst.dialog.other-peer" });
      try {
        const d = await otherDialogs.open(provider.address, subjectOf(provider.address));
        expect(await d.request("test.echo", "other")).to.deep.equal({ echoed: "other" });
        expect((await rejectionOf(d.request("test.fail", null))).peerCode).to.equal("INTERNAL");
        expect(await dialog.request("test.echo", "first")).to.deep.equal({ echoed: "first" });
      } finally {
        otherDialogs.stop();
        await otherBroker.stop();
      }
    } finally {
      process.off("unhandledRejection", unhandled);
    }
    expect(failures).to.deep.equal([]);
  });

  it("reports a timeout and a missing peer as typed errors", async function () {
    const dialog = await openDialog();
    const silent = providerBroker.subscribe("myst.dialog.silent", () => undefined);
    await providerBroker.flush();
    const timeoutDialog = await consumerDialogs.open(provider.address, "myst.dialog.silent");
    expect((await rejectionOf(timeoutDialog.request("test.echo", 1, { timeoutMs: 200 }))).code).to.equal("DIALOG_TIMEOUT");
    silent.unsubscribe();
    const nobody = await consumerDialogs.open(provider.address, "myst.dialog.nobody-here");
    expect((await rejectionOf(nobody.request("test.echo", 1))).code).to.equal("NO_RESPONDERS");
    expect(await dialog.request("test.echo", 2)).to.deep.equal({ echoed: 2 });
  });

  it("refuses to open a dialog with an unregistered identity", async function () {
    const stranger = IdentityKey.generate();
    const err = await rejectionOf(consumerDialogs.open(stranger.address, subjectOf(stranger.address)));
    expect(err.code).to.equal("PEER_UNREGISTERED");
  });

  it("tells an unregistered sender, in clear, that it must register first", async function () {
    const strangerKey = IdentityKey.generate();
    const directory = {
      publicKeyOf: async (id: string) => (id === strangerKey.address ? strangerKey.publicKey : net.registry.publicKeyOf(id)),
    };
    const stranger = new Dialogs({ broker: consumerBroker, key: strangerKey, directory, subject: "myst.dialog.stranger" });
    const dialog = await stranger.open(provider.address, subjectOf(provider.address));
    const dropped = nextDrop(providerDialogs);
    const err = await rejectionOf(dialog.request("test.echo", 1));
    expect([err.code, err.peerCode]).to.deep.equal(["PEER_ERROR", "SENDER_UNREGISTERED"]);
    expect(await dropped).to.equal("unregistered-sender");
    expect(incoming).to.have.length(0);
  });

  it("shows a third identity on the same subject nothing it can read", async function () {
    const eavesdropper = await net.registeredIdentity();
    const nc = await connect({ servers: net.nats.url });
    const captured: Uint8Array[] = [];
    nc.subscribe(subjectOf(provider.address), { callback: (_e, m) => captured.push(m.data) });
    await nc.flush();
    const dialog = await openDialog();
    await dialog.request("test.echo", { secret: "plain-text-marker" });
    await nc.drain();
    expect(captured).to.have.length(1);
    expect(Buffer.from(captured[0]).toString("latin1")).to.not.include("plain-text-marker");
    expect(Buffer.from(captured[0]).toString("latin1")).to.not.include(consumer.address.slice(2).toLowerCase());
    expect(() => new Opener(eavesdropper).open(captured[0])).to.throw(/does not decrypt/);
  });

  describe("rejects, and keeps serving honest messages afterwards", function () {
    let dialog: Dialog;
    let notes: unknown[];
    beforeEach(async function () {
      dialog = await openDialog();
      await dialog.request("test.echo", 0);
      notes = [];
      incoming[0].on("test.note", (b) => notes.push(b));
    });
    afterEach(async function () {
      expect(await dialog.request("test.echo", "still here")).to.deep.equal({ echoed: "still here" });
    });

    async function expectDrop(bytes: Uint8Array, reason: DropReason) {
      const dropped = nextDrop(providerDialogs);
      consumerBroker.publish(subjectOf(provider.address), bytes);
      expect(await dropped).to.equal(reason);
      expect(notes).to.deep.equal([]);
    }

    it("tampered ciphertext", async function () {
      const bytes = sealForged(consumer, provider, { dialog: dialog.id });
      bytes[bytes.length - 20] ^= 1;
      await expectDrop(bytes, "undecryptable");
    });

    it("garbage", async function () {
      await expectDrop(crypto.getRandomValues(new Uint8Array(500)), "undecryptable");
    });

    it("oversized messages, before reading them", async function () {
      await expectDrop(new Uint8Array(70 * 1024), "oversized");
    });

    it("a message that breaks the schema", async function () {
      await expectDrop(sealForged(consumer, provider, { dialog: dialog.id, kind: "shout" }), "malformed");
    });

    it("a message for someone else", async function () {
      await expectDrop(sealForged(consumer, provider, { dialog: dialog.id, to: IdentityKey.generate().address }), "misaddressed");
    });

    it("a signature by a key other than the claimed sender's", async function () {
      const impostor = await net.registeredIdentity();
      const bytes = Buffer.from(
        JSON.stringify({
          v: 1,
          kind: "notify",
          type: "test.note",
          from: consumer.address,
          to: provider.address,
          dialog: dialog.id,
          id: "cd".repeat(16),
          ts: Date.now(),
          body: 1,
        }),
      );
      await expectDrop(new Sealer(provider.publicKey).seal(impostor.signProtocol(bytes), bytes), "bad-signature");
    });

    it("an unregistered sender", async function () {
      await expectDrop(sealForged(IdentityKey.generate(), provider, { dialog: dialog.id }), "unregistered-sender");
    });

    it("a stale timestamp", async function () {
      await expectDrop(sealForged(consumer, provider, { dialog: dialog.id, ts: Date.now() - 120_000 }), "stale");
    });

    it("a replayed message", async function () {
      const bytes = sealForged(consumer, provider, { dialog: dialog.id });
      const delivered = new Promise((resolve) => incoming[0].on("test.note", resolve));
      consumerBroker.publish(subjectOf(provider.address), bytes);
      await delivered;
      notes.length = 0;
      await expectDrop(bytes, "replayed");
    });

    it("a reply subject carrying NATS protocol lines, and the provider stays reachable", async function () {
      // The attack: a registered consumer names a "reply subject" that is really protocol lines.
      // Were it accepted, the provider's next notify (an invoice, a destroy notice) would write
      // them on its own connection and unsubscribe its dialog subject: deaf, while announcing.
      const reply = "myst.x 0\r\n\r\nUNSUB 1\r\nUNSUB 2\r\nUNSUB 3\r\nPUB myst.hijacked";
      const dropped = nextDrop(providerDialogs);
      consumerBroker.publish(subjectOf(provider.address), sealForged(consumer, provider, { dialog: "ef".repeat(16), reply }));
      const reason = await dropped;
      for (const d of incoming) {
        try {
          d.notify("test.invoice", { amount: "1" });
        } catch {
          // a refused subject is the point
        }
      }
      await providerBroker.flush();
      const honest = await consumerDialogs.open(provider.address, subjectOf(provider.address));
      expect(await honest.request("test.echo", "reachable")).to.deep.equal({ echoed: "reachable" });
      expect(reason).to.equal("malformed");
      expect(incoming.map((d) => d.id)).to.not.include("ef".repeat(16));
    });

    for (const reply of ["myst.discovery.unregister", "$KV.myst-proposals.x", "_INBOX.abc", "myst.dialog.a.b"]) {
      it(`a reply subject outside the dialog subjects (${reply}) is refused as malformed`, async function () {
        const dropped = nextDrop(providerDialogs);
        consumerBroker.publish(subjectOf(provider.address), sealForged(consumer, provider, { dialog: "ee".repeat(16), reply }));
        expect(await dropped).to.equal("malformed");
        expect(incoming.map((d) => d.id)).to.not.include("ee".repeat(16));
      });
    }

    it("a body nested deeper than the stack can serialize", async function () {
      const text = JSON.stringify({
        v: 1,
        kind: "request",
        type: "test.echo",
        from: consumer.address,
        to: provider.address,
        dialog: dialog.id,
        id: "cd".repeat(16),
        ts: Date.now(),
        body: "BODY",
      }).replace('"BODY"', "[".repeat(20_000) + "1" + "]".repeat(20_000));
      const bytes = Buffer.from(text);
      const dropped = nextDrop(providerDialogs);
      // As a request: the echo handler would hand the body to seal(), whose JSON.stringify overflows.
      const answered = consumerBroker.request(subjectOf(provider.address), new Sealer(provider.publicKey).seal(consumer.signProtocol(bytes), bytes), 300);
      expect(await dropped).to.equal("malformed");
      expect((await rejectionOf(answered)).code).to.equal("REQUEST_TIMEOUT");
    });

    it("a message into a dialog that belongs to another identity", async function () {
      const other = await net.registeredIdentity();
      await expectDrop(sealForged(other, provider, { dialog: dialog.id }), "wrong-peer");
    });
  });

  it("reconnects after the NATS server restarts and carries new dialogs", async function () {
    this.timeout(30_000);
    const statuses: string[] = [];
    consumerBroker.onStatus((s) => statuses.push(s));
    await net.nats.stop();
    await net.nats.restart();
    const deadline = Date.now() + 15_000;
    for (;;) {
      const dialog = await openDialog();
      const ok = await dialog.request("test.echo", "after restart", { timeoutMs: 500 }).catch(() => null);
      if (ok) {
        expect(ok).to.deep.equal({ echoed: "after restart" });
        break;
      }
      if (Date.now() > deadline) throw new Error("no dialog after the restart");
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(statuses).to.include("reconnecting");
    expect(statuses[statuses.length - 1]).to.equal("connected");
  });

  it("works across a two-server NATS cluster, one peer on each", async function () {
    const second = await startNatsServer({ routes: [net.nats.clusterPort] });
    const remoteBroker = new Broker({ servers: [second.url] });
    await remoteBroker.start();
    const remoteDialogs = new Dialogs({ broker: remoteBroker, key: consumer, directory: net.registry, subject: "myst.dialog.remote-consumer" });
    await remoteDialogs.start();
    try {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const dialog = await remoteDialogs.open(provider.address, subjectOf(provider.address));
        const ok = await dialog.request("test.echo", "via cluster", { timeoutMs: 500 }).catch(() => null);
        if (ok) {
          expect(ok).to.deep.equal({ echoed: "via cluster" });
          // And back: the provider, on the first server, reaches the consumer on the second.
          const note = new Promise((resolve) => dialog.on("test.invoice", resolve));
          incoming[incoming.length - 1].notify("test.invoice", "routed");
          expect(await note).to.equal("routed");
          break;
        }
        if (Date.now() > deadline) throw new Error("the cluster never routed the dialog");
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      remoteDialogs.stop();
      await remoteBroker.stop();
      await second.stop();
    }
  });

  it("names an unreachable broker", async function () {
    const broker = new Broker({ servers: ["nats://127.0.0.1:9"], connectTimeoutMs: 500 });
    const err = await rejectionOf(broker.start());
    expect(err.code).to.equal("BROKER_UNAVAILABLE");
    expect(err.message).to.include("nats://127.0.0.1:9");
  });
});
