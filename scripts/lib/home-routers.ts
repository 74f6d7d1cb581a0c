import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { until } from "./until";

/**
 * The home routers of the test internet (scripts/lib/topology.ts with `nat`): none of them forwards a port.
 *
 * - `public`: no NAT; the node has a public address of its own.
 * - `eim`: nftables `masquerade`: one public port per local socket, whatever the destination
 *   (endpoint-independent mapping); unsolicited datagrams are dropped.
 * - `symmetric`: `masquerade fully-random`: a new public port for each destination (endpoint-dependent).
 * - `cgnat`: an `eim` home router whose own WAN address is in 100.64.0.0/10, behind the carrier's
 *   NAT (itself endpoint-independent, RFC 6888): two NATs, and no forwarding possible at all.
 * - `upnp`: an `eim` home router running miniupnpd (UPnP-IGD and NAT-PMP) with a WAN address outside
 *   every reserved range (miniupnpd refuses to map otherwise: 11.0.0.0/8 here, which exists only in
 *   these namespaces).
 * - `cgnat-upnp`: a miniupnpd home router behind a carrier's NAT that believes it is public: Debian's
 *   miniupnpd refuses to map on a reserved WAN address, so it is told a public one (`ext_ip`, as an
 *   ISP's configuration may do); it grants mappings that lead nowhere, which a node must detect.
 * - `udp-blocked`: an `eim` router of a network that lets no UDP out but DNS (a hotel, an office):
 *   only TCP reaches the internet, so only a relay over TCP joins its hosts to anyone.
 * - `tcp443-only`: an `eim` router of a network that lets out only TCP to port 443 and DNS (a strict
 *   office or a guest network), and the marketplace's services host (198.18.9.2: the test's chain,
 *   broker and discovery, which a real deployment would serve on 443 too): a relay's TURN server on
 *   443 is reachable, its relayed ports are not.
 */
export type NatKind = "public" | "eim" | "symmetric" | "cgnat" | "upnp" | "cgnat-upnp" | "udp-blocked" | "tcp443-only";

export const NAT_KINDS: readonly NatKind[] = ["public", "eim", "symmetric", "cgnat", "upnp", "cgnat-upnp", "udp-blocked", "tcp443-only"];

export interface NatOptions {
  /** The provider's home router. Default "eim". */
  provider?: NatKind;
  /** Each consumer's home router (one kind for all, or one per consumer). Default "public": on the ISP's LAN, as without `nat`. */
  consumer?: NatKind | NatKind[];
  /** The first consumer sits on the provider's home LAN (192.168.88.3), behind the same router. */
  sameRouter?: boolean;
  /**
   * With `providers: 2`: the second provider's home router (its own LAN 192.168.89.0/24; WAN
   * 198.18.4.2, or 11.5.0.2 for a UPnP router). Without it, `nat` builds one provider.
   */
  secondProvider?: Exclude<NatKind, "public">;
  /**
   * With `providers: 3`: the third provider's home router (its own LAN 192.168.90.0/24; WAN
   * 198.18.5.2, or 11.7.0.2 for a UPnP router), beside the second's.
   */
  thirdProvider?: Exclude<NatKind, "public">;
  /** Every NAT router's UDP conntrack timeout (`nf_conntrack_udp_timeout` and `_stream`), in seconds (kernel defaults: 30 and 120). */
  udpTimeoutSeconds?: number;
  /**
   * The providers (1: the first, 2, 3) whose `eim` home router forwards every inbound port to them (a "DMZ host", as the
   * demo's gateway does): a provider public by a forwarded port, behind the same masquerade and LAN bridge as a punched one.
   */
  forwardedProviders?: (1 | 2 | 3)[];
}

export interface HomeUplink {
  /** The router's side of the link (CIDR), or undefined when the home joins the ISP's LAN bridge (br0, 198.18.1.0/24). */
  routerCidr?: string;
  /** The WAN address of the outermost box (CIDR) and its gateway. */
  cidr: string;
  via: string;
}

