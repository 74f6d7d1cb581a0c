import { expect } from "chai";
import type { DirectOffer } from "../../../node/nat/direct/candidates";
import { newSecret } from "../../../node/nat/direct/keys";
import { directTunnelRoute, keepsPorts, tunnelCannotFollow } from "../../../node/session/offer-addresses";

const offer = (o: Partial<DirectOffer>): DirectOffer => ({ v: 1, secret: newSecret(), mapping: "endpoint-independent", candidates: [], ...o });
/** A consumer behind a router that keeps its socket's port (STUN saw 40100 for local 40100), or gives another. */
const consumer = (seenPort: number) =>
  offer({
    tunnelPort: 40200,
    candidates: [
      { kind: "local", address: "192.168.1.2", port: 40100 },
      { kind: "reflexive", address: "198.18.7.2", port: seenPort },
    ],
  });
const symmetricProvider = (meets: boolean) =>
  offer({
    mapping: "endpoint-dependent",
    tunnelPort: 51820,
    candidates: [{ kind: "reflexive", address: "198.18.6.2", port: 3000 }],
    ...(meets ? { tunnelMeets: true } : {}),
  });

describe("the consumer's tunnel following a channel that met a provider whose router maps per destination", function () {
  it("knows our router keeps ports when STUN saw the channel's socket at its own port", function () {
    expect(keepsPorts(consumer(40100))).to.equal(true);
    expect(keepsPorts(consumer(61234))).to.equal(false);
    expect(keepsPorts(offer({ candidates: [{ kind: "local", address: "192.168.1.2", port: 40100 }] }))).to.equal(false);
  });

  it("follows when the provider's tunnel can send from a probe, ours can spray, and our router keeps our tunnel's port", function () {
    expect(tunnelCannotFollow(symmetricProvider(true), consumer(40100), true)).to.equal(undefined);
  });

  it("says why it cannot otherwise: a relay's case", function () {
    expect(tunnelCannotFollow(symmetricProvider(false), consumer(40100), true)).to.match(/cannot send from the probe that met ours: needs a relay/);
    expect(tunnelCannotFollow(symmetricProvider(true), consumer(40100), false)).to.match(/needs a relay/);
    expect(tunnelCannotFollow(symmetricProvider(true), consumer(61234), true)).to.match(/ours does not keep our tunnel's port: needs a relay/);
  });

  it("has nothing to say when the provider's router keeps ports or ours maps per destination (other plans apply)", function () {
    expect(tunnelCannotFollow({ ...symmetricProvider(false), mapping: "endpoint-independent" }, consumer(61234), false)).to.equal(undefined);
    expect(tunnelCannotFollow(symmetricProvider(false), { ...consumer(61234), mapping: "endpoint-dependent" }, false)).to.equal(undefined);
  });
});

describe("the consumer's tunnel route over a punched path", function () {
  it("names no endpoint for a provider whose router maps per destination: its tunnel sends first", function () {
    const route = directTunnelRoute({ kind: "punched", address: "198.18.6.2" }, symmetricProvider(true), 51820);
    expect(route).to.deep.equal({ kind: "punched", address: "198.18.6.2", tunnelPort: 51820, peerSendsFirst: true });
  });

  it("sends to the provider's tunnel port when its router keeps ports, or over a shared LAN", function () {
    const eim = { ...symmetricProvider(false), mapping: "endpoint-independent" as const };
    expect(directTunnelRoute({ kind: "reflexive", address: "198.18.6.2" }, eim, 51820)).to.deep.equal({
      kind: "reflexive",
      address: "198.18.6.2",
      tunnelPort: 51820,
    });
    expect(directTunnelRoute({ kind: "local", address: "192.168.88.2" }, symmetricProvider(true), 51820)).to.deep.equal({
      kind: "local",
      address: "192.168.88.2",
      tunnelPort: 51820,
    });
  });
});
