import path from "node:path";
import { readDeployment } from "../node/chain/deployment";
import { fundAccounts } from "./lib/local-chain";

/**
 * Funds addresses on the local chain with 10 ETH and 1000 MYST each, from Hardhat's account #0.
 *   npm run chain:fund -- 0xADDRESS [0xADDRESS…]
 * Uses deployments/localhost.json (or MYST_DEPLOYMENT) and MYST_RPC_URL (default 127.0.0.1:8545).
 */
async function main() {
  const addresses = process.argv.slice(2);
  const bad = addresses.filter((a) => !/^0x[0-9a-fA-F]{40}$/.test(a));
  if (addresses.length === 0 || bad.length) {
    console.error(`chain:fund: ${bad.length ? `not an address: ${bad.join(", ")}` : "give at least one address"}\nusage: npm run chain:fund -- 0xADDRESS…`);
    process.exit(2);
  }
  const deployment = readDeployment(process.env.MYST_DEPLOYMENT ?? path.resolve(__dirname, "..", "deployments", "localhost.json"));
  await fundAccounts(process.env.MYST_RPC_URL ?? "http://127.0.0.1:8545", deployment, addresses);
  for (const a of addresses) console.log(`funded ${a} with 10 ETH and 1000 MYST`);
}

main().catch((err) => {
  console.error(`chain:fund: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
