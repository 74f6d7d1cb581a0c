import { type JsonRpcProvider, Wallet, parseEther } from "ethers";
import { startLocalChain, LOCAL_FUNDER_KEY, type LocalChain } from "../../scripts/lib/local-chain";

export { startLocalChain, type LocalChain };

/** A throwaway funded account on the local chain (ETH and MYST from Hardhat's account #0). */
export async function fundedWallet(chain: LocalChain, provider: JsonRpcProvider): Promise<Wallet> {
  const wallet = new Wallet(Wallet.createRandom().privateKey, provider);
  await chain.fund([wallet.address], { eth: parseEther("10"), myst: parseEther("100") });
  return wallet;
}

export { LOCAL_FUNDER_KEY };
