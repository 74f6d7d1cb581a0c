import fs from "node:fs";
import path from "node:path";
import type { HardhatRuntimeEnvironment } from "hardhat/types";
import MystModule from "../../ignition/modules/Myst";
import type { Deployment } from "../../node/chain/deployment";

const LOCAL_CHAIN_ID = 31337n;

export interface DeploySystemOptions {
  challengePeriod?: bigint;
  /** Where to write the deployment file; default `deployments/<network>.json`. */
  file?: string;
}

/** Deploys the Ignition module and writes the deployment file the node reads. */
export async function deploySystem(hre: HardhatRuntimeEnvironment, options: DeploySystemOptions = {}): Promise<{ deployment: Deployment; file: string }> {
  const chainId = (await hre.ethers.provider.getNetwork()).chainId;
  // A local dev chain starts empty every time: an Ignition journal from an earlier chain would make
  // Ignition believe the contracts already exist. Such a deployment gets a journal of its own,
  // dropped once the addresses are written.
  const throwaway = chainId === LOCAL_CHAIN_ID && hre.network.name !== "hardhat";
  const deploymentId = throwaway ? `local-${process.pid}-${Date.now()}` : undefined;
  const startBlock = await hre.ethers.provider.getBlockNumber();
  const parameters: Record<string, Record<string, bigint>> = options.challengePeriod === undefined
    ? {}
    : { Myst: { challengePeriod: options.challengePeriod } };
  const { token, registry, vault } = await hre.ignition.deploy(MystModule, { parameters, deploymentId });
  const deployment: Deployment = {
    network: hre.network.name,
    chainId: Number(chainId),
    deployedAtBlock: startBlock,
    contracts: {
      MystToken: await token.getAddress(),
      IdentityRegistry: await registry.getAddress(),
      ConsumerVault: await vault.getAddress(),
    },
  };
  const file = options.file ?? path.join(hre.config.paths.root, "deployments", `${hre.network.name}.json`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(deployment, null, 2) + "\n");
  if (deploymentId) fs.rmSync(path.join(hre.config.paths.ignition, "deployments", deploymentId), { recursive: true, force: true });
  return { deployment, file };
}
