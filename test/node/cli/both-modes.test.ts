import { expect } from "chai";
import { until } from "../../../scripts/lib/until";
import { testChain, type LocalChain } from "../../../scripts/lib/local-chain";
import { buildCli, cliProviderAndConsumer, myst, mystBackground } from "../../support/cli";
import { startNatsServer, type NatsServer } from "../../../scripts/lib/test-network";
import { tempDir } from "../../../scripts/lib/tmp";

/**
 * One node, one way in: the same commands, with the same assertions, against a node running in
 * the background (`myst daemon`) and one a command runs in the foreground (`myst service start`,
 * `myst connect`), which serves the same API on its unix socket.
 */
describe("the CLI against a background and a foreground node: the same commands, the same answers", function () {
  this.timeout(180_000);
  let chain: LocalChain;
  let nats: NatsServer;
  before(async function () {
    buildCli();
    [chain, nats] = await Promise.all([testChain(), startNatsServer()]);
  });
  after(async () => Promise.all([chain?.stop(), nats?.stop()]));

  const json = async (env: NodeJS.ProcessEnv, args: string[]) => {
    const r = await myst([...args, "--json"], env);
    if (r.code !== 0) throw new Error(`myst ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  for (const mode of ["background", "foreground"] as const) {
    it(`sells, buys, shows status, pays and disconnects with a ${mode} node`, async function () {
      const dirs = [tempDir(), tempDir()];
      const running: ReturnType<typeof mystBackground>[] = [];
      const background = (args: string[], env: NodeJS.ProcessEnv) => {
        const p = mystBackground(args, env);
        running.push(p);
        return p;
      };
      try {
        const { providerEnv, consumerEnv, discovery } = await cliProviderAndConsumer(chain, nats.url, [dirs[0].dir, dirs[1].dir]);
        running.push(discovery);
        const sell = ["service", "start", "noop", "--country", "SE", "--ip-type", "hosting", "--price-per-hour", "36"];
        const buy = ["connect", "--service", "noop", "--country", "SE"];
        if (mode === "background") {
          const [p, c] = [
            background(["daemon", "--api-port", "0", "--invoice-every", "0.3"], providerEnv),
            background(["daemon", "--api-port", "0"], consumerEnv),
          ];
          await until(() => p.output().includes("REST API:") && c.output().includes("REST API:"), "both daemons to listen");
          await json(providerEnv, sell);
        } else {
          const p = background([...sell, "--invoice-every", "0.3"], providerEnv);
          await until(() => p.output().includes("Ctrl-C stops it"), "the foreground provider");
        }
        const services = await json(providerEnv, ["service", "list"]);
        expect(services.map((s: { type: string; offer: { country: string } }) => [s.type, s.offer.country])).to.deep.equal([["noop", "SE"]]);
        await until(async () => (await json(consumerEnv, ["proposals", "--country", "SE"])).length === 1, "the proposal in discovery");

        if (mode === "background") await json(consumerEnv, buy);
        else {
          const c = background(buy, consumerEnv);
          await until(() => c.output().includes("Ctrl-C or `myst disconnect` ends it") || c.child.exitCode !== null, "the foreground connection");
        }
        const status = await json(consumerEnv, ["status"]);
        expect(status).to.include({ state: "connected", serviceType: "noop", country: "SE" });
        const paid = await until(async () => {
          const s = await json(consumerEnv, ["status"]);
          return BigInt(s.promisedWei) > 0n && s;
        }, "a promise paid through the node");
        expect(paid.sessionId).to.equal(status.sessionId);
        expect((await myst(["status"], consumerEnv)).stdout).to.match(new RegExp(`session: +${status.sessionId}`));

        // The one-shot commands, through the same running node in either mode.
        const ids = await json(providerEnv, ["identities", "list"]);
        expect(ids).to.have.length(1);
        expect(ids[0]).to.include({ registered: true });
        const providerId = ids[0].address;
        const sessions = await json(consumerEnv, ["sessions"]);
        expect(sessions[0]).to.include({ id: status.sessionId, role: "consumer", peer: providerId, endReason: null });
        expect((await json(providerEnv, ["sessions"]))[0]).to.include({ id: status.sessionId, role: "provider" });
        expect(BigInt((await json(consumerEnv, ["vault", "status"])).balanceWei)).to.be.greaterThan(0n);
        await until(async () => BigInt((await json(providerEnv, ["earnings"])).totalPromisedWei) > 0n, "earnings through the node");
        expect((await json(providerEnv, ["service", "list"])).map((s: { sessions: number }) => s.sessions)).to.deep.equal([1]);

        const ended = await json(consumerEnv, ["disconnect"]);
        expect(ended).to.include({ state: "disconnected", sessionId: status.sessionId });
        await until(async () => (await json(consumerEnv, ["status"])).state === "disconnected", "the connection gone");
        const again = await myst(["disconnect"], consumerEnv);
        expect([again.code, /not connected/.test(again.stderr)]).to.deep.equal([1, true]);
        for (const p of running.slice(1)) expect(await p.stop(), p.output()).to.equal(0);
      } finally {
        await Promise.all(running.map((p) => p.stop()));
        for (const d of dirs) d.cleanup();
      }
    });
  }
});
