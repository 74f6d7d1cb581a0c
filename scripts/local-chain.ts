import path from "node:path";
import { startLocalChain } from "./lib/local-chain";

/**
 * A local chain for trying myst: starts `hardhat node` on 127.0.0.1, deploys the contracts, writes
 * deployments/localhost.json (what `myst` reads by default) and funds the given addresses with
 * 10 ETH and 1000 MYST each. Runs until Ctrl-C.
 *   npm run chain -- [--port 8545] [--fund 0xADDRESS]...
 */
async function main() {
  const args = process.argv.slice(2);
  let port = 8545;
  const funded: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = args[i + 1];
    if (arg === "--port" && value && /^\d+$/.test(value)) (port = Number(value)), i++;
    else if (arg === "--fund" && value) funded.push(value), i++;
    else {
      console.error(`local-chain: unknown or incomplete argument "${arg}"\nusage: npm run chain -- [--port N] [--fund 0xADDRESS]...`);
      process.exit(2);
    }
  }
  const chain = await startLocalChain({
    port,
    deploymentFile: path.resolve(__dirname, "..", "deployments", "localhost.json"),
    log: (l) => console.log(l),
  });
  const stop = async () => {
    await chain.stop();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  if (funded.length) {
    await chain.fund(funded);
    for (const a of funded) console.log(`funded ${a} with 10 ETH and 1000 MYST`);
  }
  console.log(`local chain ${chain.rpcUrl} (chain id ${chain.deployment.chainId}); deployment in ${chain.deploymentFile}`);
  console.log("Ctrl-C stops it.");
}

main().catch((err) => {
  console.error(`local-chain: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
