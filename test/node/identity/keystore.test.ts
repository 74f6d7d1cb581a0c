import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { Wallet } from "ethers";
import { IdentityKey } from "../../../node/identity/key";
import { Keystore } from "../../../node/identity/keystore";
import { resolvePassphrase } from "../../../node/config/passphrase";
import { tempDir } from "../../../scripts/lib/tmp";

async function rejection(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error("expected a rejection");
}

describe("keystore", function () {
  let dir: string;
  let cleanup: () => void;
  let keystore: Keystore;
  beforeEach(function () {
    ({ dir, cleanup } = tempDir());
    keystore = new Keystore({ dir: path.join(dir, "keystore"), lightKdf: true });
  });
  afterEach(() => cleanup());

  it("stores a new identity as a 0600 keystore v3 file that unlocks to the same address", async function () {
    const entry = await keystore.create("correct horse");
    expect(fs.statSync(entry.file).mode & 0o777).to.equal(0o600);
    expect(fs.statSync(keystore.dir).mode & 0o777).to.equal(0o700);
    const json = JSON.parse(fs.readFileSync(entry.file, "utf8"));
    expect(json.version).to.equal(3);
    expect((json.crypto ?? json.Crypto).kdf).to.equal("scrypt");
    expect((await keystore.unlock(entry.address, "correct horse")).address).to.equal(entry.address);
    expect(keystore.list()).to.deep.equal([entry]);
  });

  it("writes files ethers can decrypt (interchangeable with other wallets)", async function () {
    const entry = await keystore.create("pw");
    const wallet = await Wallet.fromEncryptedJson(fs.readFileSync(entry.file, "utf8"), "pw");
    expect(wallet.address).to.equal(entry.address);
  });

  it("imports a keystore made by ethers' Wallet.encrypt, leaving the source untouched", async function () {
    const wallet = new Wallet(Wallet.createRandom().privateKey);
    const source = path.join(dir, "from-ethers.json");
    fs.writeFileSync(source, await wallet.encrypt("their pass"));
    const before = fs.readFileSync(source);
    const entry = await keystore.import(source, "their pass");
    expect(entry.address).to.equal(wallet.address);
    expect(fs.readFileSync(source)).to.deep.equal(before);
    expect((await keystore.unlock(wallet.address, "their pass")).privateKeyHex()).to.equal(wallet.privateKey);
  });

  it("re-encrypts an import under a new passphrase when asked", async function () {
    const wallet = new Wallet(Wallet.createRandom().privateKey);
    const source = path.join(dir, "src.json");
    fs.writeFileSync(source, await wallet.encrypt("old"));
    await keystore.import(source, "old", "new");
    expect((await keystore.unlock(wallet.address, "new")).address).to.equal(wallet.address);
    expect((await rejection(keystore.unlock(wallet.address, "old"))).code).to.equal("WRONG_PASSPHRASE");
  });

  it("refuses to import the same identity twice", async function () {
    const entry = await keystore.create("pw");
    const err = await rejection(keystore.import(entry.file, "pw"));
    expect(err.code).to.equal("IDENTITY_EXISTS");
    expect(keystore.list()).to.have.length(1);
  });

  describe("the Web3 Secret Storage test vectors (no address field)", function () {
    // From the specification (ethereum.org, "Web3 Secret Storage Definition"), password "testpassword".
    const privateKey = "0x7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";
    const vectors = {
      pbkdf2: {
        crypto: {
          cipher: "aes-128-ctr",
          cipherparams: { iv: "6087dab2f9fdbbfaddc31a909735c1e6" },
          ciphertext: "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
          kdf: "pbkdf2",
          kdfparams: { c: 262144, dklen: 32, prf: "hmac-sha256", salt: "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd" },
          mac: "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2",
        },
        id: "3198bc9c-6672-5ab3-d995-4942343ae5b6",
        version: 3,
      },
      "scrypt (r = 1)": {
        crypto: {
          cipher: "aes-128-ctr",
          cipherparams: { iv: "83dbcc02d8ccb40e466191a123791e0e" },
          ciphertext: "d172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c",
          kdf: "scrypt",
          kdfparams: { dklen: 32, n: 262144, p: 8, r: 1, salt: "ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19" },
          mac: "2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097",
        },
        id: "3198bc9c-6672-5ab3-d995-4942343ae5b6",
        version: 3,
      },
    };
    const expected = IdentityKey.fromHex(privateKey).address;

    for (const [kdf, vector] of Object.entries(vectors)) {
      it(`imports the ${kdf} vector, fills in its address, lists, unlocks and exports it, and does not import it twice`, async function () {
        const source = path.join(dir, `${kdf}.json`);
        fs.writeFileSync(source, JSON.stringify(vector));
        const entry = await keystore.import(source, "testpassword");
        expect(entry.address).to.equal(expected);
        expect(keystore.list().map((e) => e.address)).to.deep.equal([expected]);
        expect((await keystore.unlock(expected, "testpassword")).privateKeyHex()).to.equal(privateKey);
        expect(JSON.parse(await keystore.export(expected)).address).to.equal(expected.slice(2).toLowerCase());
        expect((await rejection(keystore.import(source, "testpassword"))).code).to.equal("IDENTITY_EXISTS");
        expect(fs.readdirSync(path.join(dir, "keystore"))).to.have.length(1);
        expect(JSON.parse(fs.readFileSync(source, "utf8"))).to.deep.equal(vector);
      });
    }

    it("refuses a file whose KDF would cost unbounded memory, without running it", async function () {
      const source = path.join(dir, "huge.json");
      const vector = vectors["scrypt (r = 1)"];
      fs.writeFileSync(source, JSON.stringify({ ...vector, crypto: { ...vector.crypto, kdfparams: { ...vector.crypto.kdfparams, n: 2 ** 30, r: 8 } } }));
      expect((await rejection(keystore.import(source, "testpassword"))).code).to.equal("KEYSTORE_CORRUPT");
    });
  });

  it("says clearly when the passphrase is wrong", async function () {
    const entry = await keystore.create("right");
    const err = await rejection(keystore.unlock(entry.address, "wrong"));
    expect(err.code).to.equal("WRONG_PASSPHRASE");
    expect(err.message).to.include(entry.file);
  });

  for (const [what, damage] of [
    ["truncated", (s: string) => s.slice(0, Math.floor(s.length / 2))],
    ["corrupt (ciphertext changed)", (s: string) => s.replace(/"ciphertext":"(.)/, (_m, c) => `"ciphertext":"${c === "a" ? "b" : "a"}`)],
    ["not JSON", () => "garbage\u0000"],
  ] as const) {
    it(`reports a ${what} keystore file clearly and leaves it as it was`, async function () {
      const entry = await keystore.create("pw");
      const damaged = damage(fs.readFileSync(entry.file, "utf8"));
      fs.writeFileSync(entry.file, damaged);
      if (what === "corrupt (ciphertext changed)") {
        const err = await rejection(keystore.unlock(entry.address, "pw"));
        // A changed ciphertext fails the MAC: indistinguishable from a wrong passphrase by design.
        expect(err.code).to.be.oneOf(["WRONG_PASSPHRASE", "KEYSTORE_CORRUPT"]);
      } else {
        // The file no longer parses, so it is not even listed; unlocking names the problem.
        const err = await rejection(keystore.import(entry.file, "pw"));
        expect(err.code).to.equal("KEYSTORE_CORRUPT");
        expect(err.message).to.include(entry.file);
        expect((await rejection(keystore.unlock(entry.address, "pw"))).code).to.equal("IDENTITY_NOT_FOUND");
      }
      expect(fs.readFileSync(entry.file, "utf8")).to.equal(damaged);
    });
  }

  it("exports the file as is, or re-encrypted", async function () {
    const entry = await keystore.create("pw");
    expect(await keystore.export(entry.address)).to.equal(fs.readFileSync(entry.file, "utf8"));
    const reencrypted = await keystore.export(entry.address, { passphrase: "pw", newPassphrase: "other" });
    expect((await Wallet.fromEncryptedJson(reencrypted, "other")).address).to.equal(entry.address);
  });

  it("names a missing identity and a malformed address", async function () {
    expect((await rejection(keystore.unlock("0x" + "11".repeat(20), "pw"))).code).to.equal("IDENTITY_NOT_FOUND");
    expect((await rejection(keystore.unlock("0x123", "pw"))).code).to.equal("INVALID_ADDRESS");
    expect((await rejection(keystore.create(""))).code).to.equal("PASSPHRASE_EMPTY");
  });

  it("takes the passphrase from flag, file or environment, and says which it needs", function () {
    const file = path.join(dir, "pass.txt");
    fs.writeFileSync(file, "from file\n");
    expect(resolvePassphrase({ flag: "f", file, env: "e", hint: "h" })).to.equal("f");
    expect(resolvePassphrase({ file, env: "e", hint: "h" })).to.equal("from file");
    expect(resolvePassphrase({ env: "e", hint: "h" })).to.equal("e");
    expect(() => resolvePassphrase({ hint: "--passphrase-file" })).to.throw(/give --passphrase-file/);
    expect(() => resolvePassphrase({ file: path.join(dir, "nope"), hint: "h" })).to.throw(/cannot read passphrase file/);
  });
});
