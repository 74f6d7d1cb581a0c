import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  type HomePlan,
  type HomeUplink,
  masqueradeRules,
  type NatNetwork,
  type NatOptions,
  natNetwork,
  natPlan,
  setUdpTimeout,
  startMiniupnpd,
  startStunServer,
} from "./home-routers";
import { stopChild } from "./local-chain";
import { inNs, IP, ip, nft } from "./netns-exec";
import { until } from "./until";

export { type NatKind, type NatNetwork, type NatOptions, flushConntrack } from "./home-routers";
export { downloadFrom, fetchFrom, keepFetching, onConsumerMachine, resolveFrom, routesOf } from "./netns-exec";

/**
 * The e2e and demo network, shaped like the real internet (all namespaces named myst-<tag>-…):
 *
 *   consumer c1 198.18.1.2  2001:db8:1::2 ─┐                         ┌─ 198.18.2.2  2001:db8:2::2  internet host i
 *   consumer c2 198.18.1.3  2001:db8:1::3 ─┤ br0                     │  (HTTP "whoami" :8080 on both addresses)
 *                      198.18.1.1 2001:db8:1::1 ── router r ── 198.18.2.1 2001:db8:2::1
 *                                                      │ 198.18.3.1 2001:db8:3::1
 *                                                      │
 *                                      198.18.3.2 2001:db8:3::2  provider's gateway g
 *                                      (NAT: the provider's public IPv4 is g's; every port is forwarded to p)
 *                                                      │ 192.168.88.1 2001:db8:4::1
 *                                                      │
 *                                      192.168.88.2 2001:db8:4::2  provider p ── 192.168.77.1 ── 192.168.77.2 LAN host l
 *
 * Each consumer has its own default routes (IPv4 and IPv6) via the router r, as behind any ISP:
 * it reaches the internet host with its own addresses until a tunnel takes over. The provider is
 * two routers away, behind a NAT gateway that forwards its ports (a "DMZ host"), so the consumer's
 * tunnel must keep its own route to the provider's public address while its default route points
 * into the tunnel. The internet host answers each request with the caller's address. Addresses are
 * from 198.18.0.0/15 (benchmarking), 2001:db8::/32 (documentation) and 192.168.0.0/16, and exist
 * only inside these namespaces.
 *
 * With `provider: "public"`, the first provider has a public address of its own (198.18.10.2, on
 * g's 198.18.10.1; g routes without NAT): nothing is translated on the way to it.
 *
 * The services host s (198.18.9.2, 2001:db8:9::2, on the router's 198.18.9.1 / 2001:db8:9::1) is
 * where the marketplace's shared services are on this internet: `publish(port)` makes a service
 * listening on 127.0.0.1:port in the root namespace (a test's chain, broker, discovery) reachable at
 * 198.18.9.2:port, so a consumer's node inside its namespace reaches them over the routers, as a
 * consumer on its own machine reaches them on the internet (scripts/netns/bridge.js).
 *
 * With `providers: 2`, a second provider p2 (192.168.89.2, 2001:db8:6::2) sits behind its own NAT
 * gateway g2 (198.18.4.2 on the router's 198.18.4.1, 2001:db8:5::/64; LAN 192.168.89.1,
 * 2001:db8:6::1), shaped like the first: the internet host sees it as 198.18.4.2. With `providers: 3`
 * (only with `nat`), a third provider p3 (192.168.90.2) sits behind a home router g3 of the kind
 * `nat.thirdProvider` names (WAN 198.18.5.2 on the router's 198.18.5.1, or 11.7.0.2 for UPnP).
 *
 * With `nat` (scripts/lib/home-routers.ts), nobody forwards a port: the provider sits behind a home
 * router of the kind `nat.provider` names ("eim" by default: nftables `masquerade`; "symmetric":
 * `masquerade fully-random`; "cgnat": a home router whose WAN is 100.64.3.2, behind the carrier's NAT
 * at 198.18.3.2; "upnp": miniupnpd on a router whose WAN is 11.3.0.2; "cgnat-upnp": miniupnpd behind a
 * carrier's NAT; "public": 198.18.10.2, routed), on the LAN 192.168.88.0/24 (the provider .2). Each
 * consumer sits behind its own home router of the kind `nat.consumer` names ("public", the default,
 * keeps it on the ISP's LAN as above): that router's WAN takes the consumer's 198.18.1.<i+2> on br0
 * (or 11.1.<i+1>.2 on a link of its own for "upnp"), its LAN is 192.168.<100+i>.0/24. `sameRouter`
 * puts the first consumer on the provider's LAN (192.168.88.3). A real STUN server (coturn) answers on
 * the internet host at 198.18.2.2 and 198.18.2.3, ports 3478 and 3479 (RFC 5780). Hosts behind a home
 * router have no IPv6. `topology.nat` says where each node's routers are.
 *
 * What the leak tests count with:
 * - **the LAN resolver** (dnsmasq on the router, 198.18.1.1 and 2001:db8:1::1, the consumers'
 *   resolver in /etc/netns/<consumer>/resolv.conf, which `ip netns exec` mounts over /etc/resolv.conf):
 *   answers `whoami.test` with the internet host's addresses and logs every query it gets
 *   (`lanResolverQueries()`);
 * - **the public resolver** on the internet host (198.18.2.2:53, the provider's upstream in
 *   /etc/netns/<provider>/resolv.conf): answers `whoami.test` too, and `lan.test` with the
 *   provider's private LAN host 192.168.77.2 (a name a provider's resolver must not hand out);
 * - **packet counters on the internet host** (nftables, before anything else sees a packet):
 *   every packet arriving there from consumer i's own IPv4 or IPv6 address (`packetsFrom(i)`).
 */