export interface HomePlan {
  kind: Exclude<NatKind, "public">;
  /** The home router's namespace. */
  router: string;
  /** The carrier's NAT (CGNAT kinds). */
  carrier?: string;
  /** The home LAN's /24 prefix ("192.168.88"): the router is .1, its hosts .2, .3, … */
  lan: string;
  /** The carrier's inside /24 prefix ("100.64.3"): the carrier is .1, the home router .2. */
  carrierLan?: string;
  /** What the internet sees of the hosts behind this home. */
  publicAddress: string;
  /** `cgnat-upnp`: the public address miniupnpd is told it has (`ext_ip`), which is not what the internet sees. */
  upnpClaimedAddress?: string;
  /** Every inbound port of the router's WAN address is forwarded to this host of its LAN (`forwardedProviders`). */
  dmzHost?: string;
  uplink: HomeUplink;
}

export interface NatPlan {
  provider: NatKind;
  /** Undefined for a `public` provider (the topology's routed 198.18.10.2). */
  providerHome?: HomePlan;
  /** The second provider's home (`secondProvider`). */
  secondProviderHome?: HomePlan;
  /** The third provider's home (`thirdProvider`). */
  thirdProviderHome?: HomePlan;
  /** Per consumer: its own home, or undefined (public, or on the provider's LAN with `sameRouter`). */
  consumerHomes: (HomePlan | undefined)[];
  consumerKinds: (NatKind | "same-router")[];
  sameRouter: boolean;
  consumerPublicAddress(i: number): string;
  /** Namespaces beyond the topology's usual ones: home routers and carriers of the consumers, the provider's carrier. */
  extraNamespaces: string[];
  /** Every NAT router (home routers and carriers). */
  natRouters: string[];
}

export function natPlan(options: NatOptions, consumerCount: number, ns: (name: string) => string): NatPlan {
  const providerKind = options.provider ?? "eim";
  const one = options.consumer;
  const kinds: NatKind[] = Array.isArray(one) ? one : Array.from({ length: consumerCount }, () => one ?? "public");
  if (kinds.length !== consumerCount) throw new Error(`topologyUp: nat.consumer names ${kinds.length} kinds for ${consumerCount} consumers`);
  for (const k of [
    providerKind,
    ...kinds,
    ...(options.secondProvider ? [options.secondProvider] : []),
    ...(options.thirdProvider ? [options.thirdProvider] : []),
  ])
    if (!NAT_KINDS.includes(k)) throw new Error(`topologyUp: unknown NAT kind ${k} (one of ${NAT_KINDS.join(", ")})`);
  const sameRouter = options.sameRouter === true;
  if (sameRouter && providerKind === "public") throw new Error("topologyUp: sameRouter needs a provider behind a home router");
  if (options.udpTimeoutSeconds !== undefined && !(Number.isInteger(options.udpTimeoutSeconds) && options.udpTimeoutSeconds > 0))
    throw new Error("topologyUp: nat.udpTimeoutSeconds must be a positive whole number");
  const providerKinds = [providerKind, options.secondProvider, options.thirdProvider];
  for (const n of options.forwardedProviders ?? [])
    if (providerKinds[n - 1] !== "eim") throw new Error(`topologyUp: nat.forwardedProviders names provider ${n}, whose home router is not "eim"`);

  const home = (
    kind: Exclude<NatKind, "public">,
    names: { router: string; carrier: string },
    addresses: { lan: string; carrierLan: string; upnp: string; claimed: string; wan: string; wanVia: string; routerCidr?: string; dmz?: boolean },
  ): HomePlan => {
    const carrier = kind === "cgnat" || kind === "cgnat-upnp";
    // A UPnP router needs a WAN address miniupnpd accepts: its own link from the ISP's router, in 11.0.0.0/8.
    const uplink: HomeUplink =
      kind === "upnp"
        ? { routerCidr: `${addresses.upnp}.1/24`, cidr: `${addresses.upnp}.2/24`, via: `${addresses.upnp}.1` }
        : { routerCidr: addresses.routerCidr, cidr: `${addresses.wan}/24`, via: addresses.wanVia };
    return {
      kind,
      router: names.router,
      carrier: carrier ? names.carrier : undefined,
      lan: addresses.lan,
      carrierLan: carrier ? addresses.carrierLan : undefined,
      publicAddress: kind === "upnp" ? `${addresses.upnp}.2` : addresses.wan,
      upnpClaimedAddress: kind === "cgnat-upnp" ? addresses.claimed : undefined,
      dmzHost: addresses.dmz ? `${addresses.lan}.2` : undefined,
      uplink,
    };
  };

  const providerHome =
    providerKind === "public"
      ? undefined
      : home(
          providerKind,
          { router: ns("g"), carrier: ns("pn") },
          {
            lan: "192.168.88",
            carrierLan: "100.64.3",
            upnp: "11.3.0",
            claimed: "11.4.0.2",
            wan: "198.18.3.2",
            wanVia: "198.18.3.1",
            routerCidr: "198.18.3.1/24",
            dmz: options.forwardedProviders?.includes(1),
          },
        );
  const secondProviderHome = options.secondProvider
    ? home(
        options.secondProvider,
        { router: ns("g2"), carrier: ns("pn2") },
        {
          lan: "192.168.89",
          carrierLan: "100.64.4",
          upnp: "11.5.0",
          claimed: "11.6.0.2",
          wan: "198.18.4.2",
          wanVia: "198.18.4.1",
          routerCidr: "198.18.4.1/24",
          dmz: options.forwardedProviders?.includes(2),
        },
      )
    : undefined;
  const thirdProviderHome = options.thirdProvider
    ? home(
        options.thirdProvider,
        { router: ns("g3"), carrier: ns("pn3") },
        {
          lan: "192.168.90",
          carrierLan: "100.64.5",
          upnp: "11.7.0",
          claimed: "11.8.0.2",
          wan: "198.18.5.2",
          wanVia: "198.18.5.1",
          routerCidr: "198.18.5.1/24",
          dmz: options.forwardedProviders?.includes(3),
        },
      )
    : undefined;
  const consumerKinds: (NatKind | "same-router")[] = kinds.map((k, i) => (sameRouter && i === 0 ? "same-router" : k));
  const consumerHomes = consumerKinds.map((k, i) =>
    k === "public" || k === "same-router"
      ? undefined
      : home(
          k,
          { router: ns(`h${i + 1}`), carrier: ns(`n${i + 1}`) },
          {
            lan: `192.168.${100 + i}`,
            carrierLan: `100.64.${100 + i}`,
            upnp: `11.1.${i + 1}`,
            claimed: `11.2.${i + 1}.2`,
            wan: `198.18.1.${i + 2}`,
            wanVia: "198.18.1.1",
          },
        ),
  );
  const homes = [providerHome, secondProviderHome, thirdProviderHome, ...consumerHomes].filter((h): h is HomePlan => h !== undefined);
  const natRouters = homes.flatMap((h) => [h.router, ...(h.carrier ? [h.carrier] : [])]);
  const providerPublic = providerHome?.publicAddress ?? "198.18.10.2";
  return {
    provider: providerKind,
    providerHome,
    secondProviderHome,
    thirdProviderHome,
    consumerHomes,
    consumerKinds,
    sameRouter,
    consumerPublicAddress: (i) => (consumerKinds[i] === "same-router" ? providerPublic : (consumerHomes[i]?.publicAddress ?? `198.18.1.${i + 2}`)),
    // The providers' home routers are the topology's gateways g, g2 and g3.
    extraNamespaces: natRouters.filter((n) => n !== ns("g") && n !== ns("g2") && n !== ns("g3")),
    natRouters,
  };
}

