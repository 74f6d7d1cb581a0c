import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { Broker } from "../../../node/broker/broker";
import { Dialogs, type Dialog } from "../../../node/dialog/dialogs";
import type { IdentityKey } from "../../../node/identity/key";
import { NoopConsumerService } from "../../../node/services/noop/noop";
import { OpenVpnConsumerService } from "../../../node/services/openvpn/consumer";
import { ConsumerSessions } from "../../../node/session/consumer";
import { SESSION_CONFIRM, SESSION_CREATE } from "../../../node/session/messages";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { requireE2E } from "../../../scripts/lib/prereqs";
import { signedProposal } from "../../../scripts/lib/proposals";
import { rejectionOf } from "../../support/rejection";
import { tempDir } from "../../../scripts/lib/tmp";

/** A provider that answers session.create with whatever the test hands it. */
describe("a consumer facing a hostile provider uses none of its words unchecked", function () {
  const net = new TestNetwork();
  let providerKey: IdentityKey;
  let consumerKey: IdentityKey;
  let brokers: Broker[];
  let providerDialogs: Dialogs;
  let consumerSessions: ConsumerSessions;
  let answer: unknown;
  let confirmed: unknown[];

  before(async function () {
    await net.start();
    [providerKey, consumerKey] = [await net.registeredIdentity(), await net.registeredIdentity()];
  });
  after(async () => net.stop());

  beforeEach(async function () {
    brokers = [new Broker({ servers: [net.nats.url] }), new Broker({ servers: [net.nats.url] })];
    await Promise.all(brokers.map((b) => b.start()));
    providerDialogs = new Dialogs({ broker: brokers[0], key: providerKey, directory: net.registry });
    confirmed = [];
    providerDialogs.onDialog((dialog: Dialog) => {
      dialog.handle(SESSION_CREATE, () => answer);
      dialog.handle(SESSION_CONFIRM, (body) => (confirmed.push(body), {}));
    });
    await providerDialogs.start();
    const consumerDialogs = new Dialogs({ broker: brokers[1], key: consumerKey, directory: net.registry, subject: "myst.dialog.hostile-test-consumer" });
    await consumerDialogs.start();
    consumerSessions = new ConsumerSessions(consumerDialogs);
  });
  afterEach(async function () {
    providerDialogs.stop();
    await Promise.all(brokers.map((b) => b.stop()));
  });

  const accepted = (fields: Record<string, unknown>) => ({
    accepted: { sessionId: "ab".repeat(16), serviceConfig: {}, keepaliveMs: 1000, correlationId: "x", ...fields },
  });

  async function connectCode(service = new NoopConsumerService()): Promise<{ code?: string; tunnels: number }> {
    const err = await rejectionOf(consumerSessions.connect({ proposal: signedProposal(providerKey), service }));
    // A refusal's reason is the provider's word: reported beside our code, never as it.
    return { code: err.code === "SESSION_REFUSED" ? `SESSION_REFUSED:${err.refusal}` : err.code, tunnels: service.tunnels.length };
  }

  for (const [what, keepaliveMs] of [
    ["a keepalive that is not a number", "soon"],
    ["a 1 ms keepalive", 1],
    ["a keepalive of NaN's JSON form (null)", null],
    ["a fractional keepalive", 1500.5],
  ] as const) {
    it(`refuses ${what} before bringing a tunnel up`, async function () {
      answer = accepted({ keepaliveMs });
      expect(await connectCode()).to.deep.equal({ code: "BAD_RESPONSE", tunnels: 0 });
    });
  }

  it("refuses a session id that is not 32 hex characters before bringing a tunnel up", async function () {
    answer = accepted({ sessionId: "../../../../etc/cron.d/x" });
    expect(await connectCode()).to.deep.equal({ code: "BAD_RESPONSE", tunnels: 0 });
  });

  it("does not take a refusal code it does not know as its own", async function () {
    answer = { refused: { code: "INTERNAL_CHAIN_FAILURE", message: "pay me", correlationId: "x" } };
    expect(await connectCode()).to.deep.equal({ code: "BAD_RESPONSE", tunnels: 0 });
    answer = { refused: { code: "CAPACITY_REACHED", message: "full", correlationId: "x" } };
    expect(await connectCode()).to.deep.equal({ code: "SESSION_REFUSED:CAPACITY_REACHED", tunnels: 0 });
  });

  it("the OpenVPN consumer refuses a session id that would leave its run directory, writing nothing", async function () {
    requireE2E(this); // root and openvpn; with CI=true a missing one fails instead of skipping
    const tmp = tempDir();
    try {
      const runDir = path.join(tmp.dir, "run");
      const service = new OpenVpnConsumerService({ key: consumerKey, runDir, connectTimeoutMs: 1000 });
      const err = await rejectionOf(service.connect({ id: "../escaped", provider: providerKey.address, serviceConfig: {} }));
      expect(err.code).to.equal("BAD_SESSION_ID");
      expect(fs.readdirSync(tmp.dir).filter((f) => f.startsWith("escaped"))).to.deep.equal([]);
    } finally {
      tmp.cleanup();
    }
  });
});
