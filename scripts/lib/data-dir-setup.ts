import path from "node:path";
import { Wallet, parseEther } from "ethers";
import { connectChain, type ChainConnection } from "../../node/chain/connect";
import { readDeployment } from "../../node/chain/deployment";
import { Registrar, RegistrationRecords } from "../../node/chain/registration";
import { IdentityRegistryClient } from "../../node/chain/registry";
import { ConsumerVaultClient } from "../../node/chain/vault";
import { Keystore } from "../../node/identity/keystore";
import type { IdentityKey } from "../../node/identity/key";

/**
 * A node's data dir made ready in this process, as `myst identities new`, `myst identities register`
 * and `myst vault deposit` leave it (the same keystore, registration record and transactions, by the
 * node's own classes): each of those commands starts a node, about 1 s of CPU, and a test file's
 * set-up ran dozens of them. The commands themselves are tested where they are the subject
 * (test/node/cli/identities.test.ts, test/e2e/vault.test.ts, the API tests).
 *
 * `env` is a spawned `myst`'s environment (cliEnv): its data dir, chain, passphrase and KDF.
 */
function keystoreOf(env: NodeJS.ProcessEnv): Keystore {
  return new Keystore({ dir: path.join(dataDirOf(env), "keystore"), lightKdf: env.MYST_LIGHT_KDF === "1" });
}

function dataDirOf(env: NodeJS.ProcessEnv): string {
  if (!env.MYST_DATA_DIR) throw new Error("the environment names no MYST_DATA_DIR");
  return env.MYST_DATA_DIR;
}

async function withChain<T>(env: NodeJS.ProcessEnv, use: (conn: ChainConnection) => Promise<T>): Promise<T> {
  if (!env.MYST_RPC_URL || !env.MYST_DEPLOYMENT) throw new Error("the environment names no MYST_RPC_URL and MYST_DEPLOYMENT");
  const conn = await connectChain({ rpcUrl: env.MYST_RPC_URL, deployment: readDeployment(env.MYST_DEPLOYMENT), pollingIntervalMs: 200 });
  try {
    return await use(conn);
  } finally {
    conn.close();
  }
}

/** The data dir's first identity, unlocked with the environment's passphrase. */
export async function unlockedIn(env: NodeJS.ProcessEnv): Promise<IdentityKey> {
  const keystore = keystoreOf(env);
  const entry = keystore.list()[0];
  if (!entry) throw new Error(`no identity in ${dataDirOf(env)}`);
  return keystore.unlock(entry.address, env.MYST_PASSPHRASE ?? "pw");
}

/** Creates an identity in `env`'s data dir, funds it and registers it on chain paying its own gas; its address. */
export async function registerIdentityIn(chain: { fund(addresses: string[]): Promise<void> }, env: NodeJS.ProcessEnv): Promise<string> {
  const { address } = await keystoreOf(env).create(env.MYST_PASSPHRASE ?? "pw");
  await chain.fund([address]);
  const key = await unlockedIn(env);
  await withChain(env, async (conn) => {
    const registry = new IdentityRegistryClient(conn);
    const registrar = new Registrar(conn, registry, new RegistrationRecords(path.join(dataDirOf(env), "registrations")));
    const status = await registrar.register(key, { submitter: new Wallet(key.privateKeyHex(), conn.provider), timeoutMs: 30_000 });
    if (status.state !== "registered") throw new Error(`registering ${address} failed: ${JSON.stringify(status)}`);
  });
  return address;
}

/** Deposits `amount` and `escrow` MYST into the vault of `env`'s identity, from its own tokens. */
export async function depositIn(env: NodeJS.ProcessEnv, amount: string, escrow: string): Promise<void> {
  const key = await unlockedIn(env);
  await withChain(env, (conn) => new ConsumerVaultClient(conn).deposit(key, key.address, parseEther(amount), parseEther(escrow)));
}
