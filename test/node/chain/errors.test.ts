import { expect } from "chai";
import { makeError } from "ethers";
import { ChainError, toChainError } from "../../../node/chain/errors";

describe("chain errors: ethers' errors become typed ChainErrors at the edge (ethers' isError)", function () {
  it("names a revert, insufficient funds, a moved nonce and an unreachable node", function () {
    const revert = makeError("execution reverted", "CALL_EXCEPTION", {
      action: "estimateGas",
      data: null,
      reason: null,
      transaction: { to: null, data: "0x" },
      invocation: null,
      revert: { signature: "NothingToSettle()", name: "NothingToSettle", args: [] },
    });
    const reverted = toChainError(revert, "settling");
    expect([reverted.code, reverted.message, reverted.revert?.name]).to.deep.equal(["TX_REVERTED", "settling reverted: NothingToSettle()", "NothingToSettle"]);
    const funds = makeError("insufficient funds", "INSUFFICIENT_FUNDS", { transaction: {} });
    expect(toChainError(funds, "depositing").code).to.equal("INSUFFICIENT_FUNDS");
    const nonce = makeError("nonce has already been used", "NONCE_EXPIRED", { transaction: {} });
    expect(toChainError(nonce, "settling").code).to.equal("NONCE_CONFLICT");
    const down = makeError("could not detect network", "NETWORK_ERROR", { event: "noNetwork" });
    expect(toChainError(down, "reading").code).to.equal("CHAIN_UNREACHABLE");
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    expect(toChainError(refused, "reading").code).to.equal("CHAIN_UNREACHABLE");
    const other = toChainError(new Error("something\nelse"), "reading");
    expect([other.code, other.message]).to.deep.equal(["CHAIN_ERROR", "reading: something"]);
    expect(toChainError(other, "again")).to.equal(other);
    expect(other).to.be.instanceOf(ChainError);
  });
});
