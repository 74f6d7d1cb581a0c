import { expect } from "chai";
import path from "node:path";
import { Wallet, parseEther } from "ethers";
import { Broker } from "../../../node/broker/broker";
import { connectChain } from "../../../node/chain/connect";
import { ConsumerVaultClient, pairIdOf } from "../../../node/chain/vault";
import { Dialogs, peerCodeOf } from "../../../node/dialog/dialogs";
import { PAYMENT_PROMISE } from "../../../node/payments/messages";
import { storeCheck } from "../../../node/store/errors";
import { IdentityKey } from "../../../node/identity/key";
import { VaultStateCache } from "../../../node/payments/vault-cache";
import { ConsumerPayments } from "../../../node/payments/consumer-payments";
import { ConsumerPromises } from "../../../node/payments/consumer-promises";
import { GIB } from "../../../node/payments/price";
import { PromiseRejected, verifyPromise } from "../../../node/payments/promise";
import { ProviderPayments } from "../../../node/payments/provider-payments";
import { Settler } from "../../../node/payments/settlement";
import { NoopConsumerService, NoopProviderService, type NoopTunnel } from "../../../node/services/noop/noop";
import { ConsumerSessions } from "../../../node/session/consumer";
import type { ConsumerSession } from "../../../node/session/consumer-session";
import { ProviderSessions, type ProviderSession } from "../../../node/session/provider";
import { openDatabase } from "../../../node/store/database";
import { IssuedPromiseStore } from "../../../node/store/issued-promise-store";
import { PromiseStore } from "../../../node/store/promise-store";
import { signProposal } from "../../../node/proposal/proposal";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { makeProposal } from "../../../scripts/lib/proposals";
import { rejectionOf } from "../../support/rejection";
import { ChainProxy } from "../../support/rpc-proxy";
import { tempDir } from "../../../scripts/lib/tmp";
import { until } from "../../../scripts/lib/until";

const E = parseEther;
const MiB = 1 << 20;

