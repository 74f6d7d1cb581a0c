import { expect } from "chai";
import type { DirectOffer } from "../../../node/nat/direct/candidates";
import { newSecret } from "../../../node/nat/direct/keys";
import { planPunch } from "../../../node/nat/direct/plan";
import { directTunnelRoute, keepsPorts, tunnelCannotFollow } from "../../../node/session/offer-addresses";
import type { Proposal } from "../../../node/proposal/proposal";
import { tunnelAheadOfChannel, tunnelMaySpray, withChannel, TunnelSprayWatch } from "../../../node/session/tunnel-ahead";
import { DirectChannelError } from "../../../node/nat/direct/channel";

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

describe("the consumer's tunnel going ahead of the channel (the tunnels meet by their own search)", function () {
  const planOf = (own: DirectOffer, peer: DirectOffer) => planPunch(own, peer);

  it("does not wait for the channel when the tunnels can meet by themselves: the provider's tunnel sends first", function () {
    const own = consumer(40100);
    const route = tunnelAheadOfChannel(planOf(own, symmetricProvider(true)), symmetricProvider(true), own, true);
    expect(route).to.deep.equal({ kind: "punched", address: "198.18.6.2", tunnelPort: 51820, peerSendsFirst: true });
  });

  it("waits for the channel when the tunnels cannot meet (a relay's case, said once it met), on a shared LAN, or with any other provider", function () {
    const own = consumer(40100);
    expect(tunnelAheadOfChannel(planOf(own, symmetricProvider(false)), symmetricProvider(false), own, true)).to.equal(undefined);
    expect(tunnelAheadOfChannel(planOf(own, symmetricProvider(true)), symmetricProvider(true), own, false)).to.equal(undefined);
    const moved = consumer(61234);
    expect(tunnelAheadOfChannel(planOf(moved, symmetricProvider(true)), symmetricProvider(true), moved, true)).to.equal(undefined);
    const lan = {
      ...symmetricProvider(true),
      candidates: [...symmetricProvider(true).candidates, { kind: "local" as const, address: "192.168.1.9", port: 3000 }],
    };
    expect(tunnelAheadOfChannel(planOf(own, lan), lan, own, true)).to.equal(undefined);
    const eim = { ...symmetricProvider(true), mapping: "endpoint-independent" as const };
    expect(tunnelAheadOfChannel(planOf(own, eim), eim, own, true)).to.equal(undefined);
  });

  it("lets the channel's socket reach any port of the provider's address only while its search goes on", function () {
    const plan = {
      device: "mwc1",
      endpoints: [{ address: "198.18.6.2", port: 51820, protocol: "udp" as const }],
      tunnelPeers: [{ address: "198.18.6.2", localPort: 40200 }],
      dns: [],
      ipv6: false,
    };
    const searching = withChannel(plan, symmetricProvider(true), { searching: { address: "198.18.6.2", localPort: 40100 } });
    expect(searching.tunnelPeers).to.deep.equal([
      { address: "198.18.6.2", localPort: 40200 },
      { address: "198.18.6.2", localPort: 40100 },
    ]);
    const met = withChannel(plan, symmetricProvider(true), { path: { address: "198.18.6.2", port: 61000 } });
    expect(met.tunnelPeers).to.deep.equal([{ address: "198.18.6.2", localPort: 40200 }]);
    expect(met.endpoints).to.deep.include({ address: "198.18.6.2", port: 61000, protocol: "udp" });
  });
});

describe("the tunnel spray's sender, started while the provider is asked", function () {
  const withContact = (mapping: "endpoint-dependent" | "endpoint-independent" | "none", kinds: ("punch-only" | "public" | "mapped")[]) =>
    ({
      contacts: [
        { type: "nats/v1", brokerUrls: ["nats://198.18.9.2:4222"], subject: "myst.dialog.x" },
        {
          type: "direct/v1",
          nat: { mapping, filtering: "address-and-port-dependent" },
          candidates: kinds.map((kind, i) => ({ kind, address: "198.18.6.2", port: 40000 + i, protocol: "udp" })),
        },
      ],
    }) as unknown as Proposal;

  it("is started when the proposal says the provider's router maps per destination and nothing reaches it without a punch", function () {
    expect(tunnelMaySpray(withContact("endpoint-dependent", ["punch-only"]))).to.equal(true);
  });

  it("is not started for any other provider (a spray is then never asked for, or the tunnel goes to a mapped port)", function () {
    expect(tunnelMaySpray(withContact("endpoint-dependent", ["punch-only", "mapped"]))).to.equal(false);
    expect(tunnelMaySpray(withContact("endpoint-independent", ["punch-only"]))).to.equal(false);
    expect(tunnelMaySpray(withContact("none", ["public"]))).to.equal(false);
    expect(tunnelMaySpray({ contacts: [] } as unknown as Proposal)).to.equal(false);
  });
});

describe("the tunnels' meeting given up as soon as it cannot come (issue 28: a pair that cannot be joined fails fast)", function () {
  /** The reason `signal` was aborted with, once it is. */
  const gaveUp = (signal: AbortSignal) =>
    new Promise<Error>((resolve) => (signal.aborted ? resolve(signal.reason) : signal.addEventListener("abort", () => resolve(signal.reason))));

  it("says why at once when our tunnel could not send its probes (its sender failed, wireguard-go's socket not found)", async function () {
    const watch = new TunnelSprayWatch(() => Promise.reject(new Error("could not send from wireguard-go's port 40200 (gone)")));
    watch.watch();
    await watch.send([]).catch(() => undefined);
    const reason = await gaveUp(watch.signal);
    expect(reason).to.be.instanceOf(DirectChannelError);
    expect((reason as DirectChannelError).code).to.equal("NO_DIRECT_PATH");
    expect(reason.message).to.match(/our tunnel could not send its probes to the provider's: could not send from wireguard-go's port 40200/);
  });

  it("says why once the spray ended and the provider's tunnel did not answer in time, counting what its socket refused", async function () {
    const watch = new TunnelSprayWatch(async () => ({ sent: 4094, dropped: 2 }), 20);
    await watch.send([]);
    watch.watch(); // asked after the spray was handed over: watched all the same
    expect((await gaveUp(watch.signal)).message).to.equal(
      "the tunnels did not meet: ours sent 4094 probes (2 more refused by its socket) and the provider's did not answer within 20 ms of the last",
    );
  });

  it("does not give up once the tunnels met, or for a spray stopped because they did", async function () {
    const met = new TunnelSprayWatch(async () => ({ sent: 4096, dropped: 0 }), 10);
    met.watch();
    met.met();
    await met.send([]);
    const stopped = new TunnelSprayWatch(async () => ({ sent: 300, dropped: 0, stopped: true }), 10);
    stopped.watch();
    await stopped.send([]);
    await new Promise((r) => setTimeout(r, 100)); // ten times the wait after the spray
    expect([met.signal.aborted, stopped.signal.aborted]).to.deep.equal([false, false]);
  });
});
