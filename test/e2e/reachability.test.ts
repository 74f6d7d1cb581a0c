import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { expect } from "chai";
import type { Reachability, ReachabilityDetails } from "../../node/nat/reachability";
import { requireE2E } from "../../scripts/lib/prereqs";
import { type Topology, topologyUp } from "../../scripts/lib/topology";
import { until } from "../../scripts/lib/until";
import { buildCli } from "../support/cli";

const PROBE = path.join(__dirname, "..", "support", "reachability-probe.js");

type Measured = Reachability & { details: ReachabilityDetails };

/** The built node's measurement on the machine `netns` stands for; with `hold`, the probe keeps its socket and mapping until `stop()`. */
function probe(netns: string, options: { stunServers: string[]; portMapping?: boolean; methods?: string[]; lifetimeS?: number; hold?: boolean }) {
  const child: ChildProcess = spawn("/usr/sbin/ip", ["netns", "exec", netns, process.execPath, PROBE, JSON.stringify(options)], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const lines = () => out.split("\n").filter(Boolean);
  return {
    lines,
    result: async (): Promise<Measured> => {
      const line = await until(
        () => {
          if (child.exitCode !== null && lines().length === 0) throw new Error(`the probe in ${netns} exited ${child.exitCode}: ${err}`);
          return lines()[0];
        },
        `the measurement in ${netns}`,
        60_000,
      );
      return JSON.parse(line);
    },
    stop: async () => {
      child.stdin!.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
      if (!options.hold || !lines().includes("stopped")) throw new Error(`the probe in ${netns} did not stop cleanly: ${err}`);
    },
    kill: () => {
      if (child.exitCode === null) child.kill("SIGKILL");
      return exited;
    },
  };
}

/** Sends one datagram from the internet host to `address:port`. */
function sendFromInternet(topology: Topology, address: string, port: number, text: string): void {
  const script = `const s=require("dgram").createSocket("udp4");s.send(${JSON.stringify(text)},${port},${JSON.stringify(address)},()=>s.close())`;
  topology.exec(topology.internet, [process.execPath, "-e", script]);
}

/**
 * Reachability measured, never configured (issue 28): in each kind of home network of the test
 * internet — no port forwarded anywhere — the node's measurement with the real STUN server (coturn,
 * RFC 5780 on two addresses) and the real routers (nftables NAT, miniupnpd) classifies the NAT as it
 * is and names only contacts that lead to it.
 */
describe("e2e: a node measures how it can be reached behind each kind of router", function () {
  this.timeout(300_000);
  let topology: Topology;
  const kinds = ["public", "eim", "symmetric", "cgnat", "cgnat-upnp"] as const;
  const measured = new Map<string, Measured>();
  const probes: ReturnType<typeof probe>[] = [];

  before(async function () {
    requireE2E(this);
    buildCli();
    topology = await topologyUp({ consumers: kinds.length, nat: { provider: "upnp", consumer: [...kinds], udpTimeoutSeconds: 30 } });
    // Every machine measures at once, each asking its router for a port (none but the UPnP routers has one to give).
    const all = [topology.provider, ...topology.consumers].map((netns) => ({
      netns,
      p: probe(netns, { stunServers: topology.nat!.stunServers, portMapping: true }),
    }));
    probes.push(...all.map((a) => a.p));
    for (const { netns, p } of all) measured.set(netns, await p.result());
  });
  after(async function () {
    await Promise.all(probes.map((p) => p.kill()));
    await topology?.down();
  });

  const consumer = (kind: (typeof kinds)[number]) => topology.consumers[kinds.indexOf(kind)];

  it("every NAT router on the way (home routers and carriers) forgets an idle UDP mapping after the timeout asked (30 s)", function () {
    const routers = [topology.provider, ...topology.consumers].flatMap((n) => topology.nat!.natRoutersOf(n));
    expect(routers).to.have.length(7); // the UPnP router; none for the public consumer; 1, 1, 2, 2 for the others
    for (const r of routers)
      expect(
        topology
          .exec(r, ["/usr/sbin/sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream"])
          .split("\n")
          .filter(Boolean),
      ).to.deep.equal(["30", "30"]);
  });

  it("with a public address and nothing filtered: no NAT, a public contact on its own port", function () {
    const r = measured.get(consumer("public"))!;
    expect([r.mapping, r.filtering, r.publicAddress]).to.deep.equal(["none", "endpoint-independent", "198.18.1.2"]);
    expect(r.contacts).to.deep.equal([{ kind: "public", address: "198.18.1.2", port: r.details.localPort, protocol: "udp" }]);
    expect(r.summary).to.equal("a public address (198.18.1.2) with no NAT: reachable directly");
  });

  it("behind nftables masquerade: one port per socket, filtered by address and port, reachable by hole punching", function () {
    const r = measured.get(consumer("eim"))!;
    expect([r.mapping, r.filtering, r.publicAddress]).to.deep.equal(["endpoint-independent", "address-and-port-dependent", "198.18.1.3"]);
    expect(r.contacts.map((c) => [c.kind, c.address])).to.deep.equal([["punch-only", "198.18.1.3"]]);
    expect(r.details.portMapping).to.include({ advertised: false });
    expect(r.summary).to.equal("behind a home router that keeps one port per app: reachable by hole punching");
  });

  it("behind masquerade fully-random: a new port per destination (symmetric)", function () {
    const r = measured.get(consumer("symmetric"))!;
    expect([r.mapping, r.filtering, r.publicAddress]).to.deep.equal(["endpoint-dependent", "address-and-port-dependent", "198.18.1.4"]);
    expect(r.contacts.map((c) => c.kind)).to.deep.equal(["punch-only"]);
    expect(r.summary).to.include("symmetric NAT");
  });

  it("behind a home router inside a carrier's NAT: the carrier's address, never the 100.64/10 one", function () {
    const r = measured.get(consumer("cgnat"))!;
    expect([r.mapping, r.publicAddress]).to.deep.equal(["endpoint-independent", "198.18.1.5"]);
    expect(JSON.stringify(r.contacts)).not.to.match(/100\.64\.|192\.168\./);
  });

  it("behind a miniupnpd router inside a carrier's NAT: the router maps a port, the node sees it leads nowhere, gives it back and does not advertise it", function () {
    const r = measured.get(consumer("cgnat-upnp"))!;
    expect(r.details.portMapping?.mapping?.externalAddress).to.equal("11.2.5.2");
    expect(r.details.portMapping?.advertised).to.equal(false);
    expect(r.details.portMapping?.reason).to.include("the internet sees 198.18.1.6");
    expect(r.contacts.map((c) => c.kind)).to.deep.equal(["punch-only"]);
    const router = topology.nat!.natRoutersOf(consumer("cgnat-upnp"))[0];
    expect(topology.exec(router, ["/usr/sbin/nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd"])).not.to.include("dport");
  });

  it("behind a miniupnpd router: a mapped contact first, then the punch-only one; the mapping given back when the measurement ends", async function () {
    const r = measured.get(topology.provider)!;
    expect([r.mapping, r.publicAddress]).to.deep.equal(["endpoint-independent", "11.3.0.2"]);
    expect(r.contacts.map((c) => [c.kind, c.address])).to.deep.equal([
      ["mapped", "11.3.0.2"],
      ["punch-only", "11.3.0.2"],
    ]);
    expect(r.summary).to.match(/^behind a home router that opened port \d+ for this node on 11\.3\.0\.2: reachable directly$/);
    const port = r.contacts[0].port;
    await until(
      () => !topology.exec(topology.gateway, ["/usr/sbin/nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd"]).includes(`dport ${port}`),
      "the router to forget the mapping of a measurement that ended",
    );
  });

  for (const method of ["pcp", "nat-pmp", "upnp"] as const)
    it(`maps with ${{ pcp: "PCP", "nat-pmp": "NAT-PMP", upnp: "UPnP-IGD" }[method]} alone: the internet's datagram to the mapped port arrives, and no port is left open after stop`, async function () {
      const held = probe(topology.provider, { stunServers: topology.nat!.stunServers, portMapping: true, methods: [method], hold: true });
      probes.push(held);
      const r = await held.result();
      expect(r.details.portMapping?.mapping?.method).to.equal(method);
      const mapped = r.contacts.find((c) => c.kind === "mapped")!;
      const rules = () => topology.exec(topology.gateway, ["/usr/sbin/nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd"]);
      expect(rules()).to.include(`dport ${mapped.port}`);
      sendFromInternet(topology, mapped.address, mapped.port, "hello through the mapping");
      await until(() => held.lines().some((l) => l.startsWith("got hello through the mapping from 198.18.2.2:")), "the datagram through the router's mapping");
      await held.stop();
      expect(rules()).not.to.include(`dport ${mapped.port}`);
    });

  it("renews the router's mapping before it expires, and the port keeps leading to the node", async function () {
    const held = probe(topology.provider, { stunServers: topology.nat!.stunServers, portMapping: true, lifetimeS: 4, hold: true });
    probes.push(held);
    const r = await held.result();
    const mapped = r.contacts.find((c) => c.kind === "mapped")!;
    expect(r.details.portMapping?.mapping?.method, "PCP is asked first").to.equal("pcp");
    await until(() => held.lines().filter((l) => l === `renewed ${mapped.port}`).length >= 3, "three renewals of a 4 s mapping (one every 2 s)", 30_000);
    sendFromInternet(topology, mapped.address, mapped.port, "still mapped");
    await until(() => held.lines().some((l) => l.startsWith("got still mapped")), "the datagram through the renewed mapping");
    await held.stop();
  });

  it("an unsolicited datagram to a punch-only contact does not get in (no port is forwarded)", async function () {
    const held = probe(consumer("eim"), { stunServers: topology.nat!.stunServers, hold: true });
    probes.push(held);
    const contact = (await held.result()).contacts[0];
    const control = probe(consumer("public"), { stunServers: topology.nat!.stunServers, hold: true });
    probes.push(control);
    const open = (await control.result()).contacts[0];
    sendFromInternet(topology, contact.address, contact.port, "unasked");
    sendFromInternet(topology, open.address, open.port, "unasked");
    // The public node's datagram, sent second, arriving means the first had its chance.
    await until(() => control.lines().some((l) => l.startsWith("got unasked")), "the datagram to the public node");
    expect(held.lines().filter((l) => l.startsWith("got"))).to.deep.equal([]);
    await held.stop();
    await control.stop();
  });
});
