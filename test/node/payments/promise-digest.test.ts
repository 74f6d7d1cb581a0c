import crypto from "node:crypto";
import { expect } from "chai";
import { TypedDataEncoder, Wallet, hexlify, id } from "ethers";
import { PromiseDigests, promiseTypes, vaultDomain } from "../../../node/chain/eip712";

const randomAddress = () => Wallet.createRandom().address;

describe("a promise's EIP-712 digest, precomputed", function () {
  const domain = vaultDomain(31337n, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
  const digests = new PromiseDigests(domain);
  const ethers = (consumer: string, provider: string, amount: bigint) => TypedDataEncoder.hash(domain, promiseTypes, { consumer, provider, amount });

  it("equals ethers' generic encoding for random pairs and amounts, whatever the addresses' case", function () {
    const amounts = [
      0n,
      1n,
      10n ** 18n,
      (1n << 255n) + 7n,
      (1n << 256n) - 1n,
      ...Array.from({ length: 40 }, () => BigInt("0x" + crypto.randomBytes(1 + (crypto.randomBytes(1)[0] % 32)).toString("hex"))),
    ];
    for (const amount of amounts) {
      const consumer = randomAddress();
      const provider = randomAddress();
      expect(hexlify(digests.digest(consumer, provider, amount))).to.equal(ethers(consumer, provider, amount));
      expect(hexlify(digests.digest(consumer.toLowerCase(), provider.toLowerCase(), amount))).to.equal(ethers(consumer, provider, amount));
    }
  });

  it("differs per domain: another chain or another vault gives another digest", function () {
    const [c, p] = [randomAddress(), randomAddress()];
    const other = [new PromiseDigests(vaultDomain(1n, domain.verifyingContract!)), new PromiseDigests(vaultDomain(31337n, randomAddress()))];
    for (const d of other) expect(hexlify(d.digest(c, p, 5n))).to.not.equal(hexlify(digests.digest(c, p, 5n)));
    expect(hexlify(other[0].digest(c, p, 5n))).to.equal(
      TypedDataEncoder.hash(vaultDomain(1n, domain.verifyingContract!), promiseTypes, { consumer: c, provider: p, amount: 5n }),
    );
  });

  it("refuses what is not a 0x address or not a uint256", function () {
    const a = randomAddress();
    for (const bad of ["0x1234", a.slice(2), `${a}00`, `0x${"zz".repeat(20)}`]) {
      expect(() => digests.digest(bad, a, 1n)).to.throw(/address/);
      expect(() => digests.digest(a, bad, 1n)).to.throw(/address/);
    }
    for (const amount of [-1n, 1n << 256n]) {
      expect(() => digests.digest(a, a, amount)).to.throw(/uint256/);
      expect(() => ethers(a, a, amount)).to.throw();
    }
  });

  it("hashes the type the contract hashes: Promise(address consumer,address provider,uint256 amount)", function () {
    expect(hexlify(PromiseDigests.TYPE_HASH)).to.equal(id("Promise(address consumer,address provider,uint256 amount)"));
  });
});
