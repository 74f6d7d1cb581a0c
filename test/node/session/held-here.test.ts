import { expect } from "chai";
import { dialBackProposal, openTcpRelayLeg } from "../../../node/daemon/tcp-relay-leg";
import type { FoundProposal } from "../../../node/discovery/client";
import { IdentityKey } from "../../../node/identity/key";
import { type Proposal, type SignedProposal, signProposal } from "../../../node/proposal/proposal";
import { makeProposal } from "../../../scripts/lib/proposals";
import type { ConnectOptions } from "../../../node/session/consumer";
import type { ConsumerSession } from "../../../node/session/consumer-session";
import { SessionError } from "../../../node/session/errors";
import { heldHereAfter, withGrant } from "../../../node/session/relay-opener";
import type { ConsumerService } from "../../../node/session/service";
import { TunnelError } from "../../../node/services/system";

/**
 * A proxy provider nobody can dial, whose relayed TCP address this consumer cannot reach (a network
 * that lets out only TCP/443): the connect is made once more with the allocation held here
 * (docs/proxy.md "A consumer allowed only TCP/443"); nothing else is retried.
 */
describe("the connect again with the TCP allocation held here (relay-opener.ts heldHereAfter)", function () {
  const proxy = { type: "proxy", relayedTcp: true } as unknown as ConsumerService;
  const options = { proposal: {}, service: proxy } as unknown as ConnectOptions;
  const unreachable = new SessionError("TUNNEL_FAILED", "could not bring the proxy tunnel up", {
    cause: new TunnelError("RELAY_FAILED", "cannot open TCP to the relayed address 198.51.100.7:50123 from here: no answer in 4 s"),
  });
  const session = {} as ConsumerSession;

  it("connects again with tcpHeldHere when this host could not open TCP to the provider's relayed address", async function () {
    const asked: ConnectOptions[] = [];
    const again = async (o: ConnectOptions) => (asked.push(o), session);
    expect(await heldHereAfter(unreachable, options, again)).to.equal(session);
    expect(asked).to.have.length(1);
    expect(asked[0]).to.deep.include({ tcpHeldHere: true, service: proxy });
  });

  it("throws anything else as it is: another failure, the second connect's own, a service that is not relayed over TCP", async function () {
    const never = async () => expect.fail("connected again");
    const others = [
      new SessionError("TUNNEL_FAILED", "x", { cause: new TunnelError("HANDSHAKE_TIMEOUT", "the provider's proxy did not answer") }),
      new SessionError("NO_RELAY", "no relay could be used"),
      new TunnelError("RELAY_FAILED", "not wrapped by the session"),
    ];
    for (const err of others)
      await heldHereAfter(err, options, never).then(
        () => expect.fail("resolved"),
        (e) => expect(e).to.equal(err),
      );
    await heldHereAfter(unreachable, { ...options, tcpHeldHere: true }, never).then(
      () => expect.fail("resolved"),
      (e) => expect(e).to.equal(unreachable),
    );
    const wireGuard = { ...options, service: { type: "wireguard" } as unknown as ConsumerService };
    await heldHereAfter(unreachable, wireGuard, never).then(
      () => expect.fail("resolved"),
      (e) => expect(e).to.equal(unreachable),
    );
  });

  it("sends the provider the relay grant, or the dial-back address, never both", function () {
    const leg = (extra: object) => extra as Parameters<typeof withGrant>[1];
    expect(withGrant({ client: "proxy/1" }, leg({ grant: { g: 1 } }))).to.deep.equal({ client: "proxy/1", relay: { g: 1 } });
    expect(withGrant({ client: "proxy/1" }, leg({ dialBack: { d: 1 } }))).to.deep.equal({ client: "proxy/1", dialBack: { d: 1 } });
    expect(withGrant({ client: "proxy/1" }, undefined)).to.deep.equal({ client: "proxy/1" });
  });
});

/**
 * The relay's proposal the dial-back carries must still be valid when the provider checks it (it
 * refuses an expired one): one about to expire is replaced by discovery's current one of that relay,
 * or the leg is not opened, saying why (review C4).
 */
describe("the relay's proposal a dial-back carries (tcp-relay-leg.ts dialBackProposal)", function () {
  const relayKey = IdentityKey.generate();
  const otherKey = IdentityKey.generate();
  const now = Date.now();
  const relayContact = {
    type: "direct/v1",
    nat: { mapping: "none", filtering: "endpoint-independent" },
    candidates: [{ kind: "public", address: "198.51.100.9", port: 443, protocol: "udp" }],
  };
  const relayFound = (key: IdentityKey, expiresIn: number): FoundProposal => {
    const base = makeProposal(key, { serviceType: "relay" });
    const proposal = { ...base, contacts: [...base.contacts, relayContact], createdAt: now - 1000, expiresAt: now + expiresIn } as Proposal;
    return { proposal, signed: signProposal(key, proposal) };
  };

  it("keeps one valid for more than a minute, and takes discovery's current one of the same relay for one that is not", async function () {
    const lasting = relayFound(relayKey, 600_000);
    expect(await dialBackProposal(lasting, async () => null, now)).to.equal(lasting);
    const fresh = relayFound(relayKey, 3_600_000);
    expect(await dialBackProposal(relayFound(relayKey, 20_000), async () => fresh, now)).to.equal(fresh);
  });

  it("opens no leg with one about to expire when discovery has none newer (or another relay's, or only that one), and says so (NO_RELAY)", async function () {
    const stale = relayFound(relayKey, 20_000);
    for (const current of [async () => null, async () => stale, async () => relayFound(otherKey, 3_600_000)]) {
      const err = await dialBackProposal(stale, current, now).catch((e: SessionError) => e);
      expect((err as SessionError).code).to.equal("NO_RELAY");
      expect((err as SessionError).message).to.match(
        /proposal expires in 20 s .*too soon for a provider to check it before dialling back, and discovery has no newer one/,
      );
    }
  });

  it("opens no relay session for a dial-back whose relay proposal is about to expire and has no newer one", async function () {
    let connected = 0;
    const leg = await openTcpRelayLeg(
      relayFound(relayKey, 5_000),
      async () => {
        connected++;
        throw new Error("stop here");
      },
      () => 0n,
      { peers: ["203.0.113.5"], provider: {} as SignedProposal, current: async () => null },
    ).catch((e: Error) => e);
    expect((leg as SessionError).code).to.equal("NO_RELAY");
    expect(connected, "relay sessions opened").to.equal(0);
  });
});
