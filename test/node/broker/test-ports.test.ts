import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { expect } from "chai";
import { freePort } from "../../../scripts/lib/local-chain";
import { startNatsServer } from "../../../scripts/lib/nats-server";
import { IP, ip } from "../../../scripts/lib/netns-exec";
import { requireE2E } from "../../../scripts/lib/prereqs";
import { rejectionOf } from "../../support/rejection";

const ROOT = path.join(__dirname, "..", "..", "..");
const LOCAL_CHAIN_TS = path.join(ROOT, "scripts", "lib", "local-chain.ts");
const NATS_SERVER_TS = path.join(ROOT, "scripts", "lib", "nats-server.ts");
const BROKER_TS = path.join(ROOT, "node", "broker", "broker.ts");

/** The namespace's ports for listeners and connections: 40000-40020, of which the odd ones but 40001 are held. */
const RANGE = [40000, 40020];
const HELD = Array.from({ length: 9 }, (_, i) => 40003 + 2 * i);

/**
 * Holds every odd port of the namespace's range but one, then starts a server with the test
 * helper (its monitoring port on): talks to it (a request and JetStream), checks its monitoring
 * endpoint names the ports read from its log, has a leaf node join it on its leaf-node port,
 * restarts it and talks to it again. Prints the ports, or the error.
 */
const START = `
  const net = require("node:net");
  const { startNatsServer, ADMIN_CREDENTIALS } = require(${JSON.stringify(NATS_SERVER_TS)});
  const { authOptions } = require(${JSON.stringify(BROKER_TS)});
  const { connect } = require("nats");
  // A node (no credentials) asks and answers on a subject a node may use; the administrator reads JetStream.
  const talk = async (server) => {
    const [a, b] = [await connect({ servers: server.url }), await connect({ servers: server.url })];
    b.subscribe("myst.dialog.echo", { callback: (_, m) => m.respond(m.data) });
    await b.flush();
    const answer = await a.request("myst.dialog.echo", new TextEncoder().encode("hi"), { timeout: 2000 });
    if (new TextDecoder().decode(answer.data) !== "hi") throw new Error("no echo on " + server.url);
    await Promise.all([a.close(), b.close()]);
    const admin = await connect({ servers: server.url, ...authOptions(ADMIN_CREDENTIALS) });
    await (await admin.jetstreamManager()).getAccountInfo();
    await admin.close();
  };
  const monitor = async (server, endpoint) => (await fetch("http://127.0.0.1:" + server.monitorPort + endpoint)).json();
  (async () => {
    for (const port of ${JSON.stringify(HELD)})
      await new Promise((resolve, reject) => net.createServer().once("error", reject).listen(port, "127.0.0.1", resolve));
    const hub = await startNatsServer({ monitor: true });
    await talk(hub);
    const varz = await monitor(hub, "/varz");
    if (varz.port !== hub.port || varz.leaf.port !== hub.clusterPort) throw new Error("/varz names other ports: " + JSON.stringify([varz.port, varz.leaf]));
    // A leaf node joins on the leaf-node port read from the hub's log.
    const leaf = await startNatsServer({ routes: [hub.clusterPort] });
    for (let i = 0; (await monitor(hub, "/leafz")).leafnodes !== 1; i++) {
      if (i === 50) throw new Error("the leaf node did not join the hub on " + hub.clusterPort);
      await new Promise((r) => setTimeout(r, 100));
    }
    await leaf.stop();
    await hub.stop({ keepStore: true });
    await hub.restart();
    await talk(hub);
    await hub.stop();
    console.log(JSON.stringify({ ports: [hub.port, hub.clusterPort, hub.monitorPort, leaf.port, leaf.clusterPort] }));
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

  it("startNatsServer fails, with the server's own reason, when a cluster member's route port is taken (it binds that one after it says it is ready)", async function () {
    this.timeout(20_000);
    const routePort = await freePort();
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(routePort, "127.0.0.1", resolve));
    try {
      // Another member to route to (a JetStream cluster needs one); it need not be up.
      const routePorts = [routePort, await freePort()];
      const err = await rejectionOf(startNatsServer({ cluster: { serverName: "myst-taken", routePort, routePorts } }));
      expect(err.message).to.match(/exited .*before it was ready/);
      expect(err.message).to.include(`127.0.0.1:${routePort}`);
      expect(err.message).to.match(/address already in use/i);
    } finally {
      holder.close();
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

    it("lets nats-server choose its own ports (client, leaf node, monitoring; a leaf node joins it), and restarts it on the same ones", function () {
      const run = spawnSync(IP, ["netns", "exec", ns, process.execPath, "-r", "ts-node/register/transpile-only", "-e", START], {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 50_000,
      });
      const lastLine = run.stdout.trim().split("\n").pop() ?? "";
      expect(lastLine, `its output:\n${run.stdout}\n${run.stderr}`).to.match(/^\{"ports"/);
      const { ports } = JSON.parse(lastLine) as { ports: number[] };
      // The one odd port free, then even ones: all inside the namespace's range, no two the same.
      for (const port of ports) expect(port).to.be.within(RANGE[0], RANGE[1]);
      expect(new Set(ports).size).to.equal(5);
    });
  });
});
