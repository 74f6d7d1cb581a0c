import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { JsonRpcProvider, Wallet, parseEther } from "ethers";
import { readDeployment, type Deployment } from "../../node/chain/deployment";
import { rpcRequest } from "../../node/chain/rpc-request";
import { otherProcessAlive } from "../../node/lifecycle/process";
import { parentDeathSignal, terminate } from "../../node/services/supervision";

/** Stops a child we started, by its PID: TERM, then KILL if it lingers. */
export { terminate as stopChild };
import { MystToken__factory } from "../../typechain-types";
import { waitForOutput } from "./until";

const ROOT = path.resolve(__dirname, "..", "..");
const HARDHAT_CLI = require.resolve("hardhat/internal/cli/cli", { paths: [ROOT] });
/** Hardhat's well-known account #0: holds ETH and, after deployment, the whole MYST supply. */
export const LOCAL_FUNDER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

export interface LocalChain {
  rpcUrl: string;
  deployment: Deployment;
  deploymentFile: string;
  pid: number;
  /** Sends ETH and MYST from the funder account to each address. */
  fund(addresses: string[], amounts?: { eth?: bigint; myst?: bigint }): Promise<void>;
  stop(): Promise<void>;
}

export interface LocalChainOptions {
  /** Default: a free port. */
  port?: number;
  /** Where the deployment file goes. Default: a temporary directory. */
  deploymentFile?: string;
  challengePeriod?: bigint;
  log?: (line: string) => void;
  /** The node dies with this process (a parent-death signal): for a chain kept for the process's whole life. */
  dieWithParent?: boolean;
}

/** Starts `hardhat node` on 127.0.0.1, deploys the contracts with Ignition, and returns a handle. */
export async function startLocalChain(options: LocalChainOptions = {}): Promise<LocalChain> {
  const port = options.port ?? (await freePort());
  const rpcUrl = `http://127.0.0.1:${port}`;
  const deploymentFile = options.deploymentFile ?? path.join(fs.mkdtempSync(path.join(os.tmpdir(), "myst-chain-")), "deployment.json");
  const argv = [
    ...(options.dieWithParent ? parentDeathSignal() : []),
    process.execPath,
    HARDHAT_CLI,
    "node",
    "--hostname",
    "127.0.0.1",
    "--port",
    String(port),
  ];
  const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const stop = () => terminate(child);
  try {
    await waitForOutput(child, "hardhat node", (output) => /Started HTTP and WebSocket JSON-RPC server/.test(output), 60_000);
    await runDeploy(rpcUrl, deploymentFile, options.challengePeriod, options.log);
  } catch (err) {
    await stop();
    throw err;
  }
  const deployment = readDeployment(deploymentFile);
  if (options.dieWithParent) {
    // Kept for the process's life, it must not keep the process alive.
    child.unref();
    for (const stream of [child.stdout, child.stderr]) (stream as unknown as { unref?: () => void }).unref?.();
  }
  return {
    rpcUrl,
    deployment,
    deploymentFile,
    pid: child.pid!,
    fund: (addresses, amounts) => fundAccounts(rpcUrl, deployment, addresses, amounts),
    stop,
  };
}

let processChain: Promise<LocalChain> | undefined;

/**
 * The chain of one test file: this test process's one `hardhat node`, started and deployed at the
 * first call (about 6 s of CPU each time otherwise), with a snapshot taken for the file; `stop()`
 * reverts to it, so the next file finds the chain as deployed (balances, registrations, time,
 * automining). The node itself dies with the process (by parent-death signal, or at exit).
 */
export async function testChain(): Promise<LocalChain> {
  processChain ??= startLocalChain({ dieWithParent: true }).then((chain) => {
    process.once("exit", () => void process.kill(chain.pid, "SIGTERM"));
    return chain;
  });
  let chain: LocalChain;
  try {
    chain = await processChain;
  } catch (err) {
    processChain = undefined;
    throw err;
  }
  const rpc = new JsonRpcProvider(rpcRequest(chain.rpcUrl), chain.deployment.chainId, { staticNetwork: true });
  try {
    const snapshot: string = await rpc.send("evm_snapshot", []);
    let reverted = false;
    return {
      ...chain,
      stop: async () => {
        if (reverted) return;
        reverted = true;
        const rpc = new JsonRpcProvider(rpcRequest(chain.rpcUrl), chain.deployment.chainId, { staticNetwork: true });
        try {
          await rpc.send("evm_setAutomine", [true]);
          if (!(await rpc.send("evm_revert", [snapshot]))) throw new Error(`the test chain did not revert to snapshot ${snapshot}`);
        } finally {
          rpc.destroy();
        }
      },
    };
  } finally {
    rpc.destroy();
  }
}

