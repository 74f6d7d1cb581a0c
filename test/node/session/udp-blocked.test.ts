import { expect } from "chai";
import dgram from "node:dgram";
import { DirectPeering } from "../../../node/nat/direct/peering";
import type { Reachability, ReachabilityDetails } from "../../../node/nat/reachability";
import { prepareOffer, udpBlockedBy } from "../../../node/session/udp-blocked";

/**
 * A UDP-blocked consumer (issue 29): finding out that STUN gets nothing back costs a timeout per
 * connect, unless the node's own reachability measurement already says so.
 */
describe("a consumer whose network lets no UDP back", function () {
  this.timeout(20_000);
  const measured = (over: Partial<Reachability & { details: ReachabilityDetails }>) =>
    ({
      mapping: "unknown",
      filtering: "unknown",
      contacts: [],
      measuredAt: Date.now(),
      summary: "",
      details: { localPort: 1, unanswered: ["198.18.2.2:3478 (timeout)"] },
      ...over,
    }) as Reachability & { details: ReachabilityDetails };

  it("knows UDP is blocked from a reachability measurement in which no STUN server answered, and only from that", function () {
    expect(udpBlockedBy(measured({}))).to.equal(true);
    expect(udpBlockedBy(undefined), "not measured yet").to.equal(false);
    expect(udpBlockedBy(measured({ details: { localPort: 1, unanswered: [] } })), "no server asked").to.equal(false);
    expect(udpBlockedBy(measured({ mapping: "endpoint-dependent", publicAddress: "93.184.216.34" })), "a server answered").to.equal(false);
  });

  describe("when a session's offer is made", function () {
    // A STUN server that never answers (UDP dropped on the way back), counting what it is asked.
    let silent: dgram.Socket;
    let asked = 0;
    let peering: DirectPeering;
    before(async function () {
      silent = dgram.createSocket("udp4");
      silent.on("message", () => asked++);
      await new Promise<void>((r) => silent.bind(0, "127.0.0.1", () => r()));
      peering = new DirectPeering({ stunServers: [`127.0.0.1:${silent.address().port}`], localAddresses: () => ["192.168.1.20"] });
    });
    after(() => silent.close());

    it("measures the session's socket with STUN, and calls UDP blocked when nothing answers", async function () {
      const { prepared, udpBlocked } = await prepareOffer(peering, false, 51820);
      expect(asked, "STUN requests sent").to.be.above(0);
      expect(udpBlocked).to.equal(true);
      expect(prepared!.offer.mapping).to.equal("unknown");
      prepared!.discard();
    });

    it("asks no STUN server when the node's reachability already says UDP is blocked, and makes the same offer", async function () {
      asked = 0;
      const { prepared, udpBlocked } = await prepareOffer(peering, true, 51820);
      expect(udpBlocked).to.equal(true);
      expect(prepared!.offer).to.include({ mapping: "unknown", tunnelPort: 51820 });
      expect(prepared!.offer.candidates.every((c) => c.kind === "local")).to.equal(true);
      await new Promise((r) => setTimeout(r, 50));
      expect(asked, "STUN requests sent").to.equal(0);
      prepared!.discard();
    });
  });
});
