import fs from "node:fs";
import { getAddress, isAddress } from "ethers";
import { MystError } from "../errors/MystError";

/** Where the contracts of one chain live: written by `scripts/deploy.ts`, read by the node. */
export interface Deployment {
  network: string;
  chainId: number;
  /** The block the contracts were deployed at: where event scans start. */
  deployedAtBlock: number;
  contracts: {
    MystToken: string;
    IdentityRegistry: string;
    ConsumerVault: string;
  };
}

export class DeploymentFileError extends MystError {
  constructor(
    readonly file: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super("DEPLOYMENT_FILE_INVALID", `deployment file ${file}: ${reason}`, options);
  }
}

const CONTRACTS = ["MystToken", "IdentityRegistry", "ConsumerVault"] as const;

/** Reads and checks a deployment file; every problem names the file and the field. */
export function readDeployment(file: string): Deployment {
  let raw: string;
  try {
    raw = fs.readFileSync(file, "utf8");
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "not found (deploy the contracts first)" : String(err);
    throw new DeploymentFileError(file, reason, { cause: err });
  }
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch (err) {
    throw new DeploymentFileError(file, "is not JSON", { cause: err });
  }
  return parseDeployment(file, data);
}

export function parseDeployment(file: string, data: unknown): Deployment {
  if (typeof data !== "object" || data === null) throw new DeploymentFileError(file, "is not an object");
  const d = data as Record<string, unknown>;
  if (!Number.isSafeInteger(d.chainId) || (d.chainId as number) <= 0) {
    throw new DeploymentFileError(file, "chainId must be a positive integer");
  }
  const contracts = d.contracts as Record<string, unknown> | undefined;
  if (typeof contracts !== "object" || contracts === null) throw new DeploymentFileError(file, "contracts is missing");
  const checked = {} as Deployment["contracts"];
  for (const name of CONTRACTS) {
    const address = contracts[name];
    if (typeof address !== "string" || !isAddress(address)) {
      throw new DeploymentFileError(file, `contracts.${name} must be an address`);
    }
    checked[name] = getAddress(address);
  }
  return {
    network: typeof d.network === "string" ? d.network : "unknown",
    chainId: d.chainId as number,
    deployedAtBlock: Number.isSafeInteger(d.deployedAtBlock) ? (d.deployedAtBlock as number) : 0,
    contracts: checked,
  };
}
