import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { networkAddressKey } from "../../../node/nat/monitor";
import { requireE2E } from "../../../scripts/lib/prereqs";
import { ip } from "../../../scripts/lib/netns-exec";
import { until } from "../../../scripts/lib/until";

const ROOT = path.join(__dirname, "..", "..", "..");
/** The source under test, not dist/ (a stale build would decide the test: review finding 10). */
const MONITOR = path.join(ROOT, "node", "nat", "monitor.ts");

/** Runs the ReachabilityMonitor (its source, compiled as it loads) watching addresses every 100 ms; prints each "addresses changed" it logs. */
const WATCH = `
  const { ReachabilityMonitor } = require(${JSON.stringify(MONITOR)});
  const say = (o, m) => { if (typeof m === "string" && m.includes("addresses changed")) console.log("changed " + o.addresses); };
  const log = { info: say, debug() {}, warn() {}, error() {}, child() { return log; } };
  const monitor = new ReachabilityMonitor({ stunServers: ["127.0.0.1:9"], portMapping: false, port: 0, watchMs: 100, log,
    measure: { stun: { rtoMs: 50, requests: 1 } } });
  monitor.start().then(() => console.log("watching"));
  process.stdin.on("end", () => { monitor.stop(); process.exit(0); });
  process.stdin.resume();`;

/** Holds a TUN (or, with "tap", a TAP) device open (a tunnel's own interface: up and running only while a process holds it), as wireguard-go and openvpn do. */
const HOLD_TUN = `
import fcntl, os, struct, sys, time
fd = os.open("/dev/net/tun", os.O_RDWR)
kind = 0x0002 if sys.argv[2:] == ["tap"] else 0x0001
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", sys.argv[1].encode(), kind | 0x1000))
print("held", flush=True)
sys.stdin.read()`;

/**
 * Issue 28's reachability monitor measures again when this machine's addresses change. A session's
 * own tunnel coming up is not a new network: measuring then sent the STUN probes into the session's
 * kill switch, got no answer, and left the consumer's reachability unknown, so its next connects
 * failed at once (seen in the nat bench, docs/direct-channel.md).
 */
describe("nat: the reachability monitor's address watch", function () {
  it("keys the network by its addresses, leaving out loopback and tunnel devices", function () {
    const addr = (address: string, internal = false) => ({ address, family: "IPv4", internal }) as never;
    const interfaces = { lo: [addr("127.0.0.1", true)], eth0: [addr("192.0.2.10")], mwc1: [addr("10.9.0.2")], tun0: [addr("10.8.0.6")] };
    expect(networkAddressKey(interfaces, (name) => name === "mwc1" || name === "tun0")).to.equal("192.0.2.10");
    expect(networkAddressKey(interfaces, () => false)).to.equal("10.8.0.6,10.9.0.2,192.0.2.10");
  });

  /**
   * The monitor in a namespace, started by `ip netns exec` (which mounts the namespace's own /sys)
   * or by `nsenter --net` (which does not: /sys is the root namespace's, review finding 12).
   */
  const cases = [
    { how: "ip netns exec", enter: (ns: string) => ["/usr/sbin/ip", "netns", "exec", ns], tunnels: ["tun", "tap"] },
    { how: "nsenter --net (another namespace's /sys)", enter: (ns: string) => ["/usr/bin/nsenter", `--net=/run/netns/${ns}`], tunnels: ["tun"] },
  ];
  cases.forEach(({ how, enter, tunnels }, n) =>
    describe(`in a namespace, entered with ${how}`, function () {
      this.timeout(30_000);
      const ns = `myst-mon${n}-${process.pid}`;
      const children: ChildProcess[] = [];
      let heard = "";

      before(async function () {
        requireE2E(this);
        ip("netns", "add", ns);
        ip("-n", ns, "link", "set", "lo", "up");
        const [command, ...args] = [...enter(ns), process.execPath, "-r", "ts-node/register/transpile-only", "-e", WATCH];
        const watch = spawn(command, args, { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
        children.push(watch);
        watch.stdout!.setEncoding("utf8").on("data", (d: string) => (heard += d));
        await until(() => heard.includes("watching"), "the monitor's start", 30_000);
      });

      after(function () {
        for (const child of children) {
          child.stdin?.end();
          if (child.exitCode === null) child.kill("SIGKILL");
        }
        if (fs.existsSync(`/run/netns/${ns}`)) ip("netns", "del", ns);
      });

      it(`measures again when the network changes, not when a tunnel comes up (${tunnels.join(", ")})`, async function () {
        for (const [i, kind] of tunnels.entries()) {
          const name = `m${kind}0`;
          const held = spawn("/usr/sbin/ip", ["netns", "exec", ns, "python3", "-c", HOLD_TUN, name, kind], { stdio: ["pipe", "pipe", "inherit"] });
          children.push(held);
          let out = "";
          held.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
          await until(() => out.includes("held"), `the ${kind} device`, 10_000);
          ip("-n", ns, "addr", "add", `10.9.${i}.2/32`, "dev", name);
          ip("-n", ns, "link", "set", name, "up");
        }
        // Ten of the monitor's looks at the addresses with the tunnels up and their addresses listed.
        await new Promise((r) => setTimeout(r, 1_000));
        ip("-n", ns, "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p");
        ip("-n", ns, "addr", "add", "192.0.2.10/24", "dev", "eth9");
        for (const end of ["eth9p", "eth9"]) ip("-n", ns, "link", "set", end, "up");
        await until(() => heard.includes("changed"), "the monitor's note of the new network", 10_000);
        await new Promise((r) => setTimeout(r, 300));
        const changes = heard.split("\n").filter((l) => l.startsWith("changed"));
        expect(changes).to.deep.equal(["changed 192.0.2.10"]);
      });
    }),
  );
});
