import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseEther, Wallet } from "ethers";
import { DialogsPool } from "../../scripts/lib/dialogs-pool";
import { ConsumerVaultClient, pairIdOf } from "../../node/chain/vault";
import type { Dialogs } from "../../node/dialog/dialogs";
import type { IdentityKey } from "../../node/identity/key";
import { ProviderPayments } from "../../node/payments/provider-payments";
import { Settler } from "../../node/payments/settlement";
import { VaultStateCache } from "../../node/payments/vault-cache";
import type { Proposal } from "../../node/proposal/proposal";
import { checkServiceSpec } from "../../node/services/catalog";
import { ProviderSessions } from "../../node/session/provider";
import { openDatabase, type Db } from "../../node/store/database";
import { PromiseStore } from "../../node/store/promise-store";
import { makeProposal } from "../../scripts/lib/proposals";
import { startHostedProvider, type HostedProvider } from "../../scripts/lib/provider-host";
import type { TestNetwork } from "../../scripts/lib/test-network";
import { topologyUp, type Topology } from "../../scripts/lib/topology";
import { within } from "../../scripts/lib/until";

/**
 * What the tunnel service e2e files (openvpn-service, wireguard-service) share: the chain and
 * broker, a topology with two consumers, a provider identity with its service run as its own user
 * with only the capabilities its type declares (scripts/lib/provider-host.ts), and the provider's
 * sessions answering with `current`.
 */
export interface HostedServiceRig {
  readonly topology: Topology;
  readonly dir: string;
  readonly providerKey: IdentityKey;
  readonly consumerKeys: IdentityKey[];
  readonly service: HostedProvider;
  readonly providerSessions: ProviderSessions;
  /** The proposal the provider's sessions answer with; a test may replace it (a price, say). */
  current: Proposal;
  /** Dialogs for `key` on a broker connection of their own, stopped with the rig. */
  dialogsFor(key: IdentityKey, subject?: string): Promise<Dialogs>;
  /** Stops all of it, the network too; safe after a start that failed halfway. */
  stop(): Promise<void>;
}

export interface HostedServiceOptions {
  type: "openvpn" | "wireguard";
  /** The service's settings for its type (`openvpn: {...}` or `wireguard: {...}` of the spec), given the topology. */
  settings(topology: Topology): Record<string, unknown>;
  /** The hosted provider's uid (one per file, so two files never share a user). */
  uid: number;
  /** The temporary directory's name prefix. */
  dirPrefix: string;
  logFile?: string;
}

/** Starts `net` and the whole rig on it; on a failure stops what it had started, then throws. */
export async function startHostedServiceRig(net: TestNetwork, o: HostedServiceOptions): Promise<HostedServiceRig> {
  const pool = new DialogsPool(net);
  const parts: Partial<{ topology: Topology; service: HostedProvider; providerSessions: ProviderSessions }> = {};
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), o.dirPrefix));
  const { dialogsFor } = pool;
  const stop = async () => {
    await parts.providerSessions?.stop();
    await pool.stop();
    await parts.service?.stop();
    await parts.topology?.down();
    await net.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // Each step bounded, so a rig that hangs says where (one hung once in CI with no word of which step).
  try {
    await within(net.start(), "the rig's chain and broker (net.start)", 45_000);
    const providerKey = await within(net.registeredIdentity(), "the rig's provider registration", 30_000);
    const consumerKeys = [
      await within(net.registeredIdentity(), "the rig's first consumer registration", 30_000),
      await within(net.registeredIdentity(), "the rig's second consumer registration", 30_000),
    ];
    const topology = (parts.topology = await within(topologyUp({ consumers: 2 }), "the rig's namespaces (topologyUp)", 45_000, (t) => t.down()));
    const service = (parts.service = await within(
      startHostedProvider({
        netns: topology.provider,
        spec: checkServiceSpec({ type: o.type, [o.type]: o.settings(topology) }),
        dir,
        uid: o.uid,
        directory: net.registry,
        meterMs: 200,
        logFile: o.logFile,
      }),
      `the rig's ${o.type} provider service (startHostedProvider, which gives up itself after 60 s with the host's last output)`,
      90_000,
      (p) => p.stop(),
    ));
    let current = makeProposal(providerKey, { serviceType: o.type });
    const pd = await within(dialogsFor(providerKey), "the rig's provider dialogs (dialogsFor)", 30_000);
    const providerSessions = new ProviderSessions({ dialogs: pd, services: new Map([[o.type, service]]), currentProposal: () => current, keepaliveMs: 1000 });
    parts.providerSessions = providerSessions;
    providerSessions.start();
    return {
      topology,
      dir,
      providerKey,
      consumerKeys,
      service,
      providerSessions,
      get current() {
        return current;
      },
      set current(proposal) {
        current = proposal;
      },
      dialogsFor,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The provider's payments on the rig, with consumer 0 funded (10 MYST deposit, 2 in escrow); settles only when asked. */
export interface RigPayments {
  channels: ConsumerVaultClient;
  store: PromiseStore;
  settler: Settler;
  payments: ProviderPayments;
  db: Db;
  /** The provider's token balance before any of it. */
  balanceBefore: bigint;
}

/** Funds both parties, deposits for consumer 0 and starts the provider's payments: invoices every 500 ms, no settlement threshold or fee share. */
export async function startRigPayments(net: TestNetwork, rig: HostedServiceRig): Promise<RigPayments> {
  const { providerKey, consumerKeys, providerSessions, service, dir } = rig;
  const channels = new ConsumerVaultClient(net.conn);
  await net.chain.fund([providerKey.address, consumerKeys[0].address], { eth: parseEther("1"), myst: parseEther("100") });
  await channels.deposit(consumerKeys[0], consumerKeys[0].address, parseEther("10"), parseEther("2"));
  const db = openDatabase(path.join(dir, "payments.db"));
  const store = new PromiseStore(db);
  const settler = new Settler(store, channels, new Wallet(providerKey.privateKeyHex(), net.conn.provider));
  const payments = new ProviderPayments({
    sessions: providerSessions,
    vaults: new VaultStateCache(channels),
    store,
    settler,
    usage: (id) => service.usage(id),
    invoiceEveryMs: 500,
    maxUnpaid: parseEther("5"),
    minVaultBalance: 0n,
    minEscrow: 0n,
    exposurePercentOfEscrow: 50,
    maxExposure: parseEther("1"),
    settleThreshold: parseEther("1000"),
    settleFeePercent: 0,
  });
  payments.start();
  return { channels, store, settler, payments, db, balanceBefore: await channels.tokenBalance(providerKey.address) };
}

/**
 * After the session ended: whatever the fee rule settled meanwhile, the last promise (sent as the
 * session ended) is settled now, the chain holds the latest promise's amount, and the provider's
 * withdrawal pays exactly that out.
 */
export async function expectSettledAndPaidOut(net: TestNetwork, rig: HostedServiceRig, p: RigPayments): Promise<void> {
  const { providerKey, consumerKeys } = rig;
  p.settler.settleAll();
  expect(await p.settler.drain(60_000)).to.equal(true);
  const settled = (await p.channels.pair(consumerKeys[0].address, providerKey.address)).settled;
  expect(settled).to.equal(p.store.latest(pairIdOf(consumerKeys[0].address, providerKey.address))!.amount);
  // Credited in the vault at settlement; paid out to the provider's beneficiary on request.
  await p.channels.withdrawEarnings(new Wallet(providerKey.privateKeyHex(), net.conn.provider), providerKey.address);
  expect((await p.channels.tokenBalance(providerKey.address)) - p.balanceBefore).to.equal(settled);
}
