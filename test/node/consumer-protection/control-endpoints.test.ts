import { expect } from "chai";
import { carriesOwnConnections, controlEndpoints } from "../../../node/consumer-protection/control-endpoints";
import { rejectionOf } from "../../support/rejection";

describe("consumer protection: the node's own control endpoints", function () {
  const lookup = async (host: string) => {
    if (host === "broker.example") return ["198.18.9.2", "2001:db8:9::2"];
    throw new Error(`getaddrinfo ENOTFOUND ${host}`);
  };

  it("lists the broker, discovery and chain RPC endpoints with their ports (defaults by scheme), resolved, loopback left out", async function () {
    const found = await controlEndpoints(
      {
        brokerUrls: ["nats://broker.example", "nats://127.0.0.1:4222", "198.18.9.3:4333"],
        discoveryUrls: ["https://198.18.9.4", "http://[2001:db8:9::5]:8080"],
        rpcUrl: "http://127.0.0.1:8545",
      },
      lookup,
    );
    expect(found).to.have.deep.members([
      { address: "198.18.9.2", port: 4222, protocol: "tcp", role: "broker" },
      { address: "2001:db8:9::2", port: 4222, protocol: "tcp", role: "broker" },
      { address: "198.18.9.3", port: 4333, protocol: "tcp", role: "broker" },
      { address: "198.18.9.4", port: 443, protocol: "tcp", role: "discovery" },
      { address: "2001:db8:9::5", port: 8080, protocol: "tcp", role: "discovery" },
    ]);
  });

  it("names the host it cannot resolve", async function () {
    const err = await rejectionOf(
      controlEndpoints({ brokerUrls: ["nats://nowhere.example:4222"], discoveryUrls: [], rpcUrl: "http://127.0.0.1:8545" }, lookup),
    );
    expect(err).to.include({ code: "CONTROL_ENDPOINT" });
    expect(err.message).to.include("broker host nowhere.example");
  });

  it("knows the machine the node runs on carries its own connections, and a namespace it is not in does not", function () {
    expect(carriesOwnConnections(undefined)).to.equal(true);
    expect(carriesOwnConnections("myst-no-such-namespace")).to.equal(false);
  });
});
