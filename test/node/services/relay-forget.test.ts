import { expect } from "chai";
import dgram from "node:dgram";
import fs from "node:fs";
import { RelayConsumerService, type RelayTunnel } from "../../../node/services/relay/consumer";
import type { RelayServiceConfig } from "../../../node/services/relay/config";
import { RelayProviderService } from "../../../node/services/relay/provider";
import { TurnClient, TurnError } from "../../../node/services/relay/turn-client";
import { freePort } from "../../../scripts/lib/local-chain";
import { requirePrerequisites } from "../../../scripts/lib/prereqs";
import { tempDir } from "../../../scripts/lib/tmp";
import { until } from "../../../scripts/lib/until";

const RELAY_IP = "127.0.0.2";
const PEERS = { peers: ["127.0.0.1"] };
const SESSION = (n: number) => (0xf000 + n).toString(16).padStart(32, "0");
/** How long each credential lets its holder allocate, in these tests (seconds). */
const TTL_S = 5;

/**
 * A relay forgets its ended sessions (docs/relay.md "What a relay remembers of ended sessions"): it
 * held every session, its usernames and coturn's counters of it for the node's life. A closed
 * session is tracked while its credential could still allocate (so a late allocation is still cut off
 * and never billed), then dropped; its final counts stay answerable.
 */
