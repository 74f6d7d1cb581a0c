import { expect } from "chai";
import type { IdentityKey } from "../../../node/identity/key";
import { OpenVpnConsumerService } from "../../../node/services/openvpn/consumer";
import { checkedServiceConfig } from "../../../node/services/wireguard/config";
import { WireGuardConsumerService } from "../../../node/services/wireguard/consumer";
import { generateKeyPair } from "../../../node/services/wireguard/keys";
import { canonicalAddress, resolversOutsideTunnel } from "../../../node/session/service";
import { tempDir } from "../../../scripts/lib/tmp";
import { rejectionOf } from "../../support/rejection";

const SESSION = "0123456789abcdef0123456789abcdef";

/**
 * A provider that names its own endpoint as the resolver: the endpoint keeps a route outside the
 * tunnel, so the consumer's lookups would leave beside it in clear text (let out with the tunnel's
 * packets when its port is 53). The consumer refuses such a config before anything is set up
 * (test/e2e/resolver-at-endpoint.test.ts counts the packets).
 */
describe("a provider's resolver at its own endpoint is refused (RESOLVER_OUTSIDE_TUNNEL)", function () {
  it("compares addresses in one spelling: IPv6 compressed and in lower case, IPv4-mapped as IPv4", function () {
    expect(canonicalAddress("2001:DB8:0:0::1")).to.equal("2001:db8::1");
    expect(canonicalAddress("::ffff:198.18.3.2")).to.equal("198.18.3.2");
    expect(canonicalAddress("0:0:0:0:0:FFFF:C612:0302")).to.equal("198.18.3.2");
    expect(canonicalAddress("198.18.3.2")).to.equal("198.18.3.2");
    expect(canonicalAddress("not an address")).to.equal("not an address");
    expect(resolversOutsideTunnel(["10.9.0.1", "::ffff:198.18.3.2", "2001:db8::53"], [{ address: "198.18.3.2" }, { address: "2001:DB8::53" }])).to.deep.equal([
      "::ffff:198.18.3.2",
      "2001:db8::53",
    ]);
    expect(resolversOutsideTunnel(["10.9.0.1"], [{ address: "198.18.3.2" }])).to.deep.equal([]);
  });

  describe("WireGuard", function () {
    const config = (dns: string[], endpoint = { address: "198.18.3.2", port: 53 }) => ({
      endpoint,
      publicKey: generateKeyPair().publicKey,
      clientPublicKey: generateKeyPair().publicKey,
      address: "10.9.0.2/32",
      dns,
      mtu: 1420,
    });

    it("refuses the config when a resolver is its endpoint's address (in any spelling), whatever the port; its tunnel address is fine", function () {
      for (const [dns, endpoint] of [
        [["198.18.3.2"], { address: "198.18.3.2", port: 53 }],
        [["10.9.0.1", "198.18.3.2"], { address: "198.18.3.2", port: 51820 }],
        [["::ffff:198.18.3.2"], { address: "198.18.3.2", port: 53 }],
        [["2001:db8:3::2"], { address: "2001:DB8:3:0::2", port: 53 }],
      ] as const) {
        let thrown: { code?: string; message: string } | undefined;
        try {
          checkedServiceConfig({ id: SESSION, serviceConfig: config([...dns], endpoint) });
        } catch (err) {
          thrown = err as { code?: string; message: string };
        }
        expect(thrown?.code, `${dns} at ${endpoint.address}`).to.equal("RESOLVER_OUTSIDE_TUNNEL");
        expect(thrown?.message).to.match(/as its resolver.*clear text/);
      }
      expect(checkedServiceConfig({ id: SESSION, serviceConfig: config(["10.9.0.1"]) }).endpoint.port).to.equal(53);
    });

    it("refuses a plan whose direct route, or relay, reaches the provider at a resolver's address (the config's endpoint being another)", async function () {
      const tmp = tempDir();
      try {
        const consumer = new WireGuardConsumerService({ runDir: tmp.dir });
        const { publicKey } = await consumer.consumerData();
        const serviceConfig = { ...config(["198.18.7.7"], { address: "203.0.113.5", port: 51820 }), clientPublicKey: publicKey };
        const punched = { kind: "punched" as const, address: "198.18.7.7", tunnelPort: 53 };
        const err = await rejectionOf(consumer.plan({ id: SESSION, serviceConfig, route: punched }));
        expect(err.code).to.equal("RESOLVER_OUTSIDE_TUNNEL");
        expect(err.message).to.include("198.18.7.7");
        const relayed = {
          kind: "relayed" as const,
          address: "127.0.0.1",
          tunnelPort: 40000,
          outside: { address: "198.18.7.7", port: 53, protocol: "tcp" as const },
        };
        expect((await rejectionOf(consumer.plan({ id: SESSION, serviceConfig, route: relayed }))).code).to.equal("RESOLVER_OUTSIDE_TUNNEL");
        // The same config without that route: the endpoint is elsewhere, the resolver is not refused.
        expect((await consumer.plan({ id: SESSION, serviceConfig })).dns).to.deep.equal(["198.18.7.7"]);
      } finally {
        tmp.cleanup();
      }
    });
  });

  it("OpenVPN: refuses the config when a resolver is its remote's address, before anything is started", async function () {
    const tmp = tempDir();
    try {
      const service = new OpenVpnConsumerService({ key: {} as IdentityKey, runDir: tmp.dir });
      const serviceConfig = {
        remote: "198.18.3.2",
        port: 53,
        protocol: "udp",
        cipher: "AES-256-GCM",
        ca: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        tlsCrypt: "-----BEGIN OpenVPN Static key V1-----\n00ff\n-----END OpenVPN Static key V1-----\n",
        dns: ["198.18.3.2"],
      };
      const err = await rejectionOf(service.plan({ id: SESSION, serviceConfig }));
      expect(err.code).to.equal("RESOLVER_OUTSIDE_TUNNEL");
      expect(err.message).to.include("198.18.3.2");
      // Its tunnel address as the resolver, on the same port-53 endpoint: planned as before.
      const plan = await service.plan({ id: SESSION, serviceConfig: { ...serviceConfig, dns: ["10.8.0.1"] } });
      expect(plan.endpoints).to.deep.equal([{ address: "198.18.3.2", port: 53, protocol: "udp" }]);
      expect(plan.dns).to.deep.equal(["10.8.0.1"]);
    } finally {
      tmp.cleanup();
    }
  });
});
