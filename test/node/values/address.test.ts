import crypto from "node:crypto";
import { expect } from "chai";
import { Wallet, getAddress as ethersGetAddress } from "ethers";
import { isMystError } from "../../../node/errors/MystError";
import { sameAddress, toAddress } from "../../../node/values/address";

/** The same address with the case of its first letter flipped: a broken EIP-55 checksum. */
function badChecksum(address: string): string {
  const i = [...address].findIndex((c, k) => k > 1 && /[a-fA-F]/.test(c));
  const c = address[i];
  return address.slice(0, i) + (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()) + address.slice(i + 1);
}

describe("toAddress, remembering what it made", function () {
  it("gives the checksummed form for any case, the same the second time", function () {
    const { address } = Wallet.createRandom();
    for (let i = 0; i < 2; i++) {
      expect(toAddress(address.toLowerCase())).to.equal(address);
      expect(toAddress(address)).to.equal(address);
      expect(toAddress(`0x${address.slice(2).toUpperCase()}`)).to.equal(address);
    }
  });

  it("still refuses a broken checksum of an address it has made", function () {
    const { address } = Wallet.createRandom();
    toAddress(address);
    toAddress(address.toLowerCase());
    for (let i = 0; i < 2; i++) {
      let err: unknown;
      try {
        toAddress(badChecksum(address), "peer");
      } catch (e) {
        err = e;
      }
      expect(isMystError(err, "INVALID_ADDRESS")).to.equal(true);
      expect((err as Error).message).to.match(/^peer "0x/);
    }
  });

  it("refuses what is not an address, and keeps working past its memory's bound", function () {
    for (const bad of ["", "0x1234", "0x" + "zz".repeat(20), undefined as unknown as string]) expect(() => toAddress(bad)).to.throw(/is not an address/);
    const addresses = Array.from({ length: 10_050 }, () => `0x${crypto.randomBytes(20).toString("hex")}`);
    const first = addresses[0];
    for (const a of addresses) toAddress(a);
    expect(toAddress(first).toLowerCase()).to.equal(first);
  });

  it("makes exactly what ethers' getAddress makes of 0x + 40 hex (and of the 40 hex alone), and refuses what it refuses", function () {
    const outcome = (f: () => string) => {
      try {
        return f();
      } catch {
        return "refused";
      }
    };
    for (let i = 0; i < 300; i++) {
      const hex = crypto.randomBytes(20).toString("hex");
      const checksummed = ethersGetAddress(`0x${hex}`);
      const variants = [
        hex,
        `0x${hex}`,
        `0x${hex.toUpperCase()}`,
        checksummed,
        badChecksum(checksummed),
        checksummed.slice(2),
        `0X${hex}`,
        `0x${hex}0`,
        `0x${hex.slice(1)}`,
      ];
      for (const v of variants)
        expect(
          outcome(() => toAddress(v)),
          v,
        ).to.equal(outcome(() => ethersGetAddress(v)));
      expect(sameAddress(hex, checksummed)).to.equal(true);
      // A broken checksum names no account, unless the flip left one case only (then ethers takes it too).
      expect(sameAddress(badChecksum(checksummed), checksummed)).to.equal(outcome(() => ethersGetAddress(badChecksum(checksummed))) !== "refused");
    }
    // The one form ethers takes and toAddress refuses: ICAP.
    expect(outcome(() => ethersGetAddress("XE65GB6LDNXYOFTX0NSV3FUWKOWIXAMJK36"))).to.match(/^0x/);
    expect(outcome(() => toAddress("XE65GB6LDNXYOFTX0NSV3FUWKOWIXAMJK36"))).to.equal("refused");
  });
});
