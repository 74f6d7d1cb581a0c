import { expect } from "chai";
import { JsonRpcProvider, makeError, Network, Wallet, type JsonRpcPayload, type JsonRpcResult } from "ethers";
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

describe("chain errors: a node's words that ethers cannot place", function () {
  it("names a relayer out of ETH on Hardhat (which ethers calls 'could not coalesce error') as INSUFFICIENT_FUNDS, with the account", async function () {
    // The real path: a wallet with no ETH sends a transaction to Hardhat's own network through
    // ethers' JsonRpcProvider, which turns Hardhat's answer into an ethers error.
    const hre = await import("hardhat");
    class HardhatRpc extends JsonRpcProvider {
      override async _send(payload: JsonRpcPayload | JsonRpcPayload[]): Promise<JsonRpcResult[]> {
        const one = Array.isArray(payload) ? payload : [payload];
        return Promise.all(
          one.map(async (p) => {
            try {
              return { id: p.id, result: await hre.network.provider.request({ method: p.method, params: p.params as unknown[] }) };
            } catch (err) {
              const e = err as { code?: number; message: string; data?: unknown };
              return { id: p.id, error: { code: e.code ?? -32603, message: e.message, data: e.data } } as unknown as JsonRpcResult;
            }
          }),
        );
      }
    }
    const provider = new HardhatRpc(undefined, undefined, { staticNetwork: Network.from(31337), batchMaxCount: 1 });
    const broke = Wallet.createRandom().connect(provider);
    const raw = await broke.sendTransaction({ to: broke.address, value: 1n, gasLimit: 21_000n, gasPrice: 10n ** 9n, nonce: 0, chainId: 31337n, type: 0 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((raw as Error).message).to.include("could not coalesce error"); // what the issue saw
    const named = toChainError(raw, "relaying a settlement");
    expect(named.code).to.equal("INSUFFICIENT_FUNDS");
    expect(named.message).to.include(broke.address).and.include("too little ETH").and.not.include("coalesce");
    provider.destroy();
  });

  it("gives the node's own message, not ethers' 'could not coalesce error', for anything else it cannot place", function () {
    const raw = makeError("could not coalesce error", "UNKNOWN_ERROR", {
      error: { code: -32000, message: "header not found" },
      payload: { method: "eth_call", params: [], id: 1, jsonrpc: "2.0" },
    });
    const named = toChainError(raw, "reading the vault");
    expect([named.code, named.message]).to.deep.equal(["CHAIN_ERROR", "reading the vault: header not found"]);
  });
});
