import crypto from "node:crypto";
import { expect } from "chai";
import { checkServiceSpec } from "../../../node/services/catalog";
import { checkConsumerData, checkServiceConfig } from "../../../node/services/wireguard/config";
import { WireGuardConsumerService } from "../../../node/services/wireguard/consumer";
import { generateKeyPair, isKey, keyFromHex, keyHex, publicKeyOf } from "../../../node/services/wireguard/keys";
import { WireGuardProcess } from "../../../node/services/wireguard/process";
import { waitHandshake } from "../../../node/services/wireguard/handshake";
import { tempDir } from "../../../scripts/lib/tmp";
import { rejectionOf } from "../../support/rejection";

const SESSION = "0123456789abcdef0123456789abcdef";

describe("wireguard: keys, settings and the provider's words fenced", function () {
  describe("keys", function () {
    it("makes X25519 key pairs in WireGuard's base64 form, a fresh one each time", function () {
      const a = generateKeyPair();
      const b = generateKeyPair();
      for (const key of [a.privateKey, a.publicKey]) expect(isKey(key), key).to.equal(true);
      expect(a.publicKey).to.not.equal(b.publicKey);
      expect(publicKeyOf(a.privateKey)).to.equal(a.publicKey);
    });

    it("matches the public key `wg pubkey` derives from the RFC 7748 test vector", function () {
      // RFC 7748 §6.1: Alice's private key and public key.
      const priv = Buffer.from("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "hex").toString("base64");
      expect(keyHex(publicKeyOf(priv))).to.equal("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
      expect(keyFromHex(keyHex(priv))).to.equal(priv);
    });

    it("refuses text that is not 32 bytes of base64", function () {
      for (const bad of ["", "abc", `${"A".repeat(43)}`, `${"A".repeat(43)}==`, `${"A".repeat(42)}B=`]) expect(isKey(bad), bad).to.equal(false);
    });
  });

  describe("service settings", function () {
    it("defaults the port to 51820 and keeps the rest", function () {
      expect(checkServiceSpec({ type: "wireguard", wireguard: { publicIp: "198.18.3.2", ipv6: true } })).to.deep.equal({
        type: "wireguard",
        wireguard: { publicIp: "198.18.3.2", ipv6: true, port: 51820 },
      });
    });

    it("refuses a missing or non-IP public address, a bad port, device or MTU, and openvpn's settings", function () {
      const code = (spec: Parameters<typeof checkServiceSpec>[0]) => {
        try {
          checkServiceSpec(spec);
          return "accepted";
        } catch (err) {
          return (err as { code: string }).code;
        }
      };
      expect(code({ type: "wireguard" })).to.equal("BAD_SERVICE_SETTINGS");
      expect(code({ type: "wireguard", wireguard: { publicIp: "vpn.example" } })).to.equal("BAD_SERVICE_SETTINGS");
      expect(code({ type: "wireguard", wireguard: { publicIp: "198.18.3.2", port: 70000 } })).to.equal("BAD_SERVICE_SETTINGS");
      expect(code({ type: "wireguard", wireguard: { publicIp: "198.18.3.2", device: "../etc" } })).to.equal("BAD_SERVICE_SETTINGS");
      expect(code({ type: "wireguard", wireguard: { publicIp: "198.18.3.2", mtu: 9000 } })).to.equal("BAD_SERVICE_SETTINGS");
      expect(code({ type: "wireguard", openvpn: { publicIp: "198.18.3.2" } })).to.equal("BAD_SERVICE_SETTINGS");
    });
  });

  describe("what crosses the wire", function () {
    const valid = () => ({
      endpoint: { address: "198.18.3.2", port: 51820 },
      publicKey: generateKeyPair().publicKey,
      clientPublicKey: generateKeyPair().publicKey,
      address: "10.9.0.2/32",
      dns: ["10.9.0.1"],
      mtu: 1420,
    });

    it("takes a consumer's public key and nothing else", function () {
      expect(checkConsumerData.Check({ publicKey: generateKeyPair().publicKey })).to.equal(true);
      expect(checkConsumerData.Check({ publicKey: "not a key" })).to.equal(false);
      expect(checkConsumerData.Check({ publicKey: generateKeyPair().publicKey, privateKey: "x" })).to.equal(false);
      expect(checkConsumerData.Check({ client: "myst-openvpn/1" })).to.equal(false);
    });

    it("accepts a provider's config with addresses, and refuses one that smuggles text into the commands it becomes", function () {
      expect(checkServiceConfig.Check(valid())).to.equal(true);
      expect(checkServiceConfig.Check({ ...valid(), address: "10.9.0.2/32 dev eth0" })).to.equal(false);
      expect(checkServiceConfig.Check({ ...valid(), address: "10.9.0.2/24" })).to.equal(false);
      expect(checkServiceConfig.Check({ ...valid(), endpoint: { address: "198.18.3.2; reboot", port: 51820 } })).to.equal(false);
      expect(checkServiceConfig.Check({ ...valid(), mtu: 100 })).to.equal(false);
      expect(checkServiceConfig.Check({ ...valid(), extra: true })).to.equal(false);
    });

    it("refuses to connect with a malformed config, a bad session id, or a key pair it never sent", async function () {
      const tmp = tempDir();
      try {
        const consumer = new WireGuardConsumerService({ runDir: tmp.dir });
        expect((await rejectionOf(consumer.plan({ id: SESSION, serviceConfig: { ...valid(), endpoint: { address: "::::", port: 1 } } }))).code).to.equal(
          "BAD_SERVICE_CONFIG",
        );
        expect((await rejectionOf(consumer.plan({ id: "../../etc/passwd", serviceConfig: valid() }))).code).to.equal("BAD_SESSION_ID");
        // A valid config, but for a key this consumer never sent: nothing is started.
        expect((await rejectionOf(consumer.connect({ id: SESSION, provider: "0x", serviceConfig: valid() }))).code).to.equal("BAD_SERVICE_CONFIG");
        const { publicKey } = await consumer.consumerData();
        const plan = await consumer.plan({ id: SESSION, serviceConfig: { ...valid(), clientPublicKey: publicKey } });
        expect(plan).to.deep.equal({
          // Named by the key pair (the device is made before the session id exists), unique per tunnel.
          device: `mwc${crypto.createHash("sha256").update(publicKey).digest("hex").slice(0, 12)}`,
          endpoints: [{ address: "198.18.3.2", port: 51820, protocol: "udp" }],
          // The provider's tunnel may answer our tunnel's own port from any port of its address (it roams).
          tunnelPeers: [{ address: "198.18.3.2", localPort: consumer.tunnelPortFor({ publicKey })! }],
          dns: ["10.9.0.1"],
          ipv6: false,
        });
      } finally {
        tmp.cleanup();
      }
    });

    it("ends the wait for the provider's first handshake as soon as the route cannot work, with its reason (not after the 10 s)", async function () {
      // wireguard-go that never gets a handshake: its peer listed, no handshake time.
      const silent = { running: true, uapi: { get: async () => ({ peers: [{}] }) } } as unknown as WireGuardProcess;
      const giveUp = new AbortController();
      const waiting = waitHandshake(silent, 10_000, 5, giveUp.signal).then(
        () => "came",
        (err: Error) => err.message,
      );
      setTimeout(() => giveUp.abort(new Error("the tunnels did not meet")), 20);
      const outcome = await Promise.race([waiting, new Promise((r) => setTimeout(() => r("still waiting after 5 s"), 5_000))]);
      expect(outcome).to.equal("the tunnels did not meet");
    });

    it("does not give up once the provider's initiation reached the tunnel (its peer learned an endpoint): a lost answer is WireGuard's to retry", async function () {
      let handshakeAt = 0;
      const met = {
        running: true,
        uapi: { get: async () => ({ peers: [{ endpoint: "198.18.3.2:40001", lastHandshakeMs: handshakeAt }] }) },
      } as unknown as WireGuardProcess;
      const giveUp = new AbortController();
      giveUp.abort(new Error("the tunnels did not meet"));
      const waiting = waitHandshake(met, 10_000, 5, giveUp.signal).then(
        () => "came",
        (err: Error) => err.message,
      );
      setTimeout(() => (handshakeAt = Date.now()), 200); // the provider's retry completes the handshake
      expect(await waiting).to.equal("came");
    });

    it("refuses an interface name that could become a path", function () {
      expect(() => new WireGuardProcess({ device: "../../tmp/x" })).to.throw(/not an interface name/);
    });
  });
});
