import { expect } from "chai";
import { parseEther } from "ethers";
import { pairsWorthSettling, type SettleCandidate } from "../../../node/payments/fee-rule";

const E = parseEther;

/** `n` pairs of `amount` each, named `${prefix}0`…, that go only when the fee allows. */
function pairs(n: number, amount: bigint, prefix = "p", mustGo = false): SettleCandidate[] {
  return Array.from({ length: n }, (_, i) => ({ pairId: `${prefix}${i}`, unsettled: amount, mustGo }));
}

describe("the fee rule counts the transactions it will send", function () {
  const rule = { feeWei: E("0.005"), feePercent: 1, maxBatch: 20 };

  it("sends nothing when one fee is 0.5% of the total but every transaction of 20 pairs would pay more than 1%", function () {
    // 50 × 0.02 MYST: the old rule saw one fee against 1 MYST and sent 3 transactions (1.5%).
    expect(pairsWorthSettling(pairs(50, E("0.02")), rule)).to.deep.equal([]);
  });

  it("sends the largest pairs, one transaction's worth at a time, while each transaction keeps to the percentage", function () {
    const chosen = pairsWorthSettling([...pairs(10, E("0.02"), "small"), ...pairs(40, E("0.03"), "big")], rule);
    expect(chosen).to.have.length(40);
    expect(chosen.every((id) => id.startsWith("big"))).to.equal(true);
  });

  it("sends the pairs that must go whatever the fee, and fills their transaction with the largest others at no extra fee", function () {
    const chosen = pairsWorthSettling([...pairs(3, E("0.0001"), "must", true), ...pairs(30, E("0.001"), "tiny"), ...pairs(1, E("0.002"), "larger")], rule);
    expect(chosen.slice(0, 3)).to.deep.equal(["must0", "must1", "must2"]);
    expect(chosen[3]).to.equal("larger0");
    // One transaction of 20: the 3 that must go and 17 riders; the other 14 tiny pairs would pay 35% and wait.
    expect(chosen).to.have.length(20);
  });

  it("sends everything when settling costs nothing", function () {
    expect(pairsWorthSettling(pairs(45, 1n), { ...rule, feeWei: 0n })).to.have.length(45);
  });
});