/**
 * What every home router does with a datagram from the internet that no mapping expects and that is
 * addressed to the router itself: drops it before it is accepted (a router answering it with "port
 * unreachable" would also keep a conntrack entry for it, and that entry would then take the very
 * public port a hole punch from inside needs: Linux picks another port for the outgoing mapping).
 */
const WAN_INPUT = `  chain wan_input {
    type filter hook input priority filter; policy accept;
    iifname "wan0" ct state new drop
  }`;

/** The marketplace's services host (topology.ts `publish`), which a `tcp443-only` network still reaches. */
const SERVICES_HOST = "198.18.9.2";

/**
 * Source NAT of `source` out of wan0: endpoint-independent, or a new port per destination with
 * `fullyRandom`; a `udp-blocked` router lets no UDP out but DNS; a `tcp443-only` one lets out only
 * DNS, TCP to port 443 and the services host (everything else dropped, as a firewall does: no reset).
 * With `dmzHost`, every datagram and connection arriving on wan0 is forwarded to that host (a port forward of all ports).
 */
export function masqueradeRules(source: string, fullyRandom: boolean, kind?: NatKind, dmzHost?: string): string {
  const filters: Partial<Record<NatKind, string>> = {
    "udp-blocked": `    oifname "wan0" meta l4proto udp udp dport != 53 drop
`,
    "tcp443-only": `    oifname "wan0" ip daddr ${SERVICES_HOST} accept
    oifname "wan0" meta l4proto { udp, tcp } th dport 53 accept
    oifname "wan0" tcp dport 443 accept
    oifname "wan0" drop
`,
  };
  const filter = kind ? filters[kind] : undefined;
  const forward = filter
    ? `  chain forward {
    type filter hook forward priority filter; policy accept;
${filter}  }
`
    : "";
  return `table ip myst_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" ip saddr ${source} masquerade${fullyRandom ? " fully-random" : ""}
  }
${dmzHost ? `  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    iifname "wan0" dnat to ${dmzHost}\n  }\n` : ""}${forward}${WAN_INPUT}
}
`;
}