export interface Topology {
  tag: string;
  consumers: string[];
  /** The router between consumers, the provider's gateway and the internet host. */
  router: string;
  /** The provider's NAT gateway (its "home router"). */
  gateway: string;
  provider: string;
  /** Every provider namespace, `provider` first (`providers: 2` adds one behind its own gateway). */
  providers: string[];
  /** Provider i's public address (its gateway's), which is also what the internet host sees of it. */
  providerAddressOf(i: number): string;
  internet: string;
  lan: string;
  /** The services host: where `publish` makes the root namespace's loopback services reachable. */
  services: string;
  servicesAddress: string;
  /**
   * Makes the service on 127.0.0.1:`port` (root namespace) reachable at `servicesAddress`:`port`
   * from every namespace of the topology, through its routers. Returns "198.18.9.2:<port>".
   */
  publish(port: number): Promise<string>;
  /** The provider's public address: what consumers connect to, and what the internet host sees of it. */
  providerAddress: string;
  /** The address the internet host sees when the provider's traffic (and its consumers') leaves. */
  providerUplinkAddress: string;
  /** The provider's own (routed, not translated) IPv6 address. */
  providerAddress6: string;
  internetAddress: string;
  internetAddress6: string;
  internetUrl: string;
  internetUrl6: string;
  lanUrl: string;
  consumerAddress(i: number): string;
  consumerAddress6(i: number): string;
  /** The name both resolvers answer with the internet host's addresses. */
  whoamiName: string;
  whoamiNameUrl: string;
  /** The LAN resolver's address, the consumers' resolver before any tunnel. */
  lanResolver: string;
  /** How many DNS queries the consumers' LAN resolver has received so far. */
  lanResolverQueries(): number;
  /** Packets that reached the internet host from consumer i's own addresses so far (counted there). */
  packetsFrom(i: number): { v4: number; v6: number };
  /** The resolver file `ip netns exec` mounts over /etc/resolv.conf in `netns`. */
  resolvConfOf(netns: string): string;
  /** Runs a command in a namespace and returns its stdout. */
  exec(netns: string, argv: string[], options?: { timeoutMs?: number }): string;
  /** Removes everything: processes started here (by PID), then the namespaces. */
  down(): Promise<void>;
  /** With `nat`: the home routers, the STUN server and what each node's path through them is. */
  nat?: NatNetwork;
  /** The relay hosts (`relays`), and each one's public address. */
  relays: string[];
  relayAddressOf(i: number): string;
}

