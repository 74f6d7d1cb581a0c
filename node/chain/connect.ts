import { JsonRpcProvider, Network } from "ethers";
import {
  IdentityRegistry__factory,
  MystToken__factory,
  ConsumerVault__factory,
  type ConsumerVault,
  type IdentityRegistry,
  type MystToken,
} from "../../typechain-types";
import type { Deployment } from "./deployment";
import { ChainError } from "./errors";
import { rpcRequest } from "./rpc-request";

/** A live connection to the chain the contracts of `deployment` are on. */
export interface ChainConnection {
  provider: JsonRpcProvider;
  chainId: bigint;
  deployment: Deployment;
  registry: IdentityRegistry;
  vault: ConsumerVault;
  token: MystToken;
  close(): void;
}

export interface ConnectChainOptions {
  rpcUrl: string;
  deployment: Deployment;
  /** How long to wait for the node's first answer. Default 5 s. */
  timeoutMs?: number;
  /** How often to poll for new blocks and events. Default 500 ms. */
  pollingIntervalMs?: number;
  /** How long any one call may wait for the node's answer. Default 15 s (ethers' own is 5 min). */
  requestTimeoutMs?: number;
}

/**
 * Connects and checks that the chain is the one the deployment names and that the registry is
 * really there: a restarted local chain with a stale deployment file fails here, clearly.
 */
export async function connectChain(options: ConnectChainOptions): Promise<ChainConnection> {
  const { rpcUrl, deployment } = options;
  const chainId = await probeChainId(rpcUrl, options.timeoutMs ?? 5000);
  if (chainId !== BigInt(deployment.chainId)) {
    throw new ChainError(
      "CHAIN_MISMATCH",
      `the chain at ${rpcUrl} has id ${chainId}, but the deployment (${deployment.network}) is for chain ${deployment.chainId}`,
    );
  }
  // A node that accepts and never answers must not hang a settlement, a shutdown or a promise.
  const request = rpcRequest(rpcUrl, options.requestTimeoutMs ?? 15_000);
  const provider = new JsonRpcProvider(request, Network.from(chainId), {
    staticNetwork: Network.from(chainId),
    pollingInterval: options.pollingIntervalMs ?? 500,
    // ethers shares identical calls made within 250 ms by default, which hands out stale nonces
    // and receipts; the node's calls are few, so it asks every time.
    cacheTimeout: -1,
  });
  const code = await provider.getCode(deployment.contracts.IdentityRegistry);
  if (code === "0x") {
    provider.destroy();
    throw new ChainError(
      "NO_CONTRACT",
      `no IdentityRegistry at ${deployment.contracts.IdentityRegistry} on chain ${chainId}: ` +
        "the deployment file does not match this chain (restarted a local chain? deploy again)",
    );
  }
  return {
    provider,
    chainId,
    deployment,
    registry: IdentityRegistry__factory.connect(deployment.contracts.IdentityRegistry, provider),
    vault: ConsumerVault__factory.connect(deployment.contracts.ConsumerVault, provider),
    token: MystToken__factory.connect(deployment.contracts.MystToken, provider),
    close: () => provider.destroy(),
  };
}

async function probeChainId(rpcUrl: string, timeoutMs: number): Promise<bigint> {
  let response: Response;
  try {
    response = await fetch(rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new ChainError("CHAIN_UNREACHABLE", `cannot reach the chain at ${rpcUrl} (is the node running?)`, { cause: err });
  }
  let body: { result?: string };
  try {
    body = (await response.json()) as { result?: string };
  } catch (err) {
    throw new ChainError("CHAIN_UNREACHABLE", `${rpcUrl} is not an Ethereum JSON-RPC endpoint`, { cause: err });
  }
  if (typeof body.result !== "string") throw new ChainError("CHAIN_UNREACHABLE", `${rpcUrl} did not return a chain id`);
  return BigInt(body.result);
}
