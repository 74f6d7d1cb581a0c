import { parseEther } from "ethers";
import { expect } from "chai";
import { buildCli, cliProviderAndConsumer, myst, mystBackground } from "../../support/cli";
import { testChain, type LocalChain } from "../../../scripts/lib/local-chain";
import { startNatsServer, type NatsServer } from "../../../scripts/lib/test-network";
import { tempDir } from "../../../scripts/lib/tmp";
import { until } from "../../../scripts/lib/until";
import fs from "node:fs";
import path from "node:path";

describe("myst daemon and the CLI commands that go through it (spawned processes)", function () {
  this.timeout(180_000);
  let chain: LocalChain;
  let nats: NatsServer;
  const tmps = [tempDir(), tempDir()];
  const background: ReturnType<typeof mystBackground>[] = [];
  let base: NodeJS.ProcessEnv;
  let providerEnv: NodeJS.ProcessEnv;
  let consumerEnv: NodeJS.ProcessEnv;

  const json = async (env: NodeJS.ProcessEnv, args: string[]) => {
    const r = await myst([...args, "--json"], env);
    if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  function startDaemon(env: NodeJS.ProcessEnv, extra: string[] = []) {
    const d = mystBackground(["daemon", "--api-port", "0", "--invoice-every", "0.3", ...extra], env);
    background.push(d);
    return d;
  }

  before(async function () {
    buildCli();
    [chain, nats] = await Promise.all([testChain(), startNatsServer()]);
    const nodes = await cliProviderAndConsumer(chain, nats.url, [tmps[0].dir, tmps[1].dir], { MYST_LOG_LEVEL: "info" });
    ({ base, providerEnv, consumerEnv } = nodes);
    background.push(nodes.discovery);
  });
  after(async function () {
    await Promise.all(background.map((b) => b.stop()));
    await Promise.all([chain?.stop(), nats?.stop()]);
    tmps.forEach((t) => t.cleanup());
  });

  it("answers one-shot commands without a running node (an offline node in the command), and says what it cannot do", async function () {
    expect(await json(providerEnv, ["service", "list"])).to.deep.equal([]);
    expect(await json(providerEnv, ["status"])).to.deep.equal({ state: "disconnected" });
    expect(await json(providerEnv, ["sessions"])).to.deep.equal([]);
    const r = await myst(["service", "stop", "noop"], providerEnv);
    expect([r.code, r.stderr.trim()]).to.deep.equal([1, "myst: no noop service is running"]);
    const d = await myst(["disconnect"], providerEnv);
    expect([d.code, d.stderr.trim()]).to.deep.equal([1, "myst: not connected (no node runs for this data dir)"]);
  });

  it("sells and buys through two daemons driven by the usual commands", async function () {
    const provider = startDaemon(providerEnv, ["--log-format", "pretty"]);
    const consumer = startDaemon(consumerEnv);
    await until(() => provider.output().includes("REST API:") && consumer.output().includes("REST API:"), "both daemons to listen").catch((e) => {
      throw new Error(`${e.message}\nprovider: ${provider.output()}\nconsumer: ${consumer.output()}`);
    });
    // Pretty logs are lines for people, not JSON.
    // Logs go to stderr, the "REST API:" line to stdout: the two pipes may arrive in either order.
    await until(() => /INFO.*daemon started/.test(provider.output()), "the provider's pretty log line");
    await until(() => /^\{"level":30,.*"msg":"daemon started"\}$/m.test(consumer.output()), "the consumer's JSON log line");
    const endpoint = JSON.parse(fs.readFileSync(path.join(tmps[0].dir, "daemon.json"), "utf8"));
    expect(endpoint.pid).to.equal(provider.child.pid);

    const second = await myst(["daemon", "--api-port", "0"], providerEnv);
    expect(second.code).to.equal(1);
    expect(second.stderr).to.include(`a daemon already runs for ${tmps[0].dir} (pid ${provider.child.pid}`);

    const unauthorized = await fetch(`${endpoint.url}/v1/services`);
    expect(unauthorized.status).to.equal(401);

    const started = await json(providerEnv, ["service", "start", "noop", "--country", "SE", "--ip-type", "hosting", "--price-per-hour", "36"]);
    expect(started).to.include({ type: "noop", sessions: 0 });
    const list = await json(providerEnv, ["service", "list"]);
    expect(list).to.have.length(1);
    expect(list[0].offer).to.include({ country: "SE", ipType: "hosting" });
    const dup = await myst(["service", "start", "noop"], providerEnv);
    expect(dup.code).to.equal(1);
    expect(dup.stderr.trim()).to.equal("myst: a noop service is already running: stop it first");

    await until(async () => (await json(consumerEnv, ["proposals", "--country", "SE"])).length === 1, "the proposal in discovery");
    const connected = await json(consumerEnv, ["connect", "--service", "noop", "--country", "SE"]);
    expect(connected).to.include({ state: "connected", serviceType: "noop", country: "SE" });
    expect(connected.deposit, "connecting makes no deposit: the vault pays").to.equal(undefined);
    const status = await until(async () => {
      const s = await json(consumerEnv, ["status"]);
      return BigInt(s.promisedWei) > 0n && s;
    }, "a promise paid through the daemon");
    expect(status.sessionId).to.equal(connected.sessionId);
    const human = await myst(["status"], consumerEnv);
    expect(human.stdout).to.match(new RegExp(`session: +${connected.sessionId}`));

    const ended = await json(consumerEnv, ["disconnect"]);
    expect(ended).to.include({ state: "disconnected", sessionId: connected.sessionId });
    const again = await myst(["disconnect"], consumerEnv);
    expect(again.stderr.trim()).to.equal("myst: not connected");

    const sessions = await json(consumerEnv, ["sessions"]);
    expect(sessions[0]).to.include({ id: connected.sessionId, role: "consumer" });
    const settled = await until(async () => {
      const e = await json(providerEnv, ["earnings", "settle"]);
      return BigInt(e.settledWei) > 0n && e;
    }, "the provider to settle");
    expect(settled.unsettledWei).to.equal("0");
    const vault = await json(consumerEnv, ["vault", "status"]);
    expect(BigInt(vault.balanceWei)).to.equal(parseEther("5") - BigInt(settled.settledWei));
    expect(vault).to.include({ escrowWei: parseEther("1").toString(), exitReadyAt: null });
    const vaultText = (await myst(["vault"], consumerEnv)).stdout;
    expect(vaultText).to.match(/^escrow: +1\.0 MYST/m);
    const exited = await json(consumerEnv, ["vault", "exit"]);
    expect(exited.vault.exitReadyAt).to.be.a("string");
    const early = await myst(["vault", "withdraw"], consumerEnv);
    expect(early.code).to.equal(1);
    expect(early.stderr).to.match(/^myst: .*ExitNotReady/);

    const stopped = await json(providerEnv, ["service", "stop", "noop"]);
    expect(stopped).to.deep.equal({ type: "noop", stopped: true });
    const none = await myst(["service", "stop", "noop"], providerEnv);
    expect(none.stderr.trim()).to.equal("myst: no noop service is running");

    expect(await provider.stop()).to.equal(0);
    expect(await consumer.stop()).to.equal(0);
    expect(fs.existsSync(path.join(tmps[0].dir, "daemon.json"))).to.equal(false);
  });

  it("sells under provider controls given as flags: shown by service list and status, in the metrics, kept across a restart, enforced on a denied consumer", async function () {
    const consumerId = (await json(consumerEnv, ["identities", "list"]))[0].address as string;
    const allowFile = path.join(tmps[0].dir, "allow.txt");
    fs.writeFileSync(allowFile, `${consumerId}\n`);
    let provider = startDaemon(providerEnv);
    const consumer = startDaemon(consumerEnv);
    await until(() => provider.output().includes("REST API:") && consumer.output().includes("REST API:"), "both daemons to listen");

    const bad = await myst(["service", "start", "noop", "--schedule", "mon 8-22"], providerEnv);
    expect(bad.code).to.equal(1);
    expect(bad.stderr.trim()).to.equal('myst: schedule "mon 8-22" is not "<days> HH:MM-HH:MM" (e.g. "mon-fri 08:00-22:00")');

    const flags = ["service", "start", "noop", "--country", "NO", "--daily-cap", "512MiB", "--monthly-cap", "10", "--schedule", "daily 00:00-24:00"];
    const started = await json(providerEnv, [...flags, "--allow-file", allowFile, "--deny", consumerId]);
    expect(started.spec.controls).to.deep.equal({
      trafficCap: { dailyGiB: 0.5, monthlyGiB: 10 },
      schedule: ["daily 00:00-24:00"],
      access: { deny: [consumerId], allowFile },
    });
    expect(started.controls).to.deep.include({ offered: true, access: { policy: "allowlist" } });
    expect(started.controls.trafficCap.daily).to.include({ capBytes: 512 * 2 ** 20, usedBytes: 0, remainingBytes: 512 * 2 ** 20 });

    const status = await myst(["status"], providerEnv);
    expect(status.stdout).to.include("selling:  noop offered, access allowlist");
    expect(status.stdout).to.match(/daily cap: 0\.0 MiB used of 512\.0 MiB, 512\.0 MiB left, resets /);
    expect((await json(providerEnv, ["status"])).selling[0].controls.trafficCap.monthly.capBytes).to.equal(10 * 2 ** 30);

    const endpoint = JSON.parse(fs.readFileSync(path.join(tmps[0].dir, "daemon.json"), "utf8"));
    const token = fs.readFileSync(path.join(tmps[0].dir, "api-token"), "utf8").trim();
    const metrics = await (await fetch(`${endpoint.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    expect(metrics).to.include('myst_provider_cap_remaining_bytes{service_type="noop",period="daily"} 536870912');
    expect(metrics).to.include('myst_provider_service_offered{service_type="noop",withdrawn_because=""} 1');
    expect(metrics).to.match(/myst_provider_traffic_bytes\{period="day"\} 0/);

    // The deny list wins over the allow file: the consumer is refused with the provider's reason.
    await until(async () => (await json(consumerEnv, ["proposals", "--country", "NO"])).length === 1, "the proposal in discovery");
    const refused = await myst(["connect", "--service", "noop", "--country", "NO"], consumerEnv);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.include("ACCESS_DENIED");

    // services.json keeps the controls: a restarted daemon sells under them again.
    expect(await provider.stop()).to.equal(0);
    provider = startDaemon(providerEnv);
    await until(() => provider.output().includes("REST API:"), "the provider to listen again");
    const list = await until(async () => {
      const l = await json(providerEnv, ["service", "list"]);
      return l.length === 1 && l;
    }, "the remembered service");
    expect(list[0].spec.controls.access).to.deep.equal({ deny: [consumerId], allowFile });
    await json(providerEnv, ["service", "stop", "noop"]);
    expect(await provider.stop()).to.equal(0);
    expect(await consumer.stop()).to.equal(0);
  });

  it("tells a consumer asking a provider whose schedule is closed the provider's reason (OUTSIDE_SCHEDULE), not 'no live proposal', in connect and in status", async function () {
    const providerId = (await json(providerEnv, ["identities", "list"]))[0].address as string;
    const provider = startDaemon(providerEnv);
    const consumer = startDaemon(consumerEnv);
    await until(() => provider.output().includes("REST API:") && consumer.output().includes("REST API:"), "both daemons to listen");
    // A window two days from now: closed today, so the service starts withdrawn (never announced).
    const day = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"][(new Date().getDay() + 2) % 7];
    const started = await json(providerEnv, ["service", "start", "noop", "--country", "SE", "--schedule", `${day} 10:00-11:00`]);
    expect(started.controls).to.deep.include({ offered: false, withdrawnBecause: "OUTSIDE_SCHEDULE" });

    const refused = await myst(["connect", providerId, "--service", "noop"], consumerEnv);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.include("OUTSIDE_SCHEDULE").and.include("schedule is closed").and.not.include("no live");
    const status = await json(consumerEnv, ["status"]);
    expect(status.state).to.equal("disconnected");
    expect(status.lastFailure).to.include({ code: "SESSION_REFUSED", refusal: "OUTSIDE_SCHEDULE" });
    expect((await myst(["status"], consumerEnv)).stdout).to.match(/not connected\nlast attempt \(.*\): the provider refused the session: OUTSIDE_SCHEDULE: /);

    await json(providerEnv, ["service", "stop", "noop"]);
    expect(await provider.stop()).to.equal(0);
    expect(await consumer.stop()).to.equal(0);
  });

  it("names a port in use instead of failing obscurely", async function () {
    const port = new URL(base.MYST_DISCOVERY_URLS!).port;
    const r = await myst(["daemon", "--api-port", port], providerEnv);
    expect(r.code).to.equal(1);
    expect(r.stderr.trim().split("\n")).to.include(`myst: 127.0.0.1:${port} is in use: pick another with --api-port`);
  });
});