export interface TopologyOptions {
  tag?: string;
  consumers?: number;
  providers?: 1 | 2 | 3;
  /** Without `nat`: the provider behind a gateway that forwards every port to it (default), or with its own public address. */
  provider?: "forwarded" | "public";
  /** Home routers with no port forwarding (see `NatOptions`); replaces `provider`. */
  nat?: NatOptions;
  /**
   * Relay hosts with public addresses of their own (`myst-<tag>-rl<i>`, 198.18.<20+i>.2 on the
   * router's 198.18.<20+i>.1): nodes that sell a relay (services/relay).
   */
  relays?: number;
}

export async function topologyUp(options: TopologyOptions = {}): Promise<Topology> {
  const tag = options.tag ?? crypto.randomBytes(2).toString("hex");
  const ns = (name: string) => `myst-${tag}-${name}`;
  const consumers = Array.from({ length: options.consumers ?? 1 }, (_v, i) => ns(`c${i + 1}`));
  const [router, gateway, provider, internet, lan, services] = [ns("r"), ns("g"), ns("p"), ns("i"), ns("l"), ns("s")];
  const plan = options.nat ? natPlan(options.nat, consumers.length, ns) : undefined;
  if (plan && options.provider) throw new Error("topologyUp: `nat` and `provider` are alternatives: say the provider's kind in nat.provider");
  if (plan && (options.providers ?? 1) >= 2 && !plan.secondProviderHome)
    throw new Error("topologyUp: with `nat`, a second provider needs its home router's kind (nat.secondProvider)");
  if (plan?.secondProviderHome && (options.providers ?? 1) < 2) throw new Error("topologyUp: nat.secondProvider needs `providers: 2` or 3");
  if (!plan?.thirdProviderHome !== (options.providers !== 3)) throw new Error("topologyUp: `providers: 3` and nat.thirdProvider go together");
  const publicProvider = options.provider === "public" || plan?.provider === "public";
  const providerLan = publicProvider ? { gateway: "198.18.10.1", provider: "198.18.10.2" } : { gateway: "192.168.88.1", provider: "192.168.88.2" };
  const second = (options.providers ?? 1) >= 2 ? { gateway: ns("g2"), provider: ns("p2") } : undefined;
  const third = options.providers === 3 ? { gateway: ns("g3"), provider: ns("p3") } : undefined;
  const relays = Array.from({ length: options.relays ?? 0 }, (_v, i) => ns(`rl${i}`));
  const all = [
    ...consumers,
    router,
    gateway,
    provider,
    internet,
    lan,
    services,
    ...[second, third].flatMap((home) => (home ? [home.gateway, home.provider] : [])),
    ...(plan?.extraNamespaces ?? []),
    ...relays,
  ];
  const children: ChildProcess[] = [];
  const logs = fs.mkdtempSync(path.join(os.tmpdir(), `myst-topology-${tag}-`));
  const lanResolverLog = path.join(logs, "lan-resolver.log");
  const consumerPublic = (i: number) => plan?.consumerPublicAddress(i) ?? `198.18.1.${i + 2}`;

  const down = async () => {
    await Promise.all(children.map((c) => stopChild(c)));
    fs.rmSync(logs, { recursive: true, force: true });
    for (const n of all) {
      try {
        const pids = execFileSync(IP, ["netns", "pids", n], { encoding: "utf8" }).split(/\s+/).filter(Boolean);
        for (const pid of pids) process.kill(Number(pid), "SIGKILL");
      } catch {
        // namespace already gone
      }
      try {
        ip("netns", "del", n);
      } catch {
        // not there
      }
      fs.rmSync(path.join("/etc/netns", n), { recursive: true, force: true });
    }
  };

  try {
    for (const n of all) {
      ip("netns", "add", n);
      ip("-n", n, "link", "set", "lo", "up");
    }
    const veth = (a: string, aName: string, b: string, bName: string) => {
      const id = crypto.randomBytes(3).toString("hex");
      ip("link", "add", `mv${id}a`, "type", "veth", "peer", "name", `mv${id}b`);
      ip("link", "set", `mv${id}a`, "netns", a, "name", aName);
      ip("link", "set", `mv${id}b`, "netns", b, "name", bName);
      ip("-n", a, "link", "set", aName, "up");
      ip("-n", b, "link", "set", bName, "up");
    };
    // `nodad`: an IPv6 address is usable at once instead of after duplicate address detection.
    const addr = (n: string, dev: string, v4: string, v6?: string) => {
      ip("-n", n, "addr", "add", v4, "dev", dev);
      if (v6) ip("-n", n, "-6", "addr", "add", v6, "dev", dev, "nodad");
    };
    const forwarding = (n: string) => inNs(n, ["/usr/sbin/sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    // A home network with no port forwarding: its router (behind a carrier's NAT for the CGNAT kinds), a LAN bridge, its hosts.
    const buildHome = async (home: HomePlan, link: HomeUplink & { routerIface: string }, hosts: string[]) => {
      const outer = home.carrier ?? home.router;
      veth(outer, "wan0", router, link.routerIface);
      if (link.routerCidr) addr(router, link.routerIface, link.routerCidr);
      else ip("-n", router, "link", "set", link.routerIface, "master", "br0");
      addr(outer, "wan0", link.cidr);
      ip("-n", outer, "route", "add", "default", "via", link.via);
      if (home.carrier) {
        forwarding(home.carrier);
        veth(home.carrier, "lan0", home.router, "wan0");
        addr(home.carrier, "lan0", `${home.carrierLan}.1/24`);
        addr(home.router, "wan0", `${home.carrierLan}.2/24`);
        ip("-n", home.router, "route", "add", "default", "via", `${home.carrierLan}.1`);
        nft(home.carrier, masqueradeRules("100.64.0.0/10", false));
      }
      forwarding(home.router);
      ip("-n", home.router, "link", "add", "lan0", "type", "bridge");
      ip("-n", home.router, "link", "set", "lan0", "up");
      addr(home.router, "lan0", `${home.lan}.1/24`);
      hosts.forEach((h, k) => {
        veth(h, "eth0", home.router, `port${k}`);
        ip("-n", home.router, "link", "set", `port${k}`, "master", "lan0");
        addr(h, "eth0", `${home.lan}.${k + 2}/24`);
        ip("-n", h, "route", "add", "default", "via", `${home.lan}.1`);
      });
      if (home.kind === "upnp" || home.kind === "cgnat-upnp") children.push(await startMiniupnpd(home, logs));
      else nft(home.router, masqueradeRules(`${home.lan}.0/24`, home.kind === "symmetric", home.kind, home.dmzHost));
    };

    // The router: the consumers' LAN (a bridge), the internet host's link, the provider gateway's link.
    forwarding(router);
    ip("-n", router, "link", "add", "br0", "type", "bridge");
    ip("-n", router, "link", "set", "br0", "up");
    addr(router, "br0", "198.18.1.1/24", "2001:db8:1::1/64");
    consumers.forEach((c, i) => {
      if (plan && plan.consumerKinds[i] !== "public") return; // behind a home router: built below
      veth(c, "eth0", router, `cons${i + 1}`);
      ip("-n", router, "link", "set", `cons${i + 1}`, "master", "br0");
      addr(c, "eth0", `198.18.1.${i + 2}/24`, `2001:db8:1::${i + 2}/64`);
      ip("-n", c, "route", "add", "default", "via", "198.18.1.1");
      ip("-n", c, "-6", "route", "add", "default", "via", "2001:db8:1::1");
    });
    veth(router, "inet0", internet, "eth0");
    addr(router, "inet0", "198.18.2.1/24", "2001:db8:2::1/64");
    addr(internet, "eth0", "198.18.2.2/24", "2001:db8:2::2/64");
    ip("-n", internet, "route", "add", "default", "via", "198.18.2.1");
    ip("-n", internet, "-6", "route", "add", "default", "via", "2001:db8:2::1");
    if (plan?.providerHome) {
      // No port forwarding: the provider (and with `sameRouter` the first consumer) behind a home router of its kind.
      const home = plan.providerHome;
      const hosts = [provider, ...(plan.sameRouter ? [consumers[0]] : [])];
      await buildHome(home, { routerIface: "prov0", ...home.uplink }, hosts);
    } else {
      veth(router, "prov0", gateway, "wan0");
      addr(router, "prov0", "198.18.3.1/24", "2001:db8:3::1/64");
      addr(gateway, "wan0", "198.18.3.2/24", "2001:db8:3::2/64");
      ip("-n", router, "-6", "route", "add", "2001:db8:4::/64", "via", "2001:db8:3::2");

      // The provider's gateway: NAT for IPv4 (every inbound port forwarded to the provider), routed IPv6.
      forwarding(gateway);
      ip("-n", gateway, "route", "add", "default", "via", "198.18.3.1");
      ip("-n", gateway, "-6", "route", "add", "default", "via", "2001:db8:3::1");
      veth(gateway, "lan0", provider, "eth0");
      addr(gateway, "lan0", `${providerLan.gateway}/24`, "2001:db8:4::1/64");
      addr(provider, "eth0", `${providerLan.provider}/24`, "2001:db8:4::2/64");
      ip("-n", provider, "route", "add", "default", "via", providerLan.gateway);
      ip("-n", provider, "-6", "route", "add", "default", "via", "2001:db8:4::1");
      if (publicProvider) {
        ip("-n", router, "route", "add", "198.18.10.0/24", "via", "198.18.3.2");
      } else {
        const iptables = (...args: string[]) => inNs(gateway, ["/usr/sbin/iptables", "-w", ...args]);
        iptables("-t", "nat", "-A", "PREROUTING", "-i", "wan0", "-j", "DNAT", "--to-destination", providerLan.provider);
        iptables("-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-s", "192.168.88.0/24", "-j", "MASQUERADE");
      }
    }
    if (plan) {
      for (const [i, home] of plan.consumerHomes.entries()) {
        if (home) await buildHome(home, { routerIface: `cons${i + 1}`, ...home.uplink }, [consumers[i]]);
      }
      for (const r of plan.natRouters) if (options.nat?.udpTimeoutSeconds !== undefined) setUdpTimeout(r, options.nat.udpTimeoutSeconds);
    }

    // The services host: the shared services (chain, broker, discovery) `publish` brings here.
    veth(router, "svc0", services, "eth0");
    addr(router, "svc0", "198.18.9.1/24", "2001:db8:9::1/64");
    addr(services, "eth0", "198.18.9.2/24", "2001:db8:9::2/64");
    ip("-n", services, "route", "add", "default", "via", "198.18.9.1");
    ip("-n", services, "-6", "route", "add", "default", "via", "2001:db8:9::1");

    relays.forEach((relay, i) => {
      // A relay host: a public address of its own, one hop from the router.
      veth(router, `rly${i}`, relay, "eth0");
      addr(router, `rly${i}`, `198.18.${20 + i}.1/24`);
      addr(relay, "eth0", `198.18.${20 + i}.2/24`);
      ip("-n", relay, "route", "add", "default", "via", `198.18.${20 + i}.1`);
    });

    if (second && plan?.secondProviderHome) {
      // The second provider behind a home router of its own kind, forwarding nothing.
      await buildHome(plan.secondProviderHome, { routerIface: "prov1", ...plan.secondProviderHome.uplink }, [second.provider]);
    } else if (second) {
      // The second provider, behind its own NAT gateway, like the first.
      veth(router, "prov1", second.gateway, "wan0");
      addr(router, "prov1", "198.18.4.1/24", "2001:db8:5::1/64");
      addr(second.gateway, "wan0", "198.18.4.2/24", "2001:db8:5::2/64");
      ip("-n", router, "-6", "route", "add", "2001:db8:6::/64", "via", "2001:db8:5::2");
      forwarding(second.gateway);
      ip("-n", second.gateway, "route", "add", "default", "via", "198.18.4.1");
      ip("-n", second.gateway, "-6", "route", "add", "default", "via", "2001:db8:5::1");
      veth(second.gateway, "lan0", second.provider, "eth0");
      addr(second.gateway, "lan0", "192.168.89.1/24", "2001:db8:6::1/64");
      addr(second.provider, "eth0", "192.168.89.2/24", "2001:db8:6::2/64");
      ip("-n", second.provider, "route", "add", "default", "via", "192.168.89.1");
      ip("-n", second.provider, "-6", "route", "add", "default", "via", "2001:db8:6::1");
      const iptables2 = (...args: string[]) => inNs(second.gateway, ["/usr/sbin/iptables", "-w", ...args]);
      iptables2("-t", "nat", "-A", "PREROUTING", "-i", "wan0", "-j", "DNAT", "--to-destination", "192.168.89.2");
      iptables2("-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-s", "192.168.89.0/24", "-j", "MASQUERADE");
    }

    // The third provider behind a home router of its own kind, forwarding nothing.
    if (third && plan?.thirdProviderHome) await buildHome(plan.thirdProviderHome, { routerIface: "prov2", ...plan.thirdProviderHome.uplink }, [third.provider]);

    // A host on the provider's private LAN, which consumers must not reach.
    veth(provider, "lan0", lan, "eth0");
    addr(provider, "lan0", "192.168.77.1/24");
    addr(lan, "eth0", "192.168.77.2/24");
    ip("-n", lan, "route", "add", "default", "via", "192.168.77.1");

    // Resolvers: each namespace's /etc/resolv.conf (as `ip netns exec` shows it) names its own.
    const resolvConf = (n: string, server: string) => {
      fs.mkdirSync(path.join("/etc/netns", n), { recursive: true });
      fs.writeFileSync(path.join("/etc/netns", n, "resolv.conf"), `nameserver ${server}\n`);
    };
    for (const c of consumers) resolvConf(c, "198.18.1.1");
    for (const n of [
      provider,
      gateway,
      router,
      internet,
      lan,
      services,
      ...[second, third].flatMap((home) => (home ? [home.gateway, home.provider] : [])),
      ...(plan?.extraNamespaces ?? []),
      ...relays,
    ])
      resolvConf(n, "198.18.2.2");
    const dnsmasq = async (n: string, listen: string[], names: [string, string][], log: string) => {
      const argv = [
        "/usr/sbin/dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--user=root",
        `--pid-file=${log}.pid`,
        `--listen-address=${listen.join(",")}`,
        "--bind-interfaces",
        ...names.map(([name, a]) => `--address=/${name}/${a}`),
        "--log-queries",
        `--log-facility=${log}`,
      ];
      const child = spawn(IP, ["netns", "exec", n, ...argv], { stdio: ["ignore", "ignore", "inherit"] });
      children.push(child);
      await until(
        () => {
          if (child.exitCode !== null) throw new Error(`dnsmasq in ${n} exited (${child.exitCode})`);
          return fs.existsSync(log) && fs.readFileSync(log, "utf8").includes("cleared cache");
        },
        `dnsmasq in ${n} to start`,
        10_000,
      );
    };
    const whoamiAnswers: [string, string][] = [
      ["whoami.test", "198.18.2.2"],
      ["whoami.test", "2001:db8:2::2"],
    ];
    await dnsmasq(router, ["198.18.1.1", "2001:db8:1::1"], whoamiAnswers, lanResolverLog);
    await dnsmasq(internet, ["198.18.2.2", "2001:db8:2::2"], [...whoamiAnswers, ["lan.test", "192.168.77.2"]], path.join(logs, "public-resolver.log"));

    // Counters on the internet host: every packet from a consumer's own address, before any other hook.
    const counters = consumers.flatMap((_c, i) => [`counter c${i}_v4 { }`, `counter c${i}_v6 { }`]);
    const rules = consumers.flatMap((_c, i) => [`ip saddr ${consumerPublic(i)} counter name c${i}_v4`, `ip6 saddr 2001:db8:1::${i + 2} counter name c${i}_v6`]);
    execFileSync(IP, ["netns", "exec", internet, "/usr/sbin/nft", "-f", "-"], {
      input: `table inet myst_count {\n${counters.join("\n")}\nchain arrivals {\ntype filter hook prerouting priority -400; policy accept;\n${rules.join("\n")}\n}\n}\n`,
      stdio: ["pipe", "ignore", "pipe"],
    });

    const whoami = path.join(__dirname, "..", "netns", "whoami.js");
    for (const [n, addresses] of [
      [internet, ["198.18.2.2", "2001:db8:2::2"]],
      [lan, ["192.168.77.2"]],
    ] as const) {
      const child = spawn(IP, ["netns", "exec", n, process.execPath, whoami, "8080", ...addresses], { stdio: ["ignore", "pipe", "inherit"] });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once("data", () => resolve());
        child.once("exit", (code) => reject(new Error(`whoami server in ${n} exited (${code})`)));
      });
    }
    if (plan) {
      // The STUN server on the internet, on two addresses (RFC 5780: the second answers CHANGE-REQUEST).
      ip("-n", internet, "addr", "add", "198.18.2.3/24", "dev", "eth0");
      children.push(await startStunServer(internet, ["198.18.2.2", "198.18.2.3"], logs));
    }
  } catch (err) {
    await down();
    throw err;
  }

  const publish = async (port: number): Promise<string> => {
    const socket = path.join(logs, `bridge-${port}.sock`);
    const bridge = path.join(__dirname, "..", "netns", "bridge.js");
    const start = async (argv: string[], where: string) => {
      const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once("data", () => resolve());
        child.once("exit", (code) => reject(new Error(`the bridge for port ${port} (${where}) exited (${code})`)));
      });
    };
    await start([process.execPath, bridge, "unix-to-tcp", socket, "127.0.0.1", String(port)], "root namespace");
    await start([IP, "netns", "exec", services, process.execPath, bridge, "tcp-to-unix", "198.18.9.2", String(port), socket], services);
    return `198.18.9.2:${port}`;
  };

  return {
    tag,
    consumers,
    router,
    gateway,
    provider,
    providers: [provider, ...(second ? [second.provider] : []), ...(third ? [third.provider] : [])],
    providerAddressOf: (i) =>
      [plan?.providerHome?.publicAddress ?? (publicProvider ? "198.18.10.2" : "198.18.3.2"), plan?.secondProviderHome?.publicAddress ?? "198.18.4.2"][i] ??
      plan?.thirdProviderHome?.publicAddress ??
      "",
    internet,
    lan,
    services,
    servicesAddress: "198.18.9.2",
    publish,
    providerAddress: plan?.providerHome?.publicAddress ?? (publicProvider ? "198.18.10.2" : "198.18.3.2"),
    providerUplinkAddress: plan?.providerHome?.publicAddress ?? (publicProvider ? "198.18.10.2" : "198.18.3.2"),
    providerAddress6: "2001:db8:4::2",
    internetAddress: "198.18.2.2",
    internetAddress6: "2001:db8:2::2",
    internetUrl: "http://198.18.2.2:8080/",
    internetUrl6: "http://[2001:db8:2::2]:8080/",
    lanUrl: "http://192.168.77.2:8080/",
    consumerAddress: consumerPublic,
    consumerAddress6: (i) => `2001:db8:1::${i + 2}`,
    whoamiName: "whoami.test",
    whoamiNameUrl: "http://whoami.test:8080/",
    lanResolver: "198.18.1.1",
    lanResolverQueries: () => (fs.readFileSync(lanResolverLog, "utf8").match(/: query\[/g) ?? []).length,
    packetsFrom: (i) => {
      const out = JSON.parse(
        execFileSync(IP, ["netns", "exec", internet, "/usr/sbin/nft", "-j", "list", "counters", "table", "inet", "myst_count"], { encoding: "utf8" }),
      );
      const packets = (name: string) => out.nftables.find((e: { counter?: { name: string } }) => e.counter?.name === name)?.counter.packets as number;
      return { v4: packets(`c${i}_v4`), v6: packets(`c${i}_v6`) };
    },
    resolvConfOf: (netns) => path.join("/etc/netns", netns, "resolv.conf"),
    exec: (netns, argv, o = {}) =>
      execFileSync(IP, ["netns", "exec", netns, ...argv], { encoding: "utf8", timeout: o.timeoutMs ?? 10_000, stdio: ["ignore", "pipe", "pipe"] }),
    down,
    nat: plan && natNetwork(plan, provider, consumers, consumerPublic, second?.provider, third?.provider),
    relays,
    relayAddressOf: (i) => `198.18.${20 + i}.2`,
  };
}
