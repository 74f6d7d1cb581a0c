import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { freePort } from "../../../scripts/lib/local-chain";
import { IP, ip } from "../../../scripts/lib/netns-exec";
import { requireE2E } from "../../../scripts/lib/prereqs";

const ROOT = path.join(__dirname, "..", "..", "..");
const LOCAL_CHAIN_TS = path.join(ROOT, "scripts", "lib", "local-chain.ts");
const NATS_SERVER_TS = path.join(ROOT, "scripts", "lib", "nats-server.ts");
const BROKER_TS = path.join(ROOT, "node", "broker", "broker.ts");

/** The namespace's ports for listeners and connections: 40000-40010, of which the odd ones but 40001 are held. */
const RANGE = [40000, 40010];
const HELD = [40003, 40005, 40007, 40009];

/**
 * Holds every odd port of the namespace's range but one, then starts a server with the test
 * helper, talks to it (a request and JetStream), restarts it and talks to it again; prints the
 * ports it had, or the error.
 */
const START = `
  const net = require("node:net");
  const { startNatsServer, ADMIN_CREDENTIALS } = require(${JSON.stringify(NATS_SERVER_TS)});
  const { authOptions } = require(${JSON.stringify(BROKER_TS)});
  const { connect } = require("nats");
  const talk = async (url) => {
    const nc = await connect({ servers: url, ...authOptions(ADMIN_CREDENTIALS) });
    nc.subscribe("myst.test.echo", { callback: (_, m) => m.respond(m.data) });
    const answer = await nc.request("myst.test.echo", new TextEncoder().encode("hi"), { timeout: 2000 });
    if (new TextDecoder().decode(answer.data) !== "hi") throw new Error("no echo");
    await (await nc.jetstreamManager()).getAccountInfo();
    await nc.close();
  };
  (async () => {
    for (const port of ${JSON.stringify(HELD)})
      await new Promise((resolve, reject) => net.createServer().once("error", reject).listen(port, "127.0.0.1", resolve));
    const server = await startNatsServer();
    await talk(server.url);
    await server.stop({ keepStore: true });
    await server.restart();
    await talk(server.url);
    await server.stop();
    console.log(JSON.stringify({ port: server.port, clusterPort: server.clusterPort }));
    process.exit(0);
  })().catch((err) => { console.log(JSON.stringify({ error: err.message })); process.exit(1); });`;

/**
 * The test helpers' ports (scripts/lib): CI failed once on "nats-server exited with 1 (port 32863
 * in use?)". freePort() bound port 0, closed it and returned the port; startNatsServer took two
 * that way, one after the other, for its client and leaf-node ports, and the kernel can hand the
 * same just-closed port out again (here once in ~10,000 pairs, always an odd one).
 */
describe("test helpers: loopback ports", function () {
  it("freePort() hands out no port twice in a process", async function () {
    // The old freePort() (bind port 0, close, return it) gave 1,713 and 1,750 distinct ports in 2,000 draws here.
    const ports = [];
    for (let i = 0; i < 2000; i++) ports.push(await freePort());
    expect(new Set(ports).size, "distinct ports among 2,000").to.equal(2000);
  });

  it("freePort() hands out no port twice among processes drawing at once (the suite runs five workers)", async function () {
    this.timeout(60_000);
    // Each process keeps what it drew (as a test worker keeps its servers) until told to exit.
    const DRAW = `
      const { freePort } = require(${JSON.stringify(LOCAL_CHAIN_TS)});
      (async () => {
        const ports = [];
        for (let i = 0; i < 500; i++) ports.push(await freePort());
        console.log(JSON.stringify(ports));
        process.stdin.resume().on("end", () => process.exit(0));
      })();`;
    const children = [0, 1, 2].map(() =>
      spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", DRAW], { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] }),
    );
    try {
      const drawn = await Promise.all(
        children.map(
          (child) =>
            new Promise<number[]>((resolve, reject) => {
              let out = "";
              child.stdout.setEncoding("utf8").on("data", (d: string) => {
                out += d;
                if (out.endsWith("\n")) resolve(JSON.parse(out) as number[]);
              });
              child.once("exit", (code) => reject(new Error(`a drawing process exited with ${code}: ${out}`)));
            }),
        ),
      );
      expect(drawn.flat()).to.have.length(1500);
      expect(new Set(drawn.flat()).size, "distinct ports among the three processes' 1,500").to.equal(1500);
    } finally {
      for (const child of children) child.stdin.end();
    }
  });

  describe("startNatsServer, when the kernel has a single port to hand out for a listener", function () {
    this.timeout(60_000);
    const ns = `myst-ports-${process.pid}`;

    before(function () {
      requireE2E(this);
      ip("netns", "add", ns);
      ip("-n", ns, "link", "set", "lo", "up");
      // Per namespace: /proc/sys/net is the reader's namespace's.
      const sysctl = spawnSync(IP, ["netns", "exec", ns, "sh", "-c", `echo ${RANGE.join(" ")} > /proc/sys/net/ipv4/ip_local_port_range`], { encoding: "utf8" });
      if (sysctl.status !== 0) throw new Error(`could not narrow the namespace's port range: ${sysctl.stderr}`);
    });

    after(function () {
      if (fs.existsSync(`/run/netns/${ns}`)) ip("netns", "del", ns);
    });

    it("lets nats-server choose its own ports, and restarts it on the same ones", function () {
      const run = spawnSync(IP, ["netns", "exec", ns, process.execPath, "-r", "ts-node/register/transpile-only", "-e", START], {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 50_000,
      });
      const lastLine = run.stdout.trim().split("\n").pop() ?? "";
      expect(lastLine, `its output:\n${run.stdout}\n${run.stderr}`).to.match(/^\{"port"/);
      const { port, clusterPort } = JSON.parse(lastLine) as { port: number; clusterPort: number };
      // The one odd port free, then an even one: both inside the namespace's range, never the same.
      expect(port).to.be.within(RANGE[0], RANGE[1]);
      expect(clusterPort).to.be.within(RANGE[0], RANGE[1]);
      expect(port).to.not.equal(clusterPort);
    });
  });
});