describe("relay service forgets ended sessions (real coturn on loopback)", function () {
  this.timeout(60_000);
  const dir = tempDir("myst-relay-forget-");
  let relay: RelayProviderService;
  let port: number;

  before(async function () {
    requirePrerequisites(this, "relay", [
      ...(fs.existsSync("/usr/bin/turnserver") ? [] : ["coturn (turnserver)"]),
      ...(process.getuid?.() === 0 ? [] : ["root"]),
    ]);
    port = await freePort();
    relay = new RelayProviderService({
      dir: dir.dir,
      publicIp: RELAY_IP,
      port,
      minPort: 50400,
      maxPort: 50499,
      allowPrivatePeers: true,
      credentialTtlS: TTL_S,
    });
    await relay.start();
  });

  after(async function () {
    await relay?.stop();
    dir.cleanup();
  });

  it("drops a closed session once its credential has expired and coturn lists nothing of it, keeps its final counts, and keeps the open ones", async function () {
    const open = SESSION(1);
    await relay.openSession({ id: open, consumer: "0xc", consumerData: PEERS });
    const ids = [SESSION(2), SESSION(3), SESSION(4)];
    const configs: RelayServiceConfig[] = [];
    for (const id of ids) configs.push((await relay.openSession({ id, consumer: "0xc", consumerData: PEERS })) as RelayServiceConfig);
    // Two of them carry datagrams, so coturn has an allocation and counters of them.
    const provider = dgram.createSocket("udp4");
    await new Promise<void>((r) => provider.bind(0, "127.0.0.1", () => r()));
    for (const [k, config] of configs.slice(0, 2).entries()) {
      const tunnel = (await new RelayConsumerService().connect({ id: ids[k], provider: "0xrelay", serviceConfig: config })) as RelayTunnel;
      await tunnel.permit(["127.0.0.1"]);
      const local = dgram.createSocket("udp4");
      await new Promise<void>((r) => local.bind(0, "127.0.0.1", () => r()));
      let got = 0;
      local.on("message", () => got++);
      local.send(Buffer.alloc(32), tunnel.local.port, tunnel.local.address);
      provider.send(wireguardTransport(1), tunnel.relayed.port, tunnel.relayed.address);
      await until(() => got > 0, "a datagram through the relay");
      await relay.closeSession(ids[k], "done");
      await tunnel.stop();
      local.close();
    }
    await relay.closeSession(ids[2], "done");
    const ended = relay.usage(ids[0])!;
    const held = relay.tracked;
    expect(held.sessions, "sessions tracked right after they closed").to.equal(4);
    expect(held.coturn.usage, "coturn's records of the usernames that allocated").to.be.at.least(2);

    await until(() => relay.tracked.sessions === 1, "the closed sessions forgotten", 30_000).catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(relay.tracked)}`);
    });
    expect(relay.tracked).to.deep.equal({ sessions: 1, usernames: 1, coturn: { usage: 0, counted: 0, owners: 0 } });
    // What history and metrics read after the end stays.
    expect(relay.usage(ids[0])).to.deep.equal(ended);
    expect(relay.isConnected(ids[0])).to.equal(false);
    expect(relay.isConnected(open)).to.equal(true);
    // And the forgotten credential buys nothing: coturn refuses it as expired.
    const err = await TurnClient.allocate({ address: RELAY_IP, port, transport: "udp" }, configs[0]).then(
      () => undefined,
      (e) => e,
    );
    expect(err).to.be.instanceOf(TurnError);
    expect((err as TurnError).status).to.equal(401);
    await relay.closeSession(open, "done");
    provider.close();
  });

  it("keeps a closed session while its credential can still allocate: a late allocation under it is cut off, not billed", async function () {
    // The first test's last session is forgotten first: what is tracked below is this one.
    await until(() => relay.tracked.sessions === 0, "the relay tracking nothing", 30_000);
    const id = SESSION(5);
    const config = (await relay.openSession({ id, consumer: "0xc", consumerData: PEERS })) as RelayServiceConfig;
    await relay.closeSession(id, "ended at once");
    // Within its expiry coturn allocates on it; the relay still knows whose it is and cuts it off.
    const late = await TurnClient.allocate({ address: RELAY_IP, port, transport: "udp" }, config);
    await late.permit(["127.0.0.1"]).catch(() => undefined);
    expect(relay.tracked.sessions, "the closed session, still tracked within its credential's expiry").to.equal(1);
    const provider = dgram.createSocket("udp4");
    await new Promise<void>((r) => provider.bind(0, "127.0.0.1", () => r()));
    let got = 0;
    late.on("data", () => got++);
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < 10; i++) {
      provider.send(wireguardTransport(i), late.relayed.port, late.relayed.address);
      await new Promise((r) => setTimeout(r, 30));
    }
    expect(got, "datagrams relayed on an ended session's credential").to.equal(0);
    await late.close().catch(() => undefined);
    provider.close();
    await until(() => relay.tracked.sessions === 0, "the closed session forgotten after its expiry", 30_000);
    expect(relay.tracked.coturn).to.deep.equal({ usage: 0, counted: 0, owners: 0 });
  });

  it("forgets a session closed after its credential expired, with no other session open (the listing read at the close names it)", async function () {
    await until(() => relay.tracked.sessions === 0, "the relay tracking nothing", 30_000);
    const id = SESSION(6);
    const config = (await relay.openSession({ id, consumer: "0xc", consumerData: PEERS })) as RelayServiceConfig;
    const tunnel = (await new RelayConsumerService().connect({ id, provider: "0xrelay", serviceConfig: config })) as RelayTunnel;
    await tunnel.permit(["127.0.0.1"]);
    // Past the credential's expiry and the 5 s after it: the allocation lives on until the close cancels it.
    await new Promise((r) => setTimeout(r, TTL_S * 1000 + 6000));
    await relay.closeSession(id, "ended long after its credential expired");
    await tunnel.stop();
    await until(() => relay.tracked.sessions === 0, "the session forgotten with no session open", 20_000).catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(relay.tracked)}`);
    });
    expect(relay.tracked.coturn).to.deep.equal({ usage: 0, counted: 0, owners: 0 });
  });
});

/** A datagram shaped as WireGuard's transport message (what the consumer's meter takes from a relay). */
function wireguardTransport(counter: number): Buffer {
  const b = Buffer.alloc(32 + 16 * 4, 1);
  b.writeUInt32LE(4, 0);
  b.writeUInt32LE(9, 4);
  b.writeBigUInt64LE(BigInt(counter), 8);
  return b;
}
