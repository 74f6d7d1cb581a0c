import { expect } from "chai";
import { Wallet, hashMessage, verifyMessage as ethersVerifyMessage, SigningKey, getBytes } from "ethers";
import { IdentityKey, addressOfPublicKey, fromHex, recoverAddress, toHex, verifyMessage, hashPersonalMessage } from "../../../node/identity/key";
import { verifyBytes } from "../../../node/identity/protocol-signature";

// Published vectors: web3.js's documented account, and Hardhat's account #0.
const VECTORS = [
  {
    privateKey: "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
    address: "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23",
  },
  {
    privateKey: "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    address: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
  },
];

describe("identity keys", function () {
  describe("derivation", function () {
    for (const { privateKey, address } of VECTORS) {
      it(`derives ${address} from its published private key`, function () {
        expect(IdentityKey.fromHex(privateKey).address).to.equal(address);
      });
    }

    it("agrees with ethers' Wallet on address and public key for random keys", function () {
      for (let i = 0; i < 25; i++) {
        const key = IdentityKey.generate();
        const wallet = new Wallet(key.privateKeyHex());
        expect(key.address).to.equal(wallet.address);
        expect(toHex(key.publicKey)).to.equal("0x" + wallet.signingKey.publicKey.slice(4));
        expect(addressOfPublicKey(getBytes(SigningKey.computePublicKey(wallet.privateKey, true)))).to.equal(wallet.address);
      }
    });

    it("refuses keys that are not valid secp256k1 scalars", function () {
      expect(() => IdentityKey.fromHex("0x" + "00".repeat(32))).to.throw(/not a valid secp256k1 scalar/);
      expect(() => IdentityKey.fromHex("0x1234")).to.throw(/must be 32 bytes, got 2/);
      expect(() => IdentityKey.fromHex("zz")).to.throw(/not hex/);
      expect(() => fromHex("0xabc")).to.throw(/not hex/);
    });

    it("refuses a 64-byte public key that is not a curve point", function () {
      expect(() => addressOfPublicKey(new Uint8Array(64).fill(7))).to.throw(/not a point/);
    });
  });

  describe("message signatures", function () {
    it("signs EIP-191 messages that ethers verifies, and verifies ethers' signatures", async function () {
      const key = IdentityKey.generate();
      const wallet = new Wallet(key.privateKeyHex());
      const message = new TextEncoder().encode("session 42");
      const ours = key.signMessage(message);
      expect(ethersVerifyMessage(message, toHex(ours))).to.equal(key.address);
      expect(toHex(hashPersonalMessage(message))).to.equal(hashMessage(message));
      const theirs = getBytes(await wallet.signMessage(message));
      expect(verifyMessage(message, theirs, key.address)).to.equal(true);
    });

    it("rejects a signature by another key, over other bytes, or malformed", function () {
      const key = IdentityKey.generate();
      const other = IdentityKey.generate();
      const message = new TextEncoder().encode("hello");
      const signature = key.signMessage(message);
      expect(verifyMessage(message, other.signMessage(message), key.address)).to.equal(false);
      expect(verifyMessage(new TextEncoder().encode("hellO"), signature, key.address)).to.equal(false);
      expect(verifyMessage(message, signature.slice(0, 64), key.address)).to.equal(false);
      const badV = Uint8Array.from(signature);
      badV[64] = 5;
      expect(verifyMessage(message, badV, key.address)).to.equal(false);
    });

    it("refuses high-s (malleable) signatures", function () {
      const key = IdentityKey.generate();
      const digest = hashPersonalMessage(new TextEncoder().encode("x"));
      const sig = key.signDigest(digest);
      const n = BigInt("0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
      const s = BigInt(toHex(sig.slice(32, 64)));
      const twin = Uint8Array.from(sig);
      twin.set(getBytes("0x" + (n - s).toString(16).padStart(64, "0")), 32);
      twin[64] = sig[64] === 27 ? 28 : 27;
      expect(recoverAddress(digest, sig)).to.equal(key.address);
      expect(() => recoverAddress(digest, twin)).to.throw(/malleable/);
    });

    it("computes the same ECDH secret on both sides", function () {
      const a = IdentityKey.generate();
      const b = IdentityKey.generate();
      expect(toHex(a.sharedSecret(b.publicKey))).to.equal(toHex(b.sharedSecret(a.publicKey)));
      expect(a.sharedSecret(b.publicKey)).to.have.length(32);
    });

    it("agrees with noble's ECDH, and refuses a point off the curve", async function () {
      const secp = await import("@noble/secp256k1");
      const a = IdentityKey.generate();
      const b = IdentityKey.generate();
      const noble = secp.getSharedSecret(getBytes(a.privateKeyHex()), Uint8Array.from([4, ...b.publicKey]), true).slice(1);
      expect(toHex(a.sharedSecret(b.publicKey))).to.equal(toHex(noble));
      expect(() => a.sharedSecret(new Uint8Array(64).fill(9))).to.throw(/not a secp256k1 point/);
    });

    it("makes protocol signatures that verify against the public key only", function () {
      const a = IdentityKey.generate();
      const b = IdentityKey.generate();
      const bytes = new TextEncoder().encode('{"type":"session.create"}');
      const sig = a.signProtocol(bytes);
      expect(sig).to.have.length(64);
      expect(verifyBytes(a.publicKey, bytes, sig)).to.equal(true);
      expect(verifyBytes(b.publicKey, bytes, sig)).to.equal(false);
      expect(verifyBytes(a.publicKey, new TextEncoder().encode('{"type":"session.creatE"}'), sig)).to.equal(false);
      expect(verifyBytes(a.publicKey, bytes, sig.slice(1))).to.equal(false);
    });
  });
});
