import { expect } from "chai";
import { pathWords } from "../../../node/cli/money";

describe("myst sessions / myst earnings: a stored session path in words", function () {
  const relay = "0x3333333333333333333333333333333333333333";

  it("names the relay and how the consumer reached it (with the TURN port, known to the consumer only)", function () {
    expect(pathWords({ tunnel: "relayed", relay: { provider: relay, address: "198.18.20.2", port: 443, transport: "udp" } })).to.equal(
      `relayed via ${relay} over UDP/443`,
    );
    expect(pathWords({ tunnel: "relayed", relay: { provider: relay, address: "198.18.20.2", transport: "tcp" } })).to.equal(`relayed via ${relay} over TCP`);
    // A provider told only the relayed address: the relay's address stands in for its identity.
    expect(pathWords({ tunnel: "relayed", relay: { address: "198.18.20.2" } })).to.equal("relayed via 198.18.20.2");
  });

  it("says punched, mapped or direct, and a dash when the path is not known", function () {
    expect(pathWords({ tunnel: "punched" })).to.equal("punched");
    expect(pathWords({ tunnel: "mapped" })).to.equal("mapped");
    expect(pathWords({ tunnel: "public" })).to.equal("direct (public)");
    expect(pathWords({ tunnel: "local" })).to.equal("direct (local)");
    expect(pathWords(null)).to.equal("-");
  });
});
