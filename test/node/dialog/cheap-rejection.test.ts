import { expect } from "chai";
import crypto from "node:crypto";
import { Broker } from "../../../node/broker/broker";
import { connectChain, type ChainConnection } from "../../../node/chain/connect";
import { IdentityRegistryClient } from "../../../node/chain/registry";
import { Dialogs, type DropReason } from "../../../node/dialog/dialogs";
import { Sealer } from "../../../node/dialog/envelope";
import { IdentityKey } from "../../../node/identity/key";
import { signProposal, verifySignedProposal } from "../../../node/proposal/proposal";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { makeProposal } from "../../../scripts/lib/proposals";
import { rejectionOf } from "../../support/rejection";

/** eth_calls a connection sends, counted from ethers' own debug events. */
function countCalls(conn: ChainConnection): { readonly calls: number } {
  const counter = { calls: 0 };
  conn.provider.on("debug", (e: { action: string; payload?: { method: string } | { method: string }[] }) => {
    if (e.action !== "sendRpcPayload") return;
    for (const p of [e.payload ?? []].flat()) if (p.method === "eth_call") counter.calls++;
  });
  return counter;
}

describe("cheap rejection first: junk costs no chain call", function () {
  const net = new TestNetwork();
  let provider: IdentityKey;
  let consumer: IdentityKey;
  let conn: ChainConnection;
  let registry: IdentityRegistryClient;
  let counter: { readonly calls: number };

  before(async function () {
    await net.start();
    [provider, consumer] = [await net.registeredIdentity(), await net.registeredIdentity()];
  });
  after(async () => net.stop());

  beforeEach(async function () {
    // A registry client that has never looked anyone up: every lookup would be a chain call.
    conn = await connectChain({ rpcUrl: net.chain.rpcUrl, deployment: net.chain.deployment });
    registry = new IdentityRegistryClient(conn, { maxNegativeEntries: 50 });
    counter = countCalls(conn);
  });
  afterEach(() => conn.close());

  /** A message sealed to `to`, claiming to come from `claims`, signed by `signer` (or garbage). */
  function junk(to: IdentityKey, claims: string, signer?: IdentityKey): Uint8Array {
    const bytes = Buffer.from(
      JSON.stringify({
        v: 1,
        kind: "request",
        type: "session.create",
        from: claims,
        to: to.address,
        dialog: crypto.randomBytes(16).toString("hex"),
        id: crypto.randomBytes(16).toString("hex"),
        ts: Date.now(),
        body: {},
      }),
    );
    const signature = signer ? signer.signProtocol(bytes) : crypto.randomBytes(64);
    return new Sealer(to.publicKey).seal(signature, bytes);
  }

  it("drops 300 dialog messages with bad signatures (random and registered claimed senders) without asking the chain", async function () {
    const broker = new Broker({ servers: [net.nats.url] });
    await broker.start();
    const dialogs = new Dialogs({ broker, key: provider, directory: registry, subject: "myst.dialog.cheap-test" });
    const reasons = new Map<DropReason, number>();
    let all!: () => void;
    const done = new Promise<void>((resolve) => (all = resolve));
    let n = 0;
    dialogs.on("dropped", ({ reason }: { reason: DropReason }) => {
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      if (++n === 300) all();
    });
    await dialogs.start();
    try {
      for (let i = 0; i < 100; i++) {
        const data = [
          junk(provider, IdentityKey.generate().address), // a random "sender", garbage signature
          junk(provider, consumer.address), // a registered identity's name, garbage signature
          junk(provider, consumer.address, IdentityKey.generate()), // a registered name, someone else's signature
        ];
        for (const d of data) broker.publish(dialogs.subject, d);
      }
      await done;
      expect(Object.fromEntries(reasons)).to.deep.equal({ "bad-signature": 300 });
      expect(counter.calls).to.equal(0);
      // The honest sender still costs its one lookup, and gets in.
      const honest = await new Dialogs({ broker, key: consumer, directory: net.registry, subject: "myst.dialog.cheap-consumer" });
      await honest.start();
      dialogs.onDialog((d) => d.handle("test.echo", (b) => b));
      const dialog = await honest.open(provider.address, dialogs.subject);
      expect(await dialog.request("test.echo", "in")).to.equal("in");
      expect(counter.calls).to.be.greaterThan(0);
      honest.stop();
    } finally {
      dialogs.stop();
      await broker.stop();
    }
  });

  it("rejects proposals with bad signatures without asking the chain", async function () {
    const signed = signProposal(provider, makeProposal(provider));
    const forged = { ...signed, signature: "0x" + crypto.randomBytes(64).toString("hex") };
    const someoneElse = { ...signed, signature: "0x" + Buffer.from(IdentityKey.generate().signProtocol(Buffer.from(signed.proposal))).toString("hex") };
    for (const bad of [forged, someoneElse]) expect((await rejectionOf(verifySignedProposal(bad, registry))).code).to.equal("BAD_SIGNATURE");
    const stranger = IdentityKey.generate();
    const unregistered = signProposal(stranger, makeProposal(stranger));
    expect(counter.calls).to.equal(0);
    expect((await rejectionOf(verifySignedProposal(unregistered, registry))).code).to.equal("PROVIDER_UNREGISTERED");
    expect((await verifySignedProposal(signed, registry)).proposal.provider).to.equal(provider.address);
  });

  it("keeps at most maxNegativeEntries 'not registered' answers", async function () {
    for (let i = 0; i < 120; i++) expect(await registry.isRegistered(IdentityKey.generate().address)).to.equal(false);
    expect(registry.negativeEntries).to.equal(50);
    expect(await registry.isRegistered(consumer.address)).to.equal(true);
  });
});
