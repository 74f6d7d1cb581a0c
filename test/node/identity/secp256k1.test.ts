import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import { expect } from "chai";
import { SigningKey, getBytes } from "ethers";
import { secp256k1, type Secp256k1 } from "../../../node/identity/secp256k1";
import { jsSecp256k1 } from "../../../node/identity/secp256k1-js";
import { loadNativeSecp256k1 } from "../../../node/identity/secp256k1-native";

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const from32 = (x: bigint) => getBytes("0x" + x.toString(16).padStart(64, "0"));
const sOf = (sig: Uint8Array) => BigInt("0x" + hex(sig.subarray(32, 64)));
/** The same signature with s replaced by n − s: what OpenSSL makes half the time, and a malleated twin. */
const highS = (sig: Uint8Array) => Uint8Array.from([...sig.subarray(0, 32), ...from32(N - sOf(sig))]);
const randomSecret = () => {
  for (;;) {
    const s = crypto.randomBytes(32);
    if (jsSecp256k1.isValidSecretKey(s)) return new Uint8Array(s);
  }
};

// Published vectors: web3.js's documented account, and Hardhat's account #0 (keys from ethers' SigningKey).
const SECRETS = ["0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318", "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"];

const native = loadNativeSecp256k1();

describe("secp256k1: libsecp256k1 and its fallback", function () {
  it("loads the native binding on this platform, and the node uses it", function () {
    expect(native, "secp256k1's prebuilt binding did not load").to.not.equal(null);
    expect(native!.implementation).to.equal("libsecp256k1");
    expect(secp256k1.implementation).to.equal(process.env.MYST_SECP256K1 === "js" ? "noble+openssl" : "libsecp256k1");
  });

  for (const [name, get] of [
    ["libsecp256k1", () => native!],
    ["noble+openssl", () => jsSecp256k1],
  ] as const) {
    describe(`${name} behaves as the curve does`, function () {
      let c: Secp256k1;
      before(function () {
        c = get();
      });

      it("derives the public keys ethers derives from the published secrets", function () {
        for (const secret of SECRETS) {
          const k = new SigningKey(secret);
          expect("0x04" + hex(c.publicKey(getBytes(secret)))).to.equal(k.publicKey);
          expect("0x" + hex(c.compressedPublicKey(getBytes(secret)))).to.equal(k.compressedPublicKey);
        }
      });

      it("signs a digest as ethers does (RFC 6979, low s), and recovers the signer", function () {
        for (const secret of [...SECRETS, ...Array.from({ length: 10 }, () => "0x" + hex(randomSecret()))]) {
          const digest = crypto.randomBytes(32);
          const { signature, recovery } = c.signDigest(digest, getBytes(secret));
          const theirs = new SigningKey(secret).sign(digest);
          expect("0x" + hex(signature)).to.equal(theirs.r + theirs.s.slice(2));
          expect(recovery).to.equal(theirs.yParity);
          expect(hex(c.recover(digest, signature, recovery)!)).to.equal(hex(c.publicKey(getBytes(secret))));
        }
      });

      it("verifies protocol signatures by either half of s, and refuses bad ones", function () {
        const secret = randomSecret();
        const publicKey = c.publicKey(secret);
        const other = c.publicKey(randomSecret());
        const bytes = crypto.randomBytes(300);
        const sig = c.signSha256(bytes, secret, publicKey);
        expect(c.verifySha256(bytes, sig, publicKey)).to.equal(true);
        expect(c.verifySha256(bytes, highS(sig), publicKey)).to.equal(true);
        const flipped = Uint8Array.from(sig);
        flipped[10] ^= 1;
        expect(c.verifySha256(bytes, flipped, publicKey)).to.equal(false);
        expect(c.verifySha256(bytes, sig, other)).to.equal(false);
        expect(c.verifySha256(Buffer.concat([bytes, Buffer.of(0)]), sig, publicKey)).to.equal(false);
        expect(c.verifySha256(bytes, sig.subarray(1), publicKey)).to.equal(false);
        expect(c.verifySha256(bytes, new Uint8Array(64), publicKey)).to.equal(false);
        expect(c.verifySha256(bytes, Uint8Array.from([...sig.subarray(0, 32), ...from32(N)]), publicKey)).to.equal(false);
        expect(c.verifySha256(bytes, sig, new Uint8Array(64).fill(7))).to.equal(false);
      });

      it("refuses points off the curve, and recovers nothing from junk", function () {
        expect(c.toXY(new Uint8Array(64).fill(7))).to.equal(null);
        expect(c.toXY(Uint8Array.of(2, ...new Uint8Array(32).fill(0xff)))).to.equal(null);
        expect(c.toXY(Uint8Array.of(5, ...new Uint8Array(32).fill(2)))).to.equal(null);
        expect(c.toXY(new Uint8Array(20))).to.equal(null);
        expect(c.sharedSecret(randomSecret(), new Uint8Array(64).fill(9))).to.equal(null);
        expect(c.recover(crypto.randomBytes(32), new Uint8Array(64), 0)).to.equal(null);
        expect(c.recover(crypto.randomBytes(32), Uint8Array.from([...from32(N), ...from32(1n)]), 1)).to.equal(null);
        expect(c.isValidSecretKey(new Uint8Array(32))).to.equal(false);
        expect(c.isValidSecretKey(from32(N))).to.equal(false);
        expect(c.isValidSecretKey(new Uint8Array(31).fill(1))).to.equal(false);
      });
    });
  }

  describe("both give the same results", function () {
    it("on public keys, point forms, signatures, recovery and ECDH, for random inputs", function () {
      for (let i = 0; i < 50; i++) {
        const a = randomSecret();
        const b = randomSecret();
        const pub = native!.publicKey(a);
        expect(hex(jsSecp256k1.publicKey(a))).to.equal(hex(pub));
        expect(hex(jsSecp256k1.compressedPublicKey(a))).to.equal(hex(native!.compressedPublicKey(a)));
        for (const form of [pub, Uint8Array.from([4, ...pub]), native!.compressedPublicKey(a)]) {
          expect(hex(jsSecp256k1.toXY(form)!)).to.equal(hex(native!.toXY(form)!));
        }
        const digest = crypto.randomBytes(32);
        const ours = native!.signDigest(digest, a);
        const theirs = jsSecp256k1.signDigest(digest, a);
        expect(hex(theirs.signature)).to.equal(hex(ours.signature));
        expect(theirs.recovery).to.equal(ours.recovery);
        for (const recovery of [0, 1] as const) {
          // Either recovery bit, and the high-s twin: the same key (or none) from both.
          for (const sig of [ours.signature, highS(ours.signature)]) {
            const n = native!.recover(digest, sig, recovery);
            const j = jsSecp256k1.recover(digest, sig, recovery);
            expect(n && hex(n)).to.equal(j && hex(j));
          }
        }
        const bPub = jsSecp256k1.publicKey(b);
        expect(hex(native!.sharedSecret(a, bPub)!)).to.equal(hex(jsSecp256k1.sharedSecret(a, bPub)!));
        expect(hex(native!.sharedSecret(a, bPub)!)).to.equal(hex(native!.sharedSecret(b, pub)!));
        expect(hex(native!.sharedSecret(a, native!.compressedPublicKey(b))!)).to.equal(hex(jsSecp256k1.sharedSecret(a, bPub)!));
      }
    });

    it("on random junk signatures: both recover the same key or none", function () {
      for (let i = 0; i < 50; i++) {
        const digest = crypto.randomBytes(32);
        const sig = crypto.randomBytes(64);
        const n = native!.recover(digest, sig, (i % 2) as 0 | 1);
        const j = jsSecp256k1.recover(digest, sig, (i % 2) as 0 | 1);
        expect(n && hex(n)).to.equal(j && hex(j));
      }
    });

    it("each verifies the other's protocol signatures (OpenSSL's nonce is random, libsecp256k1's RFC 6979)", function () {
      for (let i = 0; i < 25; i++) {
        const secret = randomSecret();
        const publicKey = native!.publicKey(secret);
        const bytes = crypto.randomBytes(50 + i * 10);
        const bySsl = jsSecp256k1.signSha256(bytes, secret, publicKey);
        const byLib = native!.signSha256(bytes, secret, publicKey);
        expect(native!.verifySha256(bytes, bySsl, publicKey)).to.equal(true);
        expect(jsSecp256k1.verifySha256(bytes, byLib, publicKey)).to.equal(true);
        expect(sOf(byLib) <= N / 2n).to.equal(true);
        // The same digest signed by libsecp256k1 and by noble: the same bytes.
        const digest = crypto.createHash("sha256").update(bytes).digest();
        expect(hex(byLib)).to.equal(hex(jsSecp256k1.signDigest(digest, secret).signature));
      }
    });
  });

  // Discovery's signature pool loads the binding in worker threads and ends them when it stops; a
  // test process starts and stops many pools. secp256k1 4.0.x kept per-thread state where another
  // thread freed it: 60 rounds crashed 5 of 5 times (SIGSEGV or free() abort), and a full CI run
  // lost a mocha worker that way (fixed in 5.0).
  it("survives threads that load it, use it and end, round after round", function () {
    this.timeout(120_000);
    const binding = require.resolve("secp256k1/bindings");
    const thread = `
      const { parentPort } = require("node:worker_threads");
      const s = require(${JSON.stringify(binding)});
      const crypto = require("node:crypto");
      let k; do { k = crypto.randomBytes(32); } while (!s.privateKeyVerify(k));
      for (let i = 0; i < 20; i++) {
        const d = crypto.randomBytes(32);
        const { signature, recid } = s.ecdsaSign(d, k);
        s.ecdsaRecover(signature, recid, d, false);
        s.ecdh(s.publicKeyCreate(k, false), k, { hashfn: (x) => x }, Buffer.alloc(32));
      }
      parentPort.postMessage("done");`;
    const main = `
      const { Worker } = require("node:worker_threads");
      require(${JSON.stringify(binding)});
      (async () => {
        for (let round = 0; round < 60; round++) {
          const ws = Array.from({ length: 4 }, () => new Worker(${JSON.stringify(thread)}, { eval: true }));
          await Promise.all(ws.map((w) => new Promise((r, j) => { w.once("message", r); w.once("error", j); })));
          await Promise.all(ws.map((w) => w.terminate()));
        }
        console.log("60 rounds");
      })();`;
    const r = spawnSync(process.execPath, ["-e", main], { encoding: "utf8", timeout: 110_000 });
    expect({ status: r.status, signal: r.signal, stdout: r.stdout.trim(), stderr: r.stderr.trim().slice(-300) }).to.deep.equal({
      status: 0,
      signal: null,
      stdout: "60 rounds",
      stderr: "",
    });
  });
});