async function runDeploy(rpcUrl: string, file: string, challengePeriod?: bigint, log?: (line: string) => void) {
  const env: NodeJS.ProcessEnv = { ...process.env, MYST_RPC_URL: rpcUrl, MYST_DEPLOYMENT_FILE: file };
  if (challengePeriod !== undefined) env.MYST_CHALLENGE_PERIOD = String(challengePeriod);
  const child = spawn(process.execPath, [HARDHAT_CLI, "run", "scripts/deploy.ts", "--network", "localhost"], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  if (code !== 0) throw new Error(`deploying to ${rpcUrl} failed:\n${output}`);
  log?.(
    output
      .trim()
      .split("\n")
      .filter((l) => !/^Warning|tstore|^\s*[|-]|^$/.test(l))
      .join("\n"),
  );
}

export async function fundAccounts(rpcUrl: string, deployment: Deployment, addresses: string[], amounts: { eth?: bigint; myst?: bigint } = {}) {
  const provider = new JsonRpcProvider(rpcRequest(rpcUrl), deployment.chainId, { staticNetwork: true });
  try {
    const funder = new Wallet(LOCAL_FUNDER_KEY, provider);
    const token = MystToken__factory.connect(deployment.contracts.MystToken, funder);
    let nonce = await provider.getTransactionCount(funder.address, "pending");
    const txs = [];
    for (const to of addresses) {
      txs.push(await funder.sendTransaction({ to, value: amounts.eth ?? parseEther("10"), nonce: nonce++ }));
      txs.push(await token.transfer(to, amounts.myst ?? parseEther("1000"), { nonce: nonce++ }));
    }
    await Promise.all(txs.map((tx) => tx.wait()));
  } finally {
    provider.destroy();
  }
}

/**
 * Where this user's processes claim the ports freePort() hands out: one file per port, created
 * exclusively, naming its process. The kernel's next bind(0) can give a port it just gave and that
 * was closed again (measured here: once in ~10,000 back-to-back pairs), to this process or to
 * another test worker (five run at once), and two servers started on what freePort() said would
 * then collide: CI failed once on "nats-server exited with 1" that way. One directory per user: a
 * root run's claims would otherwise be another user's EACCES.
 */
const CLAIMS = path.join(os.tmpdir(), `myst-port-claims-${process.getuid?.() ?? "user"}`);
const claimed: string[] = [];
process.once("exit", () => {
  for (const file of claimed) fs.rmSync(file, { force: true });
});
let swept = false;

/**
 * A loopback TCP port no socket holds now and that no live process of this user had from
 * freePort() before: for a server another process starts. A socket bound to port 0 elsewhere can
 * still take it before that server binds; a server that can choose its own port (nats-server's
 * `-1`) should.
 */
export async function freePort(): Promise<number> {
  if (!swept) {
    fs.mkdirSync(CLAIMS, { recursive: true, mode: 0o700 });
    sweepDeadClaims();
    swept = true;
  }
  for (let tries = 0; tries < 100; tries++) {
    const port = await unboundPort();
    const file = path.join(CLAIMS, String(port));
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw new Error(`cannot claim port ${port} in ${CLAIMS}: ${(err as Error).message}`);
    }
    claimed.push(file);
    return port;
  }
  throw new Error(`no free loopback port that no live process has claimed in ${CLAIMS} (100 tries)`);
}

/**
 * Removes the claims of processes that are gone (killed before their exit handler ran). A claim is
 * never taken over while a port is drawn: two processes could both find it dead and both take it.
 * Here a claim is removed only a minute after it was made, so never one a live process just made
 * in place of a dead one's.
 */
function sweepDeadClaims(): void {
  for (const name of fs.readdirSync(CLAIMS)) {
    const file = path.join(CLAIMS, name);
    try {
      const owner = Number(fs.readFileSync(file, "utf8"));
      if (owner && !otherProcessAlive(owner) && Date.now() - fs.statSync(file).mtimeMs > 60_000) fs.rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
}

function unboundPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A throwaway funded account on the local chain (ETH and MYST from Hardhat's account #0). */
export async function fundedWallet(chain: LocalChain, provider: JsonRpcProvider): Promise<Wallet> {
  const wallet = new Wallet(Wallet.createRandom().privateKey, provider);
  await chain.fund([wallet.address], { eth: parseEther("10"), myst: parseEther("100") });
  return wallet;
}
