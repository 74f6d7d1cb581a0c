import crypto from "node:crypto";
import { expect } from "chai";
import { formatUnits, parseUnits } from "ethers";
import { GIB, priceOf } from "../../../node/payments/price";
import { mystToWei, weiToMyst } from "../../../node/values/myst";

const E18 = 10n ** 18n;

describe("payments: price = per hour × time + per GiB × bytes, in wei", function () {
  it("is zero for zero prices, whatever the usage", function () {
    expect(priceOf({ perHour: 0n, perGiB: 0n }, { ms: 10n ** 12n, bytes: 10n ** 15n })).to.equal(0n);
  });

  it("charges only time when only per hour is set", function () {
    expect(priceOf({ perHour: 3600n, perGiB: 0n }, { ms: 1000n, bytes: GIB })).to.equal(1n);
    expect(priceOf({ perHour: E18, perGiB: 0n }, { ms: 1_800_000n, bytes: 0n })).to.equal(E18 / 2n);
  });

  it("charges only bytes when only per GiB is set", function () {
    expect(priceOf({ perHour: 0n, perGiB: E18 }, { ms: 3_600_000n, bytes: GIB / 4n })).to.equal(E18 / 4n);
  });

  it("adds both, then rounds down once (never a fraction of a wei to the provider)", function () {
    // 1 wei/h for 1 ms is 1/3,600,000 wei; 1 wei/GiB for 1 byte is 1/2^30 wei: together less than 1.
    expect(priceOf({ perHour: 1n, perGiB: 1n }, { ms: 1n, bytes: 1n })).to.equal(0n);
    // 1.5 + 1.5 = 3 exactly: rounding each part down would give 2.
    expect(priceOf({ perHour: 3n, perGiB: 3n }, { ms: 1_800_000n, bytes: GIB / 2n })).to.equal(3n);
  });

  it("stays exact for huge values", function () {
    const perHour = 10n ** 30n;
    const ms = 10n ** 15n;
    expect(priceOf({ perHour, perGiB: 0n }, { ms, bytes: 0n })).to.equal((perHour * ms) / 3_600_000n);
    expect(priceOf({ perHour: 0n, perGiB: 2n ** 200n }, { ms: 0n, bytes: 2n ** 40n })).to.equal(2n ** 210n);
  });

  it("refuses negative usage or prices", function () {
    expect(() => priceOf({ perHour: 1n, perGiB: 1n }, { ms: -1n, bytes: 0n })).to.throw(/negative/);
    expect(() => priceOf({ perHour: -1n, perGiB: 1n }, { ms: 1n, bytes: 0n })).to.throw(/negative/);
  });
});

describe("amounts of MYST made once at the edge", function () {
  it("parses MYST into wei as a bigint, and names a bad amount", function () {
    expect(mystToWei("0.05", "--price")).to.equal(50_000_000_000_000_000n);
    expect(mystToWei("12", "--price")).to.equal(12n * 10n ** 18n);
    expect(mystToWei("0.000000000000000001", "--price")).to.equal(1n);
    for (const bad of ["-1", "1e3", "0.0000000000000000001", "", "0x10"])
      expect(() => mystToWei(bad, "--price")).to.throw(/--price ".*" is not an amount of MYST/);
  });

  it("gives the wei ethers' parseUnits(value, 18) gives, for any amount it accepts", function () {
    const digits = (n: number) => Array.from({ length: n }, () => Math.floor(Math.random() * 10)).join("");
    for (let i = 0; i < 500; i++) {
      const value = `${digits(1 + (i % 20))}${i % 3 === 0 ? "" : `.${digits(1 + (i % 18))}`}`;
      expect(mystToWei(value, "--price"), value).to.equal(parseUnits(value, 18));
    }
    for (const edge of ["0", "0.0", "00.10", "99999999999999999999.999999999999999999"]) expect(mystToWei(edge, "x"), edge).to.equal(parseUnits(edge, 18));
  });

  it("writes wei as MYST exactly as ethers' formatUnits(wei, 18) does", function () {
    const values = [0n, 1n, 10n ** 18n, 5n * 10n ** 16n, -(5n * 10n ** 16n), 123456789n * 10n ** 18n + 1n];
    for (let i = 0; i < 500; i++) values.push(BigInt(`0x${crypto.randomBytes(1 + (i % 16)).toString("hex")}`) * (i % 7 === 0 ? -1n : 1n));
    for (const v of values) {
      expect(weiToMyst(v), String(v)).to.equal(formatUnits(v, 18));
      expect(weiToMyst(v.toString())).to.equal(formatUnits(v.toString(), 18));
    }
  });
});
