import { expect } from "chai";
import path from "node:path";
import { Wallet, parseEther } from "ethers";
import { connectChain, type ChainConnection } from "../../../node/chain/connect";
import { ConsumerVaultClient, pairIdOf } from "../../../node/chain/vault";
import type { IdentityKey } from "../../../node/identity/key";
import { VaultStateCache } from "../../../node/payments/vault-cache";
import { ProviderPayments } from "../../../node/payments/provider-payments";
import { Settler } from "../../../node/payments/settlement";
import type { ProviderSessions } from "../../../node/session/provider";
import { openDatabase, type Db } from "../../../node/store/database";
import { PromiseStore } from "../../../node/store/promise-store";
import { until } from "../../../scripts/lib/until";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { ChainProxy } from "../../support/rpc-proxy";
import { tempDir } from "../../../scripts/lib/tmp";

const E = parseEther;

describe("settlement: one queue per provider account (real chain)", function () {
  const net = new TestNetwork();
  let vault: ConsumerVaultClient;
  let tmp: ReturnType<typeof tempDir>;
  let db: Db;
  let store: PromiseStore;
  const closers: (() => unknown)[] = [];

  before(async function () {
    await net.start();
    vault = new ConsumerVaultClient(net.conn);
  });
  after(async () => net.stop());
  beforeEach(() => {
    tmp = tempDir();
    db = openDatabase(path.join(tmp.dir, "provider.db"));
    store = new PromiseStore(db);
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    db.close();
    tmp.cleanup();
  });

  /** A provider with `n` consumers, each with `deposit` in its vault (one funder deposits for all). */
  async function providerWithVaults(n: number, deposit = E("1"), options: { providerEth?: boolean } = {}) {
    const provider = await net.registeredIdentity();
    const consumers: IdentityKey[] = [];
    for (let i = 0; i < n; i++) consumers.push(await net.registeredIdentity());
    const funder = await net.registeredIdentity();
    await net.chain.fund(options.providerEth === false ? [funder.address] : [provider.address, funder.address], { eth: E("10"), myst: E("1000") });
    for (const c of consumers) await vault.deposit(funder, c.address, deposit, 0n);
    return { provider, consumers };
  }

  /** Stores a promise of `consumer` to `provider`, as the provider does once it verified it. */
  function storePromise(consumer: IdentityKey, provider: IdentityKey, amount: bigint, signer: IdentityKey = consumer) {
    const signature = "0x" + Buffer.from(vault.signPromise(signer, provider.address, amount)).toString("hex");
    store.save({
      pairId: pairIdOf(consumer.address, provider.address),
      consumer: consumer.address,
      provider: provider.address,
      sessionId: `s-${consumer.address}`,
      amount,
      increase: amount,
      signature,
      receivedAt: Date.now(),
    });
  }

  function settlerFor(provider: IdentityKey, conn: ChainConnection = net.conn, client = vault) {
    const settler = new Settler(store, client, new Wallet(provider.privateKeyHex(), conn.provider), { retryMs: 200, maxRetryMs: 1000 });
    closers.push(() => settler.stop());
    return settler;
  }

  it("settles 50 pairs whose sessions end together, in batches, without a nonce collision", async function () {
    const { provider, consumers } = await providerWithVaults(50);
    consumers.forEach((c, i) => storePromise(c, provider, E("0.01") * BigInt(i + 1)));
    const settler = settlerFor(provider);
    let failures = 0;
    settler.on("settlement-failed", () => failures++);
    // As 50 "session-ended" events in a row would.
    for (const c of consumers) settler.settlePair(pairIdOf(c.address, provider.address));
    expect(await settler.drain(120_000)).to.equal(true);
    for (const [i, c] of consumers.entries()) {
      expect((await vault.pair(c.address, provider.address)).settled).to.equal(E("0.01") * BigInt(i + 1));
    }
    expect(failures).to.equal(0);
    const mined = store.settlements().filter((s) => s.status === "mined");
    expect(mined).to.have.length(50);
    // Batches of at most 20 promises: 50 pairs queued together take 3 transactions.
    expect(new Set(mined.map((s) => s.txHash)).size).to.equal(3);
    expect(settler.pending()).to.deep.equal([]);
    expect(await vault.earnings(provider.address)).to.equal(consumers.reduce((sum, _c, i) => sum + E("0.01") * BigInt(i + 1), 0n));
  });

  it("pays the credited earnings out to the beneficiary on request", async function () {
    const { provider, consumers } = await providerWithVaults(2);
    consumers.forEach((c) => storePromise(c, provider, E("0.2")));
    const settler = settlerFor(provider);
    settler.settleAll();
    expect(await settler.drain(30_000)).to.equal(true);
    const before = await vault.tokenBalance(provider.address);
    const paid = await settler.payOut(provider.address);
    expect(paid?.amount).to.equal(E("0.4"));
    expect(await vault.tokenBalance(provider.address)).to.equal(before + E("0.4"));
    expect(await settler.payOut(provider.address)).to.equal(null);
  });

  it("settles through a relayer for a provider that holds no ETH, and records the relayer's fee", async function () {
    const { provider, consumers } = await providerWithVaults(3, E("1"), { providerEth: false });
    consumers.forEach((c) => storePromise(c, provider, E("0.5")));
    const relayer = await net.registeredIdentity();
    await net.chain.fund([relayer.address], { eth: E("1"), myst: 0n });
    const settler = new Settler(store, vault, new Wallet(relayer.privateKeyHex(), net.conn.provider), {
      relay: { provider, maxFeeWei: E("0.03") },
      retryMs: 200,
    });
    closers.push(() => settler.stop());
    const settled: bigint[] = [];
    settler.on("settled", (s) => settled.push(s.fee));
    settler.settleAll();
    expect(await settler.drain(30_000)).to.equal(true);
    expect(await net.conn.provider.getBalance(provider.address)).to.equal(0n);
    expect(new Set(store.settlements().map((s) => s.txHash)).size, "one relayed batch").to.equal(1);
    expect(await vault.tokenBalance(relayer.address)).to.equal(E("0.03"));
    // The provider's beneficiary (itself) got the rest at once: no payout transaction needed.
    expect(await vault.tokenBalance(provider.address)).to.equal(E("1.5") - E("0.03"));
    const fees = store
      .settlements()
      .filter((s) => s.status === "mined")
      .reduce((sum, s) => sum + (s.fee ?? 0n), 0n);
    expect(fees).to.equal(E("0.03"));
    expect(settled.reduce((a, b) => a + b, 0n)).to.equal(E("0.03"));
  });

  it("keeps retrying through a chain outage and settles once the chain answers again", async function () {
    const { provider, consumers } = await providerWithVaults(3);
    consumers.forEach((c) => storePromise(c, provider, E("0.5")));
    const proxy = new ChainProxy(net.chain.rpcUrl);
    await proxy.start();
    closers.push(() => proxy.stop());
    const conn = await connectChain({ rpcUrl: proxy.url, deployment: net.chain.deployment, requestTimeoutMs: 2000 });
    closers.push(() => conn.close());
    const settler = settlerFor(provider, conn, new ConsumerVaultClient(conn));
    proxy.link = "down";
    settler.settleAll();
    // Well past the old ~7 s of retries: every pair is still being retried.
    await until(() => settler.pending().every((p) => p.state === "retrying" && p.attempts >= 3), "three failed attempts per pair", 30_000);
    expect(settler.pending()).to.have.length(3);
    expect(settler.pending()[0].lastError).to.match(/did not answer|CHAIN|ECONN|socket/i);
    proxy.link = "up";
    expect(await settler.drain(60_000)).to.equal(true);
    for (const c of consumers) expect((await vault.pair(c.address, provider.address)).settled).to.equal(E("0.5"));
  });

  it("reports a settlement the chain refuses for good and does not retry it", async function () {
    const { provider, consumers } = await providerWithVaults(1);
    const forger = await net.registeredIdentity();
    storePromise(consumers[0], provider, E("0.3"), forger); // signed by someone else: the contract reverts
    const settler = settlerFor(provider);
    const rejected = new Promise<{ error: string }>((resolve) => settler.once("settlement-rejected", resolve));
    settler.settleAll();
    expect((await rejected).error).to.match(/PromiseSignatureInvalid/);
    expect(await settler.drain(5_000)).to.equal(true); // a rejected settlement does not keep the queue busy
    const [pending] = settler.pending();
    expect(pending).to.include({ state: "rejected", attempts: 1 });
    await new Promise((r) => setTimeout(r, 1500)); // longer than every retry delay of this settler
    expect(settler.pending()[0].attempts).to.equal(1);
    expect((await vault.pair(consumers[0].address, provider.address)).settled).to.equal(0n);
  });

  it("waits for a top-up of an empty vault, and settles as soon as the deposit's event arrives", async function () {
    const { provider, consumers } = await providerWithVaults(1, E("0.1"));
    const consumer = consumers[0];
    storePromise(consumer, provider, E("0.1"));
    const settler = settlerFor(provider);
    settler.settleAll();
    expect(await settler.drain(30_000)).to.equal(true);
    // The provider node's wiring: a vault's event wakes a settlement waiting for a top-up.
    const cache = new VaultStateCache(vault, {
      onChange: (consumer) => {
        for (const p of settler.pending())
          if (p.consumer.toLowerCase() === consumer && p.state === "waiting-top-up") settler.settlePair(p.pairId, { now: true });
      },
    });
    cache.start(100);
    closers.push(() => cache.stop());
    storePromise(consumer, provider, E("0.4"));
    settler.settleAll();
    await until(() => settler.pending()[0]?.state === "waiting-top-up", "the empty vault noticed");
    await net.chain.fund([consumer.address], { eth: E("1"), myst: E("10") });
    await vault.deposit(consumer, consumer.address, E("1"), 0n);
    await until(async () => (await vault.pair(consumer.address, provider.address)).settled === E("0.4"), "the settlement after the top-up (no manual step)");
    await until(
      () => settler.pending().length === 0,
      `the settlement recorded (pending: ${JSON.stringify(settler.pending(), (_k, v) => (typeof v === "bigint" ? String(v) : v))})`,
      5000,
    );
  });

  describe("the fee rule, with a relayer whose fee is paid per transaction", function () {
    /** The provider's payments policy over a relayed settler: 0.005 MYST per transaction, settle when that is at most 1%. */
    async function relayedPolicy(n: number) {
      const { provider, consumers } = await providerWithVaults(n, E("1"), { providerEth: false });
      const relayer = await net.registeredIdentity();
      await net.chain.fund([relayer.address], { eth: E("10"), myst: 0n });
      const settler = new Settler(store, vault, new Wallet(relayer.privateKeyHex(), net.conn.provider), {
        relay: { provider, maxFeeWei: E("0.005") },
        retryMs: 200,
      });
      closers.push(() => settler.stop());
      const payments = new ProviderPayments({
        // The rule reads the store, the settler and the cached vaults only; no session takes part here.
        sessions: {} as ProviderSessions,
        vaults: new VaultStateCache(vault),
        store,
        settler,
        usage: () => undefined,
        maxUnpaid: E("0.5"),
        minVaultBalance: 0n,
        minEscrow: 0n,
        exposurePercentOfEscrow: 50,
        maxExposure: E("1000"),
        settleThreshold: E("1000"),
        settleFeePercent: 1,
        settlementFeeWei: E("0.005"),
      });
      const fees = () =>
        store
          .settlements()
          .filter((s) => s.status === "mined")
          .reduce((sum, s) => sum + (s.fee ?? 0n), 0n);
      const settled = async () => {
        let sum = 0n;
        for (const c of consumers) sum += (await vault.pair(c.address, provider.address)).settled;
        return sum;
      };
      return { provider, consumers, relayer, settler, payments, fees, settled };
    }

    it("counts one fee per transaction of 20 pairs: 50 pairs worth one fee are not sent in three", async function () {
      const { provider, consumers, relayer, settler, payments, fees, settled } = await relayedPolicy(50);
      // 1 MYST unsettled in all: one fee (0.005) is 0.5% of it, but 50 pairs take 3 transactions (1.5%),
      // and even the largest 20 (0.4 MYST) would pay 1.25% for theirs.
      consumers.forEach((c) => storePromise(c, provider, E("0.02")));
      payments.settleByPolicy();
      expect(await settler.drain(60_000)).to.equal(true);
      // 40 pairs grow to 0.03 MYST: a transaction of 20 of them carries 0.6 MYST, its fee 0.83%; the
      // 10 others (0.2 MYST) would pay 2.5% for their own transaction and wait.
      consumers.slice(0, 40).forEach((c) => storePromise(c, provider, E("0.03")));
      payments.settleByPolicy();
      expect(await settler.drain(60_000)).to.equal(true);
      const paid = await settled();
      const feesPaid = fees();
      expect(await vault.tokenBalance(relayer.address)).to.equal(feesPaid);
      expect(feesPaid * 100n, `${feesPaid} wei of fees for ${paid} wei settled`).to.be.at.most(paid);
      expect(paid).to.equal(E("1.2"));
      const transactions = new Set(store.settlements().flatMap((s) => (s.status === "mined" ? [s.txHash] : [])));
      expect(transactions.size, "transactions").to.equal(2);
    });
  });
});
