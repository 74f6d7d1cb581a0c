import { expect } from "chai";
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