describe("payments: invoices, promises and settlement (real chain, real NATS, no-op tunnel)", function () {
  const net = new TestNetwork();
  let vault: ConsumerVaultClient;
  let tmp: ReturnType<typeof tempDir>;

  before(async function () {
    await net.start();
    vault = new ConsumerVaultClient(net.conn);
  });
  after(async () => net.stop());
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  /**
   * A provider and a consumer with 10 MYST and 2 MYST of escrow in its vault, on a price of 1 MYST
   * per GiB. By default the fee rule never settles during a session (a fee of 1 MYST, at most 1%).
   */
  async function market(
    options: {
      pay?: boolean;
      maxUnpaid?: bigint;
      settleOnSessionEnd?: boolean;
      minVaultBalance?: bigint;
      minEscrow?: bigint;
      deposit?: bigint;
      escrow?: bigint;
      settlementFeeWei?: bigint;
      settleFeePercent?: number;
      invoiceEveryMs?: number;
      invoiceAboveWei?: bigint;
      chainProxy?: ChainProxy;
    } = {},
  ) {
    const providerKey = await net.registeredIdentity();
    const consumerKey = await net.registeredIdentity();
    await net.chain.fund([providerKey.address, consumerKey.address], { eth: E("1"), myst: E("100") });
    const deposit = options.deposit ?? E("10");
    const escrow = options.escrow ?? E("2");
    if (deposit + escrow > 0n) await vault.deposit(consumerKey, consumerKey.address, deposit, escrow);

    const brokers = [new Broker({ servers: [net.nats.url] }), new Broker({ servers: [net.nats.url] })];
    await Promise.all(brokers.map((b) => b.start()));
    const pd = new Dialogs({ broker: brokers[0], key: providerKey, directory: net.registry });
    const cd = new Dialogs({ broker: brokers[1], key: consumerKey, directory: net.registry, subject: `myst.dialog.pc-${consumerKey.address}` });
    const service = new NoopProviderService();
    const proposal = makeProposal(providerKey, { price: { perHour: "0", perGiB: E("1").toString() } });
    const db = openDatabase(path.join(tmp.dir, "provider.db"));
    const store = new PromiseStore(db);
    const settler = new Settler(store, vault, new Wallet(providerKey.privateKeyHex(), net.conn.provider), { retryMs: 100 });
    // The admission check is the payments policy's, made below (late-bound).
    const sessions: ProviderSessions = new ProviderSessions({
      dialogs: pd,
      services: new Map([["noop", service]]),
      currentProposal: () => proposal,
      keepaliveMs: 1000,
      admission: (request) => payments.admission(request),
    });
    // The provider's view of the chain; through a proxy when the test takes the chain away.
    const providerConn = options.chainProxy
      ? await connectChain({ rpcUrl: options.chainProxy.url, deployment: net.chain.deployment, requestTimeoutMs: 1000 })
      : undefined;
    // Follows the vault's events, as the provider node does (a deposit, an exit).
    const vaults = new VaultStateCache(providerConn ? new ConsumerVaultClient(providerConn) : vault);
    vaults.start(200);
    const payments: ProviderPayments = new ProviderPayments({
      sessions,
      vaults,
      store,
      settler,
      usage: (id) => service.usage(id),
      brokerUp: () => pd.connected,
      invoiceEveryMs: options.invoiceEveryMs ?? 100,
      invoiceAboveWei: options.invoiceAboveWei,
      maxUnpaid: options.maxUnpaid ?? E("0.5"),
      minVaultBalance: options.minVaultBalance ?? E("1"),
      minEscrow: options.minEscrow ?? E("1"),
      exposurePercentOfEscrow: 50,
      maxExposure: E("1000"),
      settleThreshold: E("1000"),
      settleFeePercent: options.settleFeePercent ?? 1,
      settlementFeeWei: options.settlementFeeWei ?? E("1"),
      settleOnSessionEnd: options.settleOnSessionEnd ?? true,
    });
    await pd.start();
    await cd.start();
    sessions.start();
    payments.start();
    const consumerSessions = new ConsumerSessions(cd);
    const consumerService = new NoopConsumerService();
    // The consumer's promises per provider, shared by its sessions (kept in its own database).
    const consumerDb = openDatabase(path.join(tmp.dir, "consumer.db"));
    let promises = new ConsumerPromises(consumerKey, vault, new IssuedPromiseStore(consumerDb));
    /** The consumer node restarts: its promises are read again from its store. */
    const restartConsumer = () => (promises = new ConsumerPromises(consumerKey, vault, new IssuedPromiseStore(consumerDb)));
    const connect = async (
      o: { pay?: boolean } = {},
    ): Promise<{ session: ConsumerSession; pay: ConsumerPayments; tunnel: NoopTunnel; onProvider: ProviderSession }> => {
      const session = await consumerSessions.connect({ proposal: signProposal(providerKey, proposal), service: consumerService });
      const pay = new ConsumerPayments(session, promises, { pay: o.pay ?? options.pay });
      pay.start();
      return { session, pay, tunnel: session.tunnel as NoopTunnel, onProvider: sessions.get(session.id)! };
    };
    /** Both meters see `mib` MiB moved. */
    const move = (id: string, tunnel: NoopTunnel, mib: number, providerFactor = 1) => {
      tunnel.bytes = { bytesIn: mib * MiB, bytesOut: 0 };
      service.meter.set(id, { bytesIn: 0, bytesOut: Math.round(mib * MiB * providerFactor) });
    };
    const stop = async () => {
      payments.stop();
      await vaults.stop();
      await sessions.stop();
      pd.stop();
      cd.stop();
      await Promise.all(brokers.map((b) => b.stop()));
      settler.stop();
      providerConn?.close();
      db.close();
      consumerDb.close();
    };
    return { providerKey, consumerKey, service, store, settler, sessions, payments, connect, move, stop, db, proposal, restartConsumer };
  }

  it("pays promises at the cadence, and the provider settles exactly the last one on chain", async function () {
    const m = await market();
    try {
      const { session, pay, tunnel } = await m.connect();
      const before = await vault.tokenBalance(m.providerKey.address);
      for (const mib of [100, 200, 300]) {
        m.move(session.id, tunnel, mib);
        await until(() => pay.acknowledged === (BigInt(mib * MiB) * E("1")) / GIB, `a promise for ${mib} MiB`);
      }
      const last = m.store.latest(pairIdOf(m.consumerKey.address, m.providerKey.address))!;
      expect(last.amount).to.equal((300n * BigInt(MiB) * E("1")) / GIB);
      expect(pay.invoices).to.be.greaterThanOrEqual(3);
      await session.destroy();
      await until(async () => (await vault.pair(m.consumerKey.address, m.providerKey.address)).settled === last.amount, "the settlement");
      // Credited in the vault; paid out to the beneficiary on request.
      expect(await vault.earnings(m.providerKey.address)).to.equal(last.amount);
      expect(await m.settler.payOut(m.providerKey.address)).to.include({ amount: last.amount });
      expect((await vault.tokenBalance(m.providerKey.address)) - before).to.equal(last.amount);
      const state = await vault.vault(m.consumerKey.address);
      expect(state.balance).to.equal(E("10") - last.amount);
      expect(m.store.settlements().filter((s) => s.status === "mined")).to.have.length(1);
    } finally {
      await m.stop();
    }
  });

  it("invoices as soon as the amount due passes the trigger, before the period is over", async function () {
    const m = await market({ invoiceEveryMs: 3_600_000, invoiceAboveWei: E("0.05") });
    try {
      const { session, pay, tunnel } = await m.connect();
      m.move(session.id, tunnel, 10); // 0.0098 MYST: below the trigger, and the period is an hour
      await new Promise((r) => setTimeout(r, 1500));
      expect(pay.invoices).to.equal(0);
      m.move(session.id, tunnel, 100); // 0.098 MYST: above it
      await until(() => pay.acknowledged === (100n * BigInt(MiB) * E("1")) / GIB, "an invoice by amount");
      await session.destroy();
    } finally {
      await m.stop();
    }
  });

  it("cuts off a consumer that stops paying once the unpaid amount passes the limit", async function () {
    const m = await market({ pay: false, maxUnpaid: E("0.2") });
    try {
      const { session, tunnel } = await m.connect();
      m.move(session.id, tunnel, 400); // 0.39 MYST due, nothing paid, limit 0.2
      expect(await session.ended).to.match(/^provider ended it: payment lagging/);
      expect(m.service.closed[0].reason).to.match(/payment lagging/);
    } finally {
      await m.stop();
    }
  });

  it("does not cut off a paying consumer whose usage jumped past the limit between two checks: it invoices at once and is paid", async function () {
    const m = await market({ maxUnpaid: E("0.2") });
    try {
      const { session, tunnel, pay } = await m.connect();
      m.move(session.id, tunnel, 400); // 0.39 MYST due at once, limit 0.2: a fast download between two checks
      await until(() => pay.acknowledged === (400n * BigInt(MiB) * E("1")) / GIB, "the burst invoiced and paid");
      await new Promise((r) => setTimeout(r, 500)); // five more checks
      expect(session.state).to.equal("active");
      expect(m.service.closed).to.have.length(0);
      await session.destroy();
    } finally {
      await m.stop();
    }
  });

  it("answers a promise it cannot store with a named code (STORE_READ_ONLY, not INTERNAL), says so in its store check, and takes it once it can write", async function () {
    const m = await market({ pay: false, maxUnpaid: E("100") });
    try {
      const { session } = await m.connect();
      const signed = new ConsumerPromises(m.consumerKey, vault).sign(m.providerKey.address, E("0.01"));
      const body = { sessionId: session.id, amount: signed.amount.toString(), signature: signed.signature };
      m.db.pragma("query_only = 1"); // the provider's disk stops taking writes
      const refused = await session.dialog.request(PAYMENT_PROMISE, body).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(peerCodeOf(refused), (refused as Error)?.message).to.equal("STORE_READ_ONLY");
      expect((refused as Error).message).to.include("store is read-only");
      expect(storeCheck(m.db).ok).to.equal(false);
      m.db.pragma("query_only = 0");
      expect(await session.dialog.request(PAYMENT_PROMISE, body)).to.deep.equal({ accepted: true, amount: signed.amount.toString() });
      expect(storeCheck(m.db).ok).to.equal(true);
      expect(m.store.latest(pairIdOf(m.consumerKey.address, m.providerKey.address))?.amount).to.equal(E("0.01"));
    } finally {
      await m.stop();
    }
  });

  it("keeps the provider's reason when it does not take a promise (its store read-only), for the consumer's status, until it takes one again", async function () {
    const m = await market({ maxUnpaid: E("100") });
    try {
      const { session, tunnel, pay } = await m.connect();
      m.db.pragma("query_only = 1");
      m.move(session.id, tunnel, 10);
      const refusal = await until(() => pay.providerRefusal, "the provider's refusal of a promise");
      expect(refusal.code).to.equal("STORE_READ_ONLY");
      expect(refusal.message).to.include("store is read-only");
      m.db.pragma("query_only = 0");
      m.move(session.id, tunnel, 20);
      await until(() => pay.providerRefusal === undefined && pay.acknowledged > 0n, "a promise taken again");
    } finally {
      await m.stop();
    }
  });

  it("sends a promise the provider did not acknowledge again when the consumer disconnects, so the provider holds all the consumer counts as spent", async function () {
    // One invoice (by amount; the period is an hour), whose promise the provider cannot store; then
    // no invoice comes again before the consumer disconnects.
    const m = await market({ maxUnpaid: E("100"), invoiceEveryMs: 3_600_000, invoiceAboveWei: E("0.005"), settleOnSessionEnd: false });
    try {
      const { session, tunnel, pay } = await m.connect();
      m.db.pragma("query_only = 1");
      m.move(session.id, tunnel, 10);
      await until(() => pay.providerRefusal, "the provider's refusal of a promise");
      expect(pay.promised).to.equal((10n * BigInt(MiB) * E("1")) / GIB);
      expect(pay.acknowledged).to.equal(0n);
      m.db.pragma("query_only = 0");
      await session.destroy();
      expect(m.store.latest(pairIdOf(m.consumerKey.address, m.providerKey.address))?.amount ?? 0n).to.equal(pay.promised);
      expect(pay.acknowledged).to.equal(pay.promised);
    } finally {
      await m.stop();
    }
  });

  /** `m`'s consumer asks for a session and is refused for its vault (PAYMENT_NOT_COVERED), in words that match `why`. */
  async function expectNotCovered(m: Pick<Awaited<ReturnType<typeof market>>, "connect">, why: RegExp): Promise<void> {
    const err = await rejectionOf(m.connect());
    expect([err.code, err.refusal]).to.deep.equal(["SESSION_REFUSED", "PAYMENT_NOT_COVERED"]);
    expect(err.message).to.match(why);
  }

  it("refuses an invoice that overcharges, and ends the session saying so", async function () {
    const m = await market();
    try {
      const { session, pay, tunnel } = await m.connect();
      m.move(session.id, tunnel, 100, 3);
      expect(await session.ended).to.match(/^invoice overcharges/);
      expect(pay.promised).to.equal(0n);
    } finally {
      await m.stop();
    }
  });

  it("pays an invoice above its meter by no more than its tunnel says may still be on the way (the proxy's windows), and refuses one above that", async function () {
    const m = await market();
    try {
      const { session, pay, tunnel } = await m.connect();
      // The provider counted 300 MiB as it sent them; 100 have reached us, and up to 250 may still be on the way.
      Object.assign(tunnel, { inFlightBytes: () => 250 * MiB });
      m.move(session.id, tunnel, 100, 3);
      await until(() => pay.acknowledged === (300n * BigInt(MiB) * E("1")) / GIB, "the invoice paid");
      expect(session.state).to.equal("active");
      // Beyond what may be on the way, it is an overcharge as before.
      m.move(session.id, tunnel, 100, 5);
      expect(await session.ended).to.match(/^invoice overcharges/);
    } finally {
      await m.stop();
    }
  });

  it("refuses a session whose vault does not cover the provider's minimum balance", async function () {
    const m = await market({ deposit: 0n });
    try {
      await expectNotCovered(m, /vault holds 0 wei/);
    } finally {
      await m.stop();
    }
  });

  it("refuses a session whose vault's escrow is below the provider's minimum", async function () {
    const m = await market({ escrow: E("0.5") });
    try {
      await expectNotCovered(m, /escrow is 500000000000000000 wei/);
    } finally {
      await m.stop();
    }
  });

  it("refuses a vault in exit, and ends a running session when its vault starts the exit", async function () {
    const m = await market({ settleOnSessionEnd: false });
    try {
      const { session, pay, tunnel } = await m.connect();
      m.move(session.id, tunnel, 100);
      await until(() => pay.acknowledged > 0n, "a promise");
      await vault.requestExit(m.consumerKey);
      expect(await session.ended).to.match(/vault started its exit/);
      // What it promised is settled at once, within the challenge period.
      await until(
        async () => (await vault.pair(m.consumerKey.address, m.providerKey.address)).settled === pay.acknowledged,
        "the settlement in the challenge period",
      );
      await expectNotCovered(m, /exit requested/);
    } finally {
      await m.stop();
    }
  });

  describe("when a consumer leaves right after a small session (exit is watched)", function () {
    /** What the chain says the pair settled. */
    const settledOf = async (m: { consumerKey: IdentityKey; providerKey: IdentityKey }) =>
      (await vault.pair(m.consumerKey.address, m.providerKey.address)).settled;

    it("settles the pair when the vault's exit is requested, whatever the fee rule, before the consumer can withdraw", async function () {
      // The fee rule would not settle 0.049 MYST (a fee of 1 MYST, at most 1%), nor does the session's end.
      const m = await market({ settleOnSessionEnd: false });
      try {
        const { session, pay, tunnel } = await m.connect();
        m.move(session.id, tunnel, 50);
        await until(() => pay.acknowledged === (50n * BigInt(MiB) * E("1")) / GIB, "the session's promise");
        await session.destroy();
        const promised = m.store.latest(pairIdOf(m.consumerKey.address, m.providerKey.address))!.amount;
        expect(promised).to.equal(pay.acknowledged);
        expect(await settledOf(m)).to.equal(0n);
        await vault.requestExit(m.consumerKey);
        const { exitReadyAt } = await vault.vault(m.consumerKey.address);
        await until(async () => (await settledOf(m)) === promised, "the provider's settlement of every stored promise, in the challenge period");
        const now = BigInt((await net.conn.provider.getBlock("latest"))!.timestamp);
        expect(now < exitReadyAt, "settled before the consumer could withdraw").to.equal(true);
        await net.conn.provider.send("evm_increaseTime", [24 * 3600]);
        await net.conn.provider.send("evm_mine", []);
        // The consumer leaves with what it did not promise; the provider was paid in full.
        const { amount } = await vault.withdraw(m.consumerKey);
        expect(amount).to.equal(E("12") - promised);
        expect(await vault.earnings(m.providerKey.address)).to.equal(promised);
      } finally {
        await m.stop();
      }
    });

    it("settles at start the pair of a consumer that requested its exit while the provider was down", async function () {
      const m = await market({ settleOnSessionEnd: false });
      let promised: bigint;
      try {
        const { session, pay, tunnel } = await m.connect();
        m.move(session.id, tunnel, 50);
        await until(() => pay.acknowledged > 0n, "the session's promise");
        promised = pay.acknowledged;
        await session.destroy();
      } finally {
        // The provider goes away with the promise stored and not settled (below its fee rule).
        await m.stop();
      }
      await vault.requestExit(m.consumerKey);
      // The provider starts again on the same store; its payments policy finds the exit that began meanwhile.
      const db = openDatabase(path.join(tmp.dir, "provider.db"));
      const store = new PromiseStore(db);
      const settler = new Settler(store, vault, new Wallet(m.providerKey.privateKeyHex(), net.conn.provider), { retryMs: 100 });
      const vaults = new VaultStateCache(vault);
      const payments = new ProviderPayments({
        sessions: m.sessions,
        vaults,
        store,
        settler,
        usage: () => undefined,
        maxUnpaid: E("0.5"),
        minVaultBalance: E("1"),
        minEscrow: E("1"),
        exposurePercentOfEscrow: 50,
        maxExposure: E("1000"),
        settleThreshold: E("1000"),
        settleFeePercent: 1,
        settlementFeeWei: E("1"),
        settleOnSessionEnd: false,
      });
      try {
        payments.start();
        await until(async () => (await settledOf(m)) === promised, "the settlement at start, in the challenge period");
        expect(await settler.drain(10_000)).to.equal(true);
        expect(store.settledAmount(pairIdOf(m.consumerKey.address, m.providerKey.address))).to.equal(promised);
      } finally {
        payments.stop();
        settler.stop();
        db.close();
      }
    });
  });

  it("settles by the fee rule: not while the fee is above the share, at once when it is below", async function () {
    // A settlement costs 0.01 MYST; settle when that is at most 5% of what is unsettled (0.2 MYST).
    const m = await market({ settlementFeeWei: E("0.01"), settleFeePercent: 5, settleOnSessionEnd: false });
    try {
      const { session, pay, tunnel } = await m.connect();
      m.move(session.id, tunnel, 100); // 0.098 MYST: the fee would be 10% of it
      await until(() => pay.acknowledged === (100n * BigInt(MiB) * E("1")) / GIB, "the first promise");
      await new Promise((r) => setTimeout(r, 1000));
      expect(m.settler.pending()).to.deep.equal([]);
      expect((await vault.pair(m.consumerKey.address, m.providerKey.address)).settled).to.equal(0n);
      m.move(session.id, tunnel, 250); // 0.244 MYST: 4.1%
      await until(() => pay.acknowledged === (250n * BigInt(MiB) * E("1")) / GIB, "the second promise");
      await until(
        async () => (await vault.pair(m.consumerKey.address, m.providerKey.address)).settled === pay.acknowledged,
        "a settlement once the fee is under 5%",
      );
      await session.destroy();
    } finally {
      await m.stop();
    }
  });

  it("ends a session once what the consumer owes beyond the settled figure passes its escrow's share", async function () {
    // Escrow 1 MYST: at most 0.6 MYST unsettled or unpaid (50% of it, but never below --max-unpaid). The chain goes away, so nothing settles.
    const proxy = new ChainProxy(net.chain.rpcUrl);
    await proxy.start();
    // (--max-unpaid 0.6 MYST: the jump below stays under it, so the exposure rule is what ends the session.)
    const m = await market({ chainProxy: proxy, escrow: E("1"), settleOnSessionEnd: false, maxUnpaid: E("0.6") });
    try {
      const { session, pay, tunnel } = await m.connect();
      m.move(session.id, tunnel, 100);
      await until(() => pay.acknowledged > 0n, "a promise while the chain answers");
      proxy.link = "down";
      m.move(session.id, tunnel, 700); // 0.68 MYST promised, none of it settled
      expect(await session.ended).to.match(/exposure to this consumer/);
    } finally {
      await m.stop();
      await proxy.stop();
    }
  });

  it("settles after a restart what it acknowledged before it", async function () {
    const m = await market({ settleOnSessionEnd: false });
    const dbFile = path.join(tmp.dir, "provider.db");
    let amount: bigint;
    try {
      const { session, pay, tunnel } = await m.connect();
      m.move(session.id, tunnel, 64);
      await until(() => pay.acknowledged > 0n, "an acknowledged promise");
      amount = pay.acknowledged;
    } finally {
      // The provider goes away with the promise acknowledged and not settled.
      await m.stop();
    }
    expect((await vault.pair(m.consumerKey.address, m.providerKey.address)).settled).to.equal(0n);
    const reopened = new PromiseStore(openDatabase(dbFile));
    const settler = new Settler(reopened, vault, new Wallet(m.providerKey.privateKeyHex(), net.conn.provider));
    settler.settleAll();
    expect(await settler.drain(30_000)).to.equal(true);
    expect((await vault.pair(m.consumerKey.address, m.providerKey.address)).settled).to.equal(amount);
    settler.settleAll();
    expect(await settler.drain(30_000)).to.equal(true);
    settler.stop();
    expect(reopened.settlements().filter((s) => s.status === "mined")).to.have.length(1);
  });

  it("ends no session over a 30 s NATS outage, and payment catches up after it", async function () {
    this.timeout(120_000);
    const m = await market();
    try {
      const { session, pay, tunnel, onProvider } = await m.connect();
      m.move(session.id, tunnel, 100);
      await until(() => pay.acknowledged === (100n * BigInt(MiB) * E("1")) / GIB, "the first promise");
      await net.nats.stop();
      m.move(session.id, tunnel, 300); // the tunnel carries on while the broker is gone
      await new Promise((r) => setTimeout(r, 30_000)); // the outage itself: 10 keepalive periods of the provider's 1 s
      expect(session.state, session.endReason).to.equal("active");
      expect(onProvider.state, onProvider.endReason).to.equal("active");
      await net.nats.restart();
      await until(() => pay.acknowledged === (300n * BigInt(MiB) * E("1")) / GIB, "payment for the traffic during the outage");
      expect(session.state).to.equal("active");
      expect(onProvider.state).to.equal("active");
      await session.destroy();
    } finally {
      await m.stop();
    }
  });

  it("goes on accepting promises from its cached vault state while the chain does not answer", async function () {
    const proxy = new ChainProxy(net.chain.rpcUrl);
    await proxy.start();
    const m = await market({ chainProxy: proxy, settleOnSessionEnd: false });
    try {
      const { session, pay, tunnel } = await m.connect();
      m.move(session.id, tunnel, 100);
      await until(() => pay.acknowledged === (100n * BigInt(MiB) * E("1")) / GIB, "a promise while the chain answers");
      proxy.link = "down";
      const forwarded = proxy.forwarded;
      m.move(session.id, tunnel, 250);
      await until(() => pay.acknowledged === (250n * BigInt(MiB) * E("1")) / GIB, "a promise while the chain is gone");
      expect(proxy.forwarded).to.equal(forwarded); // not one chain call got through for it
      expect(session.state).to.equal("active");
      await session.destroy();
    } finally {
      await m.stop();
      await proxy.stop();
    }
  });

  describe("one ledger per (consumer, provider) pair, across sessions", function () {
    const price = (mib: number) => (BigInt(mib * MiB) * E("1")) / GIB;

    it("bills a second session in full, continuing from the pair's figure", async function () {
      const m = await market();
      try {
        const first = await m.connect();
        m.move(first.session.id, first.tunnel, 100);
        await until(() => first.pay.acknowledged === price(100), "the first session paid");
        await first.session.destroy();
        const second = await m.connect();
        m.move(second.session.id, second.tunnel, 200);
        await until(() => second.pay.acknowledged === price(200), "the second session paid for its own 200 MiB");
        const pairId = pairIdOf(m.consumerKey.address, m.providerKey.address);
        expect(m.store.latest(pairId)!.amount).to.equal(price(300));
        expect(m.payments.paid(second.session.id)).to.equal(price(200));
        await second.session.destroy();
        // Each session's own amount, not the pair's total; the chain pays the whole of it.
        const earned = new Map(m.store.earningsBySession().map((e) => [e.sessionId, e.promised]));
        expect(earned.get(first.session.id)).to.equal(price(100));
        expect(earned.get(second.session.id)).to.equal(price(200));
        await until(async () => (await vault.pair(m.consumerKey.address, m.providerKey.address)).settled === price(300), "the whole 300 MiB settled");
      } finally {
        await m.stop();
      }
    });

    it("bills two concurrent sessions with one provider each in full", async function () {
      const m = await market();
      try {
        const [a, b] = await Promise.all([m.connect(), m.connect()]);
        m.move(a.session.id, a.tunnel, 100);
        m.move(b.session.id, b.tunnel, 150);
        await until(() => a.pay.acknowledged === price(100) && b.pay.acknowledged === price(150), "both sessions paid in full");
        m.move(a.session.id, a.tunnel, 300);
        await until(() => a.pay.acknowledged === price(300), "the first session's later traffic paid");
        expect(m.store.latest(pairIdOf(m.consumerKey.address, m.providerKey.address))!.amount).to.equal(price(450));
        expect([m.payments.paid(a.session.id), m.payments.paid(b.session.id)]).to.deep.equal([price(300), price(150)]);
        expect(a.session.state).to.equal("active");
        expect(b.session.state).to.equal("active");
        await Promise.all([a.session.destroy(), b.session.destroy()]);
      } finally {
        await m.stop();
      }
    });

    it("still cuts off a returning consumer that stops paying for its new session", async function () {
      const m = await market({ maxUnpaid: E("0.2") });
      try {
        const first = await m.connect();
        m.move(first.session.id, first.tunnel, 100);
        await until(() => first.pay.acknowledged === price(100), "the first session paid");
        await first.session.destroy();
        const second = await m.connect({ pay: false }); // this time the consumer does not pay
        m.move(second.session.id, second.tunnel, 400);
        expect(await second.session.ended).to.match(/^provider ended it: payment lagging/);
      } finally {
        await m.stop();
      }
    });

    it("continues from its stored promises after the consumer restarts", async function () {
      const m = await market();
      try {
        const first = await m.connect();
        m.move(first.session.id, first.tunnel, 100);
        await until(() => first.pay.acknowledged === price(100), "the first session paid");
        await first.session.destroy();
        m.restartConsumer();
        const second = await m.connect();
        m.move(second.session.id, second.tunnel, 50);
        await until(() => second.pay.acknowledged === price(50), "the second session paid for its own 50 MiB");
        expect(second.session.state).to.equal("active");
        expect(m.store.latest(pairIdOf(m.consumerKey.address, m.providerKey.address))!.amount).to.equal(price(150));
        await second.session.destroy();
      } finally {
        await m.stop();
      }
    });
  });

  it("lets the consumer withdraw its balance and escrow after the challenge period", async function () {
    const consumer = await net.registeredIdentity();
    await net.chain.fund([consumer.address], { eth: E("1"), myst: E("10") });
    await vault.deposit(consumer, consumer.address, E("4"), E("1"));
    await vault.requestExit(consumer);
    const early = await rejectionOf(vault.withdraw(consumer));
    expect(early.message).to.match(/ExitNotReady/);
    await net.conn.provider.send("evm_increaseTime", [24 * 3600]);
    await net.conn.provider.send("evm_mine", []);
    const before = await vault.tokenBalance(consumer.address);
    const { amount } = await vault.withdraw(consumer);
    expect(amount).to.equal(E("5"));
    expect((await vault.tokenBalance(consumer.address)) - before).to.equal(E("5"));
  });

  it("serves a provider never used before from the same vault, with no transaction of the consumer's", async function () {
    const m = await market();
    try {
      const other = await net.registeredIdentity();
      const nonce = await net.conn.provider.getTransactionCount(m.consumerKey.address);
      const promises = new ConsumerPromises(m.consumerKey, vault);
      await promises.load(other.address);
      expect(promises.latest(other.address)).to.equal(undefined); // a new pair starts at zero
      const p = promises.sign(other.address, E("0.5"));
      const state = await vault.pair(m.consumerKey.address, other.address);
      expect(() =>
        verifyPromise(
          { consumer: m.consumerKey.address, provider: other.address, amount: p.amount, signature: Buffer.from(p.signature.slice(2), "hex") },
          vault,
          {
            lastAmount: 0n,
            pair: state,
          },
        ),
      ).to.not.throw();
      expect(await net.conn.provider.getTransactionCount(m.consumerKey.address)).to.equal(nonce);
    } finally {
      await m.stop();
    }
  });

  describe("promise verification", function () {
    const provider = IdentityKey.generate();
    const consumer = IdentityKey.generate();
    const pair = { vault: { balance: E("5"), escrow: E("2"), exitReadyAt: 0n }, settled: E("1") };
    const promise = (key: IdentityKey, amount: bigint, to = provider.address) => ({
      consumer: consumer.address,
      provider: provider.address,
      amount,
      signature: vault.signPromise(key, to, amount),
    });
    const code = (fn: () => void) => {
      try {
        fn();
      } catch (err) {
        expect(err).to.be.instanceOf(PromiseRejected);
        return (err as PromiseRejected).code;
      }
      return "accepted";
    };

    it("accepts a promise of the consumer to this provider within what its vault can pay", function () {
      expect(code(() => verifyPromise(promise(consumer, E("6")), vault, { lastAmount: E("2"), pair }))).to.equal("accepted");
    });
    it("rejects a promise signed by someone else", function () {
      expect(code(() => verifyPromise(promise(provider, E("2")), vault, { lastAmount: 0n, pair }))).to.equal("PROMISE_WRONG_SIGNER");
    });
    it("rejects a promise to another provider", function () {
      // Signed for another provider but presented to this one: the signature does not recover.
      expect(code(() => verifyPromise(promise(consumer, E("2"), IdentityKey.generate().address), vault, { lastAmount: 0n, pair }))).to.equal(
        "PROMISE_WRONG_SIGNER",
      );
    });
    it("rejects a lower amount than the last promise", function () {
      expect(code(() => verifyPromise(promise(consumer, E("2")), vault, { lastAmount: E("3"), pair }))).to.equal("PROMISE_NOT_INCREASING");
    });
    it("rejects an amount above what the vault's balance can pay (the escrow is not spending money)", function () {
      expect(code(() => verifyPromise(promise(consumer, E("6.1")), vault, { lastAmount: 0n, pair }))).to.equal("PROMISE_ABOVE_BALANCE");
    });
    it("rejects an amount the vault cannot take (above 96 bits), however much the pair looks covered", function () {
      const huge = { vault: { balance: 1n, escrow: 0n, exitReadyAt: 0n }, settled: 2n ** 100n };
      expect(code(() => verifyPromise(promise(consumer, 2n ** 96n), vault, { lastAmount: 0n, pair: huge }))).to.equal("PROMISE_MALFORMED");
      expect(code(() => verifyPromise(promise(consumer, 2n ** 96n - 1n), vault, { lastAmount: 0n, pair: huge }))).to.equal("accepted");
    });
  });
});
