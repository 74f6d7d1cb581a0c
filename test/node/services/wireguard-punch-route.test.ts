import { expect } from "chai";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import { endNftSessions } from "../../../node/consumer-protection/nft-session";
import { until } from "../../../scripts/lib/until";
import { ConntrackForgetter } from "../../../node/services/wireguard/conntrack-forget";
import { PUNCH_TABLE, PunchRoutes, punchTableScript, routeScript } from "../../../node/services/wireguard/punch-route";

const nftCheckable = fs.existsSync("/usr/sbin/nft") && process.getuid?.() === 0;

describe("wireguard: the provider's punch route (its tunnel leaves from the probing socket's port)", function () {
  const route = { consumer: "198.18.5.1", consumerPort: 40100, tunnelPort: 51820, localPort: 40555 };

  it("writes one element each way per session, and tracks the probing port again as the route starts", function () {
    const add = routeScript(route, "add", true);
    expect(add).to.include(`delete element ip ${PUNCH_TABLE} probe_ports { 40555 }`);
    expect(add).to.include(`add element ip ${PUNCH_TABLE} out_ports { 198.18.5.1 . 40100 . 51820 : 40555 }`);
    expect(add).to.include(`add element ip ${PUNCH_TABLE} in_ports { 198.18.5.1 . 40100 . 40555 : 51820 }`);
    expect(routeScript(route, "delete")).to.not.include("probe_ports");
    expect(punchTableScript()).to.include("udp sport @probe_ports notrack");
  });

  it("refuses a route that is not an IPv4 address and UDP ports, or that points the tunnel at its own port", function () {
    expect(() => routeScript({ ...route, consumer: "2001:db8::1" }, "add")).to.throw(/not IPv4/);
    expect(() => routeScript({ ...route, consumer: "1.2.3.4 } ; flush ruleset ; {" }, "add")).to.throw(/not IPv4/);
    expect(() => routeScript({ ...route, localPort: 70000 }, "add")).to.throw(/not a UDP port/);
    expect(() => routeScript({ ...route, localPort: 51820 }, "add")).to.throw(/tunnel's own/);
  });

  (nftCheckable ? describe : describe.skip)("in a namespace (a provider host and a consumer on one link)", function () {
    this.timeout(30_000);
    const tag = `myst-pr${crypto.randomBytes(2).toString("hex")}`;
    const [p, c] = [`${tag}-p`, `${tag}-c`];
    const ip = (...args: string[]) => execFileSync("/usr/sbin/ip", args, { encoding: "utf8" });
    let responder: ChildProcess;
    const heard: string[] = [];
    const routes = () => new PunchRoutes(p);
    /** Sends `message` from port `from` (in `netns`) to `to`; resolves with the answer's source, or "none". */
    const SEND = `
      const s = require("node:dgram").createSocket("udp4");
      const [from, host, port, message] = process.argv.slice(1);
      const done = (out) => { console.log(out); s.close(); };
      const timer = setTimeout(() => done("none"), 2000);
      s.on("message", (m, r) => { clearTimeout(timer); done(r.address + ":" + r.port + " " + m); });
      s.bind(Number(from), () => s.send(message, Number(port), host));`;
    const send = (netns: string, from: number, to: string, port: number, message: string) =>
      execFileSync("/usr/sbin/ip", ["netns", "exec", netns, process.execPath, "-e", SEND, String(from), to, String(port), message], {
        encoding: "utf8",
      }).trim();
    /** The consumer's tunnels: each datagram answered ("ack") and its source noted. */
    const RESPOND = `
      const dgram = require("node:dgram");
      for (const port of [40100]) {
        const s = dgram.createSocket("udp4");
        s.on("message", (m, r) => { console.log(port + " " + r.port + " " + m); s.send("ack " + m, r.port, r.address); });
        s.bind(port, () => console.log("ready " + port));
      }`;

    /** wireguard-go's socket on the tunnel's port: answers what reaches it. */
    const TUNNEL = `
      const s = require("node:dgram").createSocket("udp4");
      s.on("message", (m, r) => { console.log(r.port + " " + m); s.send("ack " + m, r.port, r.address); });
      s.bind(51820, () => console.log("ready"));`;

    before(async function () {
      for (const n of [p, c]) {
        ip("netns", "add", n);
        ip("-n", n, "link", "set", "lo", "up");
      }
      const id = crypto.randomBytes(3).toString("hex");
      ip("link", "add", `mk${id}a`, "type", "veth", "peer", "name", `mk${id}b`);
      ip("link", "set", `mk${id}a`, "netns", p, "name", "eth0");
      ip("link", "set", `mk${id}b`, "netns", c, "name", "eth0");
      ip("-n", p, "addr", "add", "198.18.5.2/24", "dev", "eth0");
      ip("-n", c, "addr", "add", "198.18.5.1/24", "dev", "eth0");
      for (const n of [p, c]) ip("-n", n, "link", "set", "eth0", "up");
      responder = spawn("/usr/sbin/ip", ["netns", "exec", c, process.execPath, "-e", RESPOND], { stdio: ["ignore", "pipe", "inherit"] });
      responder.stdout!.setEncoding("utf8").on("data", (d: string) => heard.push(...d.trim().split("\n")));
      const deadline = Date.now() + 10_000;
      while (!heard.includes("ready 40100") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    });

    after(function () {
      responder?.kill();
      endNftSessions();
      for (const n of [p, c]) if (fs.existsSync(`/run/netns/${n}`)) ip("netns", "del", n);
    });

    const tables = () => ip("netns", "exec", p, "/usr/sbin/nft", "list", "tables");

    it("sends the tunnel's packets from the port the probe used, brings the answers to the tunnel's port, and leaves nothing when the session ends", async function () {
      const punch = routes();
      await punch.probing([40555, 40556]);
      // The probe: untracked, so the host keeps no conntrack entry for it that the tunnel's flow would clash with.
      expect(send(p, 40555, "198.18.5.1", 40100, "probe")).to.equal("198.18.5.1:40100 ack probe");
      await punch.route("s1", route);
      // wireguard-go (here: a socket on the tunnel's port) sends: the consumer sees the probe's port, and its answer comes back to the tunnel's port.
      expect(send(p, 51820, "198.18.5.1", 40100, "tunnel")).to.equal("198.18.5.1:40100 ack tunnel");
      // What the consumer saw, once its output is read (the sends above held this process).
      await until(() => heard.some((l) => l.endsWith(" tunnel")), "the consumer's note of the tunnel's datagram");
      expect(heard.filter((l) => !l.startsWith("ready"))).to.deep.equal(["40100 40555 probe", "40100 40555 tunnel"]);
      // The consumer sends first (its handshake arrives before ours leaves): it reaches the tunnel's
      // port all the same, and the tunnel's answer leaves from the probe's port.
      await punch.route("s2", { ...route, consumerPort: 40102, localPort: 40556 });
      const tunnel = spawn("/usr/sbin/ip", ["netns", "exec", p, process.execPath, "-e", TUNNEL], { stdio: ["ignore", "pipe", "inherit"] });
      let tunnelHeard = "";
      tunnel.stdout!.setEncoding("utf8").on("data", (d: string) => (tunnelHeard += d));
      const deadline = Date.now() + 10_000;
      while (!tunnelHeard.includes("ready") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(send(c, 40102, "198.18.5.2", 40556, "handshake")).to.equal("198.18.5.2:40556 ack handshake");
      await until(() => tunnelHeard.includes("handshake"), "the tunnel's note of the consumer's datagram");
      tunnel.kill();
      expect(tunnelHeard).to.include("40102 handshake");
      await punch.release("s1");
      expect(tables()).to.include(PUNCH_TABLE);
      await punch.release("s2");
      expect(tables()).to.not.include(PUNCH_TABLE);
    });

    it("takes the probe's port also when the host tracked the probe (its conntrack entry is dropped as the route starts)", async function () {
      const punch = routes();
      // The table (and so connection tracking) in place, but the probing port not untracked.
      await punch.probing([]);
      expect(send(p, 40557, "198.18.5.1", 40100, "tracked probe")).to.equal("198.18.5.1:40100 ack tracked probe");
      await punch.route("s3", { ...route, localPort: 40557 });
      expect(send(p, 51820, "198.18.5.1", 40100, "tunnel again")).to.equal("198.18.5.1:40100 ack tunnel again");
      await until(() => heard.some((l) => l.endsWith(" tunnel again")), "the consumer's note of the tunnel's datagram");
      expect(heard.filter((l) => l.endsWith("tracked probe") || l.endsWith("tunnel again"))).to.deep.equal([
        "40100 40557 tracked probe",
        "40100 40557 tunnel again",
      ]);
      await punch.release("s3");
      expect(tables()).to.not.include(PUNCH_TABLE);
    });

    it("has the table made while a search runs, routes in one step when it meets, and leaves nothing when the session ends either way", async function () {
      const punch = routes();
      await punch.prepare("met");
      await punch.prepare("missed");
      expect(tables()).to.include(PUNCH_TABLE);
      // The probe tracked by the host (as on a node): the route forgets its flow (the warm forgetter, conntrack-forget.ts).
      expect(send(p, 40558, "198.18.5.1", 40100, "prepared probe")).to.equal("198.18.5.1:40100 ack prepared probe");
      // Forgotten by the warm forgetter, not by `conntrack -D` (its fallback, which would pass the rest of this case as well).
      expect(await punch.route("met", { ...route, localPort: 40558 })).to.equal("ctnetlink");
      expect(send(p, 51820, "198.18.5.1", 40100, "prepared tunnel")).to.equal("198.18.5.1:40100 ack prepared tunnel");
      await until(() => heard.some((l) => l.endsWith(" prepared tunnel")), "the consumer's note of the tunnel's datagram");
      expect(heard.filter((l) => l.endsWith(" prepared tunnel"))).to.deep.equal(["40100 40558 prepared tunnel"]);
      await punch.release("missed");
      expect(tables()).to.include(PUNCH_TABLE);
      await punch.release("met");
      expect(tables()).to.not.include(PUNCH_TABLE);
      // A search that never met, alone: its table goes with it.
      await punch.prepare("alone");
      await punch.release("alone");
      expect(tables()).to.not.include(PUNCH_TABLE);
    });

    it("forgets the flow between the consumer's tunnel and one probing port over ctnetlink, in either direction, and no other", async function () {
      const punch = routes();
      await punch.probing([]); // the table: connection tracking on in the namespace
      const flows = () =>
        execFileSync("/usr/sbin/ip", ["netns", "exec", p, "/usr/sbin/conntrack", "-L", "-p", "udp"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
      expect(send(p, 40570, "198.18.5.1", 40100, "ours")).to.equal("198.18.5.1:40100 ack ours");
      expect(send(p, 40571, "198.18.5.1", 40100, "another")).to.equal("198.18.5.1:40100 ack another");
      expect(send(c, 40101, "198.18.5.2", 40572, "inbound")).to.equal("none"); // nothing listens: the entry stays
      const forgetter = new ConntrackForgetter(p);
      try {
        expect(flows()).to.include("sport=40570").and.include("sport=40571").and.include("dport=40572");
        expect(await forgetter.forget("198.18.5.1", 40100, 40570)).to.equal(1);
        expect(await forgetter.forget("198.18.5.1", 40101, 40572)).to.equal(1);
        const left = flows();
        expect(left).to.not.include("sport=40570");
        expect(left).to.not.include("dport=40572");
        expect(left).to.include("sport=40571");
        // Gone already: none, and no error.
        expect(await forgetter.forget("198.18.5.1", 40100, 40570)).to.equal(0);
      } finally {
        forgetter.end();
      }
      await punch.release("never-routed");
      await punch.clear();
      expect(tables()).to.not.include(PUNCH_TABLE);
    });

    it("a search that failed leaves nothing behind: its probing ports go, and with them the table", async function () {
      const punch = routes();
      await punch.probing([40601, 40602, 40603]);
      expect(tables()).to.include(PUNCH_TABLE);
      await punch.release("never-routed", [40601, 40602, 40603]);
      expect(tables()).to.not.include(PUNCH_TABLE);
    });
  });
});
