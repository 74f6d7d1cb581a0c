import { expect } from "chai";
import { EventEmitter } from "node:events";
import { silentLogger } from "../../../node/log/logger";
import type { DirectChannel, DirectPath, TunnelPunch } from "../../../node/nat/direct/channel";
import { DirectChannelError } from "../../../node/nat/direct/channel";
import { followDirectPath } from "../../../node/session/provider-punch";
import type { ProviderService } from "../../../node/session/service";
import { until } from "../../../scripts/lib/until";

/** A channel as the provider's session sees it: its plan, its `up` event and its tunnel punch. */
function fakeChannel(kind: "plain" | "hard-side", punch: Promise<TunnelPunch>) {
  const channel = Object.assign(new EventEmitter(), { plan: { kind, reason: "", peerCandidates: [] }, tunnelPunch: () => punch });
  return channel as unknown as DirectChannel & EventEmitter;
}

function fakeService(o: { punchRoute?: boolean } = {}) {
  const calls: string[] = [];
  const prepared: string[] = [];
  const service = {
    directRoute: async (_id: string, r: { address: string; tunnelPort: number }) => void calls.push(`direct ${r.address}:${r.tunnelPort}`),
    ...(o.punchRoute === false
      ? {}
      : {
          punchRoute: async (_id: string, p: TunnelPunch) => void calls.push(`punch ${p.address}:${p.port} from ${p.localPort}`),
          preparePunchRoute: async (id: string) => void prepared.push(id),
        }),
  } as unknown as ProviderService;
  return { service, calls, prepared };
}

const up: DirectPath = { kind: "punched", address: "198.18.1.6", port: 40000, tookMs: 1 };

describe("the provider's tunnel following the direct path", function () {
  it("on the hard side: takes the punch route first, then sends to the consumer's tunnel where the punch saw it", async function () {
    const { service, calls } = fakeService();
    const channel = fakeChannel("hard-side", Promise.resolve({ localPort: 54828, address: "198.18.1.6", port: 56090 }));
    followDirectPath({ sessionId: "s", ended: () => false, relayed: () => false, service, channel, consumerTunnelPort: 56000, log: silentLogger });
    channel.emit("up", up);
    await until(() => calls.length === 2, "both calls");
    expect(calls).to.deep.equal(["punch 198.18.1.6:56090 from 54828", "direct 198.18.1.6:56090"]);
  });

  it("on the hard side: points the tunnel at the consumer's as soon as its tunnel spray lands, before the channel is nominated", async function () {
    const { service, calls } = fakeService();
    const channel = fakeChannel("hard-side", Promise.resolve({ localPort: 54828, address: "198.18.1.6", port: 56090 }));
    followDirectPath({ sessionId: "s", ended: () => false, relayed: () => false, service, channel, consumerTunnelPort: 56000, log: silentLogger });
    // No `up`: the channel's own search (another socket of the consumer's) has not met yet.
    await until(() => calls.length === 2, "the punch route and the direct route");
    expect(calls).to.deep.equal(["punch 198.18.1.6:56090 from 54828", "direct 198.18.1.6:56090"]);
    // The channel's nomination later tells the tunnel nothing new.
    channel.emit("up", up);
    await new Promise((r) => setImmediate(r));
    expect(calls).to.have.length(2);
  });

  it("on the hard side: has the punch route's table made as the search starts, before anything met", async function () {
    const { service, calls, prepared } = fakeService();
    const channel = fakeChannel("hard-side", new Promise(() => undefined));
    followDirectPath({ sessionId: "s", ended: () => false, relayed: () => false, service, channel, consumerTunnelPort: 56000, log: silentLogger });
    expect(prepared).to.deep.equal(["s"]);
    expect(calls).to.deep.equal([]);
    // Nothing to prepare where no route will be made: a plain search, or no consumer tunnel port to meet.
    const plain = fakeService();
    followDirectPath({
      sessionId: "p",
      ended: () => false,
      relayed: () => false,
      service: plain.service,
      channel: fakeChannel("plain", new Promise(() => undefined)),
      consumerTunnelPort: 56000,
      log: silentLogger,
    });
    const noTunnel = fakeService();
    followDirectPath({
      sessionId: "n",
      ended: () => false,
      relayed: () => false,
      service: noTunnel.service,
      channel: fakeChannel("hard-side", new Promise(() => undefined)),
      log: silentLogger,
    });
    expect([...plain.prepared, ...noTunnel.prepared]).to.deep.equal([]);
  });

  it("on the hard side with no punch: never points the tunnel at the consumer (a relay's route may come instead)", async function () {
    const { service, calls } = fakeService();
    const channel = fakeChannel("hard-side", Promise.reject(new DirectChannelError("NO_DIRECT_PATH", "no spray reached us")));
    followDirectPath({ sessionId: "s", ended: () => false, relayed: () => false, service, channel, consumerTunnelPort: 56000, log: silentLogger });
    channel.emit("up", up);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(calls).to.deep.equal([]);
  });

  it("otherwise (or on the LAN): sends to the consumer's tunnel port at the path's address at once", async function () {
    const { service, calls } = fakeService({ punchRoute: false });
    const channel = fakeChannel("plain", new Promise(() => undefined));
    followDirectPath({ sessionId: "s", ended: () => false, relayed: () => false, service, channel, consumerTunnelPort: 56000, log: silentLogger });
    channel.emit("up", up);
    await until(() => calls.length === 1, "the direct route");
    expect(calls).to.deep.equal(["direct 198.18.1.6:56000"]);
    const lan = fakeService();
    const hard = fakeChannel("hard-side", new Promise(() => undefined));
    followDirectPath({
      sessionId: "s",
      ended: () => false,
      relayed: () => false,
      service: lan.service,
      channel: hard,
      consumerTunnelPort: 56000,
      log: silentLogger,
    });
    hard.emit("up", { ...up, kind: "local", address: "192.168.1.7" });
    await until(() => lan.calls.length === 1, "the LAN route");
    expect(lan.calls).to.deep.equal(["direct 192.168.1.7:56000"]);
  });

  it("stops pointing the tunnel at the direct path once the consumer has chosen a relay", async function () {
    const { service, calls } = fakeService({ punchRoute: false });
    const channel = fakeChannel("plain", new Promise(() => undefined));
    let relayed = false;
    followDirectPath({ sessionId: "s", ended: () => false, relayed: () => relayed, service, channel, consumerTunnelPort: 56000, log: silentLogger });
    // session.relay came first: the punch that meets afterwards does not take the tunnel away from the relay.
    relayed = true;
    channel.emit("up", up);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(calls).to.deep.equal([]);
  });
});
