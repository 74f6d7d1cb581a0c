import { expect } from "chai";
import path from "node:path";
import { parseEther } from "ethers";
import { Broker } from "../../../node/broker/broker";
import { ADMIN_CREDENTIALS } from "../../../scripts/lib/nats-server";
import { ConsumerVaultClient } from "../../../node/chain/vault";
import { DISCOVERY_SUBJECTS } from "../../../node/discovery/announcements";
import { Dialogs } from "../../../node/dialog/dialogs";
import { Keystore } from "../../../node/identity/keystore";
import { ConsumerPayments } from "../../../node/payments/consumer-payments";
import { ConsumerPromises } from "../../../node/payments/consumer-promises";
import type { SignedProposal } from "../../../node/proposal/proposal";
import { NoopConsumerService } from "../../../node/services/noop/noop";
import { ConsumerSessions } from "../../../node/session/consumer";
import { until } from "../../../scripts/lib/until";
import { buildCli, mystBackground } from "../../support/cli";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { ChainProxy } from "../../support/rpc-proxy";
import { tempDir } from "../../../scripts/lib/tmp";

const E = parseEther;

describe("payments: a provider that stops (killed, or with the chain gone) loses no promise", function () {
  const net = new TestNetwork();
  const tmp = tempDir();
  const processes: ReturnType<typeof mystBackground>[] = [];
  before(async function () {
    buildCli();
    await net.start();
  });
  after(async function () {
    await Promise.all(processes.map((p) => p.stop()));
    await net.stop();
    tmp.cleanup();
  });

  /**
   * A provider identity in a data dir of its own (keystore, registered, funded for gas), a consumer
   * with 10 MYST and 1 MYST of escrow in its vault, and a broker connection that answers discovery announcements
   * itself and keeps the provider's signed proposal.
   */
  async function providerAndConsumer(dir: string) {
    const providerDir = path.join(tmp.dir, dir);
    const entry = await new Keystore({ dir: path.join(providerDir, "keystore"), lightKdf: true }).create("pw");
    const providerKey = await new Keystore({ dir: path.join(providerDir, "keystore") }).unlock(entry.address, "pw");
    await net.registerKey(providerKey);
    const consumer = await net.registeredIdentity();
    await net.chain.fund([providerKey.address, consumer.address], { eth: E("1"), myst: E("100") });
    const channels = new ConsumerVaultClient(net.conn);
    await channels.deposit(consumer, consumer.address, E("10"), E("1"));
    // Both discovery's stand-in and the consumer's dialogs: the administrator's rights (no one role has both).
    const broker = new Broker({ servers: [net.nats.url], credentials: ADMIN_CREDENTIALS });
    await broker.start();
    const announced: { proposal?: SignedProposal } = {};
    broker.subscribe(DISCOVERY_SUBJECTS.register, (data, respond) => {
      announced.proposal = JSON.parse(Buffer.from(data).toString());
      respond?.(Buffer.from(JSON.stringify({ ok: true, result: "added" })));
    });
    await broker.flush();
    return { providerDir, providerKey, consumer, channels, broker, announced };
  }

  /** A paid noop service: 36 MYST per hour (0.01 MYST a second), invoices every second, never settled by itself (no threshold, no fee share). */
  const PAID_NOOP = [
    "service",
    "start",
    "noop",
    "--price-per-hour",
    "36",
    "--price-per-gib",
    "0",
    "--invoice-every",
    "1",
    "--settle-threshold",
    "1000000",
    "--settle-fee-percent",
    "0",
  ];

  /** The environment of a `myst` provider process on `providerDir` that reaches the chain at `rpcUrl`. */
  function providerEnv(providerDir: string, rpcUrl: string) {
    return {
      MYST_DATA_DIR: providerDir,
      MYST_RPC_URL: rpcUrl,
      MYST_DEPLOYMENT: net.chain.deploymentFile,
      MYST_BROKER_URLS: net.nats.url,
      MYST_PASSPHRASE: "pw",
      MYST_LOG_LEVEL: "info",
    };
  }

  /**
   * Starts the provider's `myst` (PAID_NOOP, with `env`), connects the consumer to what it
   * announces (its dialogs on `subject`) and pays; resolves once the provider acknowledged a promise.
   */
  async function paidSession(parties: Awaited<ReturnType<typeof providerAndConsumer>>, env: Record<string, string>, subject: string) {
    const { consumer, channels, broker, announced } = parties;
    const first = mystBackground(PAID_NOOP, env);
    processes.push(first);
    await until(() => announced.proposal, "the provider's announcement");
    const dialogs = new Dialogs({ broker, key: consumer, directory: net.registry, subject });
    await dialogs.start();
    const session = await new ConsumerSessions(dialogs).connect({ proposal: announced.proposal!, service: new NoopConsumerService() });
    const pay = new ConsumerPayments(session, new ConsumerPromises(consumer, channels));
    pay.start();
    await until(() => pay.acknowledged > 0n, "an acknowledged promise");
    return { first, dialogs, session, pay };
  }

  it("loses no acknowledged promise to a SIGKILL", async function () {
    const parties = await providerAndConsumer("provider");
    const { providerDir, providerKey, consumer, channels, broker } = parties;
    const env = providerEnv(providerDir, net.chain.rpcUrl);
    const { first, dialogs, session, pay } = await paidSession(parties, env, "myst.dialog.restart-consumer");
    const acknowledged = pay.acknowledged;

    first.child.kill("SIGKILL");
    await first.stop();
    await session.finish("provider killed");
    expect((await channels.pair(consumer.address, providerKey.address)).settled).to.equal(0n);

    const second = mystBackground(PAID_NOOP, env);
    processes.push(second);
    const settled = await until(
      async () => (await channels.pair(consumer.address, providerKey.address)).settled,
      "the settlement after the restart",
      60_000,
    ).catch((err) => {
      throw new Error(`${err.message}; the restarted provider printed:\n${second.output()}`);
    });
    expect(settled >= acknowledged).to.equal(true);
    await until(() => second.output().includes("running"), "the restarted provider to be up");
    expect(await second.stop(), `the restarted provider exits cleanly on SIGTERM; it printed:\n${second.output()}`).to.equal(0);
    dialogs.stop();
    await broker.stop();
  });
  it("exits within 30 s of SIGTERM when the chain never answers, and settles at the next start", async function () {
    const parties = await providerAndConsumer("provider-hang");
    const { providerDir, providerKey, consumer, channels, broker } = parties;
    const proxy = new ChainProxy(net.chain.rpcUrl);
    await proxy.start();
    const env = providerEnv(providerDir, proxy.url);
    const { first, dialogs, session, pay } = await paidSession(parties, env, "myst.dialog.hang-consumer");

    proxy.link = "hang"; // the chain accepts connections and never answers
    first.child.kill("SIGTERM");
    await until(() => first.child.exitCode !== null || first.child.signalCode !== null, "the provider to exit after SIGTERM with the chain hanging", 30_000);
    expect(first.child.exitCode, first.output()).to.equal(0);
    expect(first.output()).to.match(/settlements still pending at shutdown/);
    await session.finish("provider stopped");
    expect((await channels.pair(consumer.address, providerKey.address)).settled).to.equal(0n);

    // The chain is back: the next start settles what the last one could not.
    await proxy.stop();
    const second = mystBackground(PAID_NOOP, providerEnv(providerDir, net.chain.rpcUrl));
    processes.push(second);
    const settled = await until(async () => (await channels.pair(consumer.address, providerKey.address)).settled, "the settlement at the next start", 60_000);
    expect(settled >= pay.acknowledged).to.equal(true);
    expect(await second.stop()).to.equal(0);
    dialogs.stop();
    await broker.stop();
  });
});
