import { expect } from "chai";
import { connect, type NatsConnection } from "nats";
import { authOptions } from "../../../node/broker/broker";
import { ADMIN_CREDENTIALS } from "../../../scripts/lib/nats-server";
import { ConsumerNode } from "../../../node/daemon/consumer-node";
import { ProviderNode, type ProvidedService } from "../../../node/daemon/provider-node";
import type { IdentityKey } from "../../../node/identity/key";
import { signProposal } from "../../../node/proposal/proposal";
import { NoopConsumerService, NoopProviderService } from "../../../node/services/noop/noop";
import { openDatabase, type Db } from "../../../node/store/database";
import { tempDir } from "../../../scripts/lib/tmp";
import { TestNetwork, providerPayments, startNatsServer, type NatsServer } from "../../../scripts/lib/test-network";

describe("privacy on the broker: an eavesdropper on '>' learns no consumer address", function () {
  const net = new TestNetwork();
  let nats: NatsServer;
  let monitorPort: number;
  let providerKey: IdentityKey;
  let consumerKey: IdentityKey;
  const tmp = tempDir("myst-privacy-");
  let db: Db;

  before(async function () {
    await net.start();
    nats = await startNatsServer({ monitor: true });
    monitorPort = nats.monitorPort!;
    [providerKey, consumerKey] = [await net.registeredIdentity(), await net.registeredIdentity()];
    db = openDatabase(`${tmp.dir}/myst.db`);
  });
  after(async function () {
    db?.close();
    await nats?.stop();
    await net.stop();
    tmp.cleanup();
  });

  it("during a whole session (create, confirm, a notice, destroy), in subjects, payloads and connection names", async function () {
    // The broker's administrator (a node may not subscribe to `>`): what the broker itself sees.
    const eavesdropper: NatsConnection = await connect({ servers: nats.url, ...authOptions(ADMIN_CREDENTIALS) });
    const seen: { subject: string; data: Buffer }[] = [];
    eavesdropper.subscribe(">", { callback: (_e, m) => seen.push({ subject: m.subject, data: Buffer.from(m.data) }) });
    await eavesdropper.flush();

    const provided: ProvidedService = {
      service: new NoopProviderService(),
      offer: { country: "DE", ipType: "residential", pricePerHour: 1n, pricePerGiB: 1n, bandwidthMbps: 10 },
    };
    const provider = new ProviderNode({
      key: providerKey,
      brokerUrls: [nats.url],
      registry: net.registry,
      services: [provided],
      keepaliveMs: 200,
      pingMs: 60_000,
      payments: providerPayments(net.conn, db),
    });
    const consumer = new ConsumerNode({ key: consumerKey, brokerUrls: [nats.url], discoveryUrls: ["http://127.0.0.1:9"], registry: net.registry });
    await provider.start();
    await consumer.start();
    try {
      const now = Date.now();
      const proposal = signProposal(providerKey, { ...provider.proposal(provided), createdAt: now, expiresAt: now + 60_000 });
      const session = await consumer.sessions.connect({ proposal, service: new NoopConsumerService() });
      const kept = new Promise((resolve) => provider.sessions.once("session-ended", resolve));
      const onProvider = provider.sessions.get(session.id)!;
      onProvider.dialog.notify("payment.invoice", { sessionId: session.id, amount: "1", bytes: 0, ms: 1 });
      await provider.sessions.end(session.id, "maintenance");
      expect(await session.ended).to.equal("provider ended it: maintenance");
      await kept;

      const connz = (await (await fetch(`http://127.0.0.1:${monitorPort}/connz`)).json()) as { connections: { name?: string }[] };
      const names = connz.connections.map((c) => c.name ?? "");
      expect(names).to.include.members(["myst-provider", "myst-consumer"]);

      await eavesdropper.flush();
      const consumerHex = consumerKey.address.slice(2).toLowerCase();
      const inboxes = seen.filter((m) => /^myst\.inbox\.[0-9a-f]{32}$/.test(m.subject));
      expect(inboxes.length, "the provider's notices went to the consumer's inbox").to.be.greaterThan(0);
      for (const m of seen) {
        expect(m.subject.toLowerCase()).to.not.include(consumerHex);
        expect(m.data.toString("latin1").toLowerCase()).to.not.include(consumerHex);
      }
      for (const name of names) expect(name.toLowerCase()).to.not.include(consumerHex).and.not.include(providerKey.address.slice(2).toLowerCase());
    } finally {
      await consumer.stop();
      await provider.stop();
      await eavesdropper.drain();
    }
  });
});