/** Sets a NAT router's UDP conntrack timeouts (an idle mapping is forgotten after this long). */
export function setUdpTimeout(netns: string, seconds: number): void {
  execFileSync(
    "/usr/sbin/ip",
    [
      "netns",
      "exec",
      netns,
      "/usr/sbin/sysctl",
      "-qw",
      `net.netfilter.nf_conntrack_udp_timeout=${seconds}`,
      `net.netfilter.nf_conntrack_udp_timeout_stream=${seconds}`,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
}

/** Forgets every mapping of a NAT router (its conntrack table), as a router reboot does. */
export function flushConntrack(netns: string): void {
  execFileSync("/usr/sbin/ip", ["netns", "exec", netns, "/usr/sbin/conntrack", "-F"], { stdio: ["ignore", "ignore", "ignore"] });
}

function rulesOfUpnpRouter(lan: string): string {
  // The tables and chains miniupnpd's nftables back end adds its rules to (its defaults: table
  // "filter", chains miniupnpd / prerouting_miniupnpd / postrouting_miniupnpd), and the home's masquerade.
  return `table inet filter {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump prerouting_miniupnpd; }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump postrouting_miniupnpd
    oifname "wan0" ip saddr ${lan}.0/24 masquerade
  }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
${WAN_INPUT}
}
`;
}

/** Starts Debian's miniupnpd (UPnP-IGD and NAT-PMP) on a home router, in the foreground; resolves once it listens. */
export async function startMiniupnpd(home: HomePlan, dir: string): Promise<ChildProcess> {
  execFileSync("/usr/sbin/ip", ["netns", "exec", home.router, "/usr/sbin/nft", "-f", "-"], {
    input: rulesOfUpnpRouter(home.lan),
    stdio: ["pipe", "ignore", "pipe"],
  });
  const base = path.join(dir, `miniupnpd-${home.router}`);
  fs.writeFileSync(
    `${base}.conf`,
    [
      "ext_ifname=wan0",
      "listening_ip=lan0",
      "http_port=0",
      "enable_natpmp=yes",
      "enable_upnp=yes",
      "secure_mode=yes",
      "system_uptime=yes",
      // PCP lifetimes shorter than 120 s are raised to 120 by default; the renewal test asks for 4 s.
      "min_lifetime=2",
      `uuid=${crypto.randomUUID()}`,
      `lease_file=${base}.leases`,
      ...(home.upnpClaimedAddress ? [`ext_ip=${home.upnpClaimedAddress}`] : []),
      `allow 1024-65535 ${home.lan}.0/24 1024-65535`,
      "deny 0-65535 0.0.0.0/0 0-65535",
      "",
    ].join("\n"),
  );
  const log = `${base}.log`;
  const out = fs.openSync(log, "a");
  const child = spawn("/usr/sbin/ip", ["netns", "exec", home.router, "/usr/sbin/miniupnpd", "-f", `${base}.conf`, "-d", "-P", `${base}.pid`], {
    stdio: ["ignore", out, out],
  });
  fs.closeSync(out);
  await until(
    () => {
      if (child.exitCode !== null) throw new Error(`miniupnpd in ${home.router} exited (${child.exitCode}): ${fs.readFileSync(log, "utf8").slice(-2000)}`);
      return /HTTP listening on port/.test(fs.readFileSync(log, "utf8"));
    },
    `miniupnpd in ${home.router} to listen`,
    10_000,
  );
  return child;
}

/** Starts coturn as a plain STUN server (no TURN, no TLS) on `addresses`, ports 3478 and 3479; resolves once it answers on all. */
export async function startStunServer(netns: string, addresses: string[], dir: string): Promise<ChildProcess> {
  const base = path.join(dir, `stun-${netns}`);
  const out = fs.openSync(`${base}.log`, "a");
  const argv = [
    "/usr/bin/turnserver",
    "-n",
    "--stun-only",
    ...addresses.flatMap((a) => ["--listening-ip", a]),
    "--listening-port",
    "3478",
    "--alt-listening-port",
    "3479",
    "--no-tls",
    "--no-dtls",
    "--no-cli",
    "--no-tcp-relay",
    "--simple-log",
    "--log-file",
    "stdout",
    "--pidfile",
    `${base}.pid`,
    "--db",
    `${base}.sqlite`,
  ];
  const child = spawn("/usr/sbin/ip", ["netns", "exec", netns, ...argv], { stdio: ["ignore", out, out] });
  fs.closeSync(out);
  const wanted = addresses.flatMap((a) => [`${a}:3478`, `${a}:3479`]);
  await until(
    () => {
      if (child.exitCode !== null)
        throw new Error(`the STUN server in ${netns} exited (${child.exitCode}): ${fs.readFileSync(`${base}.log`, "utf8").slice(-2000)}`);
      const listening = execFileSync("/usr/sbin/ip", ["netns", "exec", netns, "/usr/bin/ss", "-Hnlu"], { encoding: "utf8" });
      return wanted.every((w) => listening.includes(w));
    },
    `the STUN server in ${netns} to listen`,
    10_000,
  );
  return child;
}

/** What a test needs to know of the NAT network. */
export interface NatNetwork {
  provider: NatKind;
  consumers: (NatKind | "same-router")[];
  /** The STUN server on the internet host: the primary address, then the second (RFC 5780's other address). */
  stunServers: string[];
  /** The NAT routers between `netns` and the internet, nearest first (its home router, then the carrier's); none for a public node. */
  natRoutersOf(netns: string): string[];
  /** The address `netns` has on its own link (private behind a home router). */
  localAddressOf(netns: string): string;
  /** What the internet sees of `netns`. */
  publicAddressOf(netns: string): string;
  /** Every router running miniupnpd. */
  upnpRouters: string[];
  setUdpTimeout(router: string, seconds: number): void;
  flushConntrack(router: string): void;
}

export function natNetwork(
  plan: NatPlan,
  provider: string,
  consumers: string[],
  consumerPublic: (i: number) => string,
  secondProvider?: string,
  thirdProvider?: string,
): NatNetwork {
  const homeOf = (netns: string): HomePlan | undefined => {
    if (netns === provider) return plan.providerHome;
    if (netns === secondProvider) return plan.secondProviderHome;
    if (netns === thirdProvider) return plan.thirdProviderHome;
    const i = consumers.indexOf(netns);
    if (i < 0) throw new Error(`${netns} is neither the provider nor a consumer`);
    return plan.consumerKinds[i] === "same-router" ? plan.providerHome : plan.consumerHomes[i];
  };
  return {
    provider: plan.provider,
    consumers: plan.consumerKinds,
    stunServers: ["198.18.2.2:3478", "198.18.2.3:3478"],
    natRoutersOf: (netns) => {
      const home = homeOf(netns);
      return home ? [home.router, ...(home.carrier ? [home.carrier] : [])] : [];
    },
    localAddressOf: (netns) => {
      const home = homeOf(netns);
      if (netns === provider) return home ? `${home.lan}.2` : "198.18.10.2";
      if (netns === secondProvider || netns === thirdProvider) return `${home!.lan}.2`;
      const i = consumers.indexOf(netns);
      if (plan.consumerKinds[i] === "same-router") return `${home!.lan}.3`;
      return home ? `${home.lan}.2` : `198.18.1.${i + 2}`;
    },
    publicAddressOf: (netns) =>
      netns === provider
        ? (plan.providerHome?.publicAddress ?? "198.18.10.2")
        : netns === secondProvider
          ? plan.secondProviderHome!.publicAddress
          : netns === thirdProvider
            ? plan.thirdProviderHome!.publicAddress
            : consumerPublic(consumers.indexOf(netns)),
    upnpRouters: [plan.providerHome, plan.secondProviderHome, plan.thirdProviderHome, ...plan.consumerHomes]
      .filter((h) => h?.kind === "upnp" || h?.kind === "cgnat-upnp")
      .map((h) => h!.router),
    setUdpTimeout,
    flushConntrack,
  };
}
