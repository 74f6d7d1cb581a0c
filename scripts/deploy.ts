import hre from "hardhat";
import { deploySystem } from "./lib/deploy-system";

/**
 * Deploys the contracts to the network given with `--network` and writes the addresses to
 * `deployments/<network>.json` (or MYST_DEPLOYMENT_FILE), which the node reads.
 *   npx hardhat run scripts/deploy.ts --network localhost
 *   MYST_TESTNET_RPC_URL=… MYST_DEPLOYER_KEY=… npx hardhat run scripts/deploy.ts --network testnet
 * Optional: MYST_CHALLENGE_PERIOD (seconds, default 86400).
 */
async function main() {
  if (hre.network.name === "testnet" && !process.env.MYST_DEPLOYER_KEY) {
    throw new Error("MYST_DEPLOYER_KEY is not set: the testnet deploy needs the funded deployer's private key (0x + 64 hex) in it");
  }
  const challengePeriod = process.env.MYST_CHALLENGE_PERIOD ? BigInt(process.env.MYST_CHALLENGE_PERIOD) : undefined;
  const { deployment, file } = await deploySystem(hre, { challengePeriod, file: process.env.MYST_DEPLOYMENT_FILE });
  console.log(`deployed to ${deployment.network} (chain ${deployment.chainId}) → ${file}`);
  for (const [name, address] of Object.entries(deployment.contracts)) console.log(`  ${name.padEnd(16)} ${address}`);
}

main().catch((err) => {
  console.error(`deploy failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
