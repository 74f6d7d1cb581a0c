import { expect } from "chai";
import { backoffMs } from "../../../node/lifecycle/backoff";

describe("the backoff schedule every retry loop shares", function () {
  it("doubles from the base up to the cap", function () {
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffMs(n, { baseMs: 1000, maxMs: 16_000 }))).to.deep.equal([1000, 2000, 4000, 8000, 16_000, 16_000, 16_000]);
  });

  it("can retry the first time at once (a supervised server whose clients are waiting)", function () {
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffMs(n, { baseMs: 250, maxMs: 5000, immediateFirst: true }))).to.deep.equal([
      0, 250, 500, 1000, 2000, 4000, 5000,
    ]);
  });

  it("stays finite for very many attempts", function () {
    expect(backoffMs(10_000, { baseMs: 1000, maxMs: 60_000 })).to.equal(60_000);
  });
});
