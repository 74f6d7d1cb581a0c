// The nat benchmark's cells (nat.ts runs them): which provider and consumer, what each is compared with.
import type { NatKind } from "../lib/topology";

/** A provider's network in the bench: a NAT kind, or `forwarded` (an `eim` home router that forwards every port to it). */
export type BenchProviderKind = NatKind | "forwarded";
import type { summarize } from "./stats";

/**
 * One cell of the benchmark: a provider behind `provider`, a consumer behind `consumer` (or on the
 * provider's own LAN), buying `service`. Cells with the same provider kind share one topology.
 * More cells (a relayed pair, say) are one entry each in NAT_BENCH_CASES, or given to `benchNat`.
 */
export interface NatBenchCase {
  /** The row's name in the report. */
  name: string;
  provider: BenchProviderKind;
  consumer: NatKind | "same-router";
  /** Default "wireguard". */
  service?: "wireguard" | "openvpn";
  /** The tunnel paths this cell should take (connect's `path.tunnel`); another is reported as unexpected, not hidden. */
  expectPath?: string[];
  /** Measure throughput through this cell's tunnel: "baseline" is the one others are compared with. */
  throughput?: "baseline" | "compare";
  /** Extra environment for the consumer's node (settings a relayed cell needs, say). */
  consumerEnv?: NodeJS.ProcessEnv;
  /** Extra environment for the provider's node. */
  providerEnv?: NodeJS.ProcessEnv;
  /** A public relay node sells `relay` (port 443, no bandwidth limit) in this cell's topology. */
  relay?: boolean;
  /** The cell whose throughput this one's is compared with (the same pair's direct path). Default: the baseline. */
  compareWith?: string;
  /**
   * A public provider only: its router (g, which routes to it without NAT, the hops of a home router) also runs a home
   * router's conntrack and NAT table for the cell, translating nothing of the provider's: the second baseline, which
   * carries what a NAT router's own work costs the shared CPU (docs/direct-channel.md, "Throughput on a punched path").
   */
  routerTracks?: boolean;
}

/**
 * The cells measured by default: the provider public, behind an endpoint-independent router, behind a
 * UPnP router, and on the consumer's own LAN; and two that need a relay (issue 29): a consumer whose
 * network drops all UDP (TURN over TLS on 443), and symmetric × symmetric (TURN over UDP).
 */
/** The second baseline's name (`routerTracks`): the punched cells' throughput is also given against it. */
export const TRACKING_BASELINE = "public provider, its router tracking connections as a NAT router does (nothing translated) × home consumer (eim)";

/**
 * The third baseline's name: the provider public by a port its home router forwards (as the demo's is), behind the same
 * masquerade and LAN bridge as a punched provider. Its throughput is what the same router costs a path that is not
 * punched; the punched cells' are also given against it, as an explanation beside the aim's ratio, never instead of it.
 */
export const FORWARDED_BASELINE = "provider behind an eim router that forwards its ports to it (public by a forwarded port) × home consumer (eim)";

export const NAT_BENCH_CASES: NatBenchCase[] = [
  { name: "public provider × home consumer (eim)", provider: "public", consumer: "eim", expectPath: ["public"], throughput: "baseline" },
  {
    name: TRACKING_BASELINE,
    provider: "public",
    consumer: "eim",
    expectPath: ["public"],
    throughput: "compare",
    routerTracks: true,
  },
  {
    name: FORWARDED_BASELINE,
    provider: "forwarded",
    consumer: "eim",
    expectPath: ["public"],
    throughput: "compare",
    // It measures nothing: its proposal names its router's address and the forwarded port, as a node without STUN does.
    providerEnv: { MYST_STUN_SERVERS: "" },
  },
  { name: "provider behind an eim router × home consumer (eim)", provider: "eim", consumer: "eim", expectPath: ["punched"], throughput: "compare" },
  // The punched eim cell's fair baseline: the same routers (the provider's home router crossed on the way in and out,
  // both NATing), the tunnel at a port the router maps instead of one punched (docs/direct-channel.md, "Throughput").
  { name: "provider behind a UPnP router × home consumer (eim)", provider: "upnp", consumer: "eim", expectPath: ["mapped", "punched"], throughput: "compare" },
  { name: "provider and consumer behind the same router", provider: "eim", consumer: "same-router", expectPath: ["local"] },
  {
    name: "provider behind an eim router × consumer whose network drops all UDP (relayed over TLS/443)",
    provider: "eim",
    consumer: "udp-blocked",
    expectPath: ["relayed"],
    throughput: "compare",
    relay: true,
    compareWith: "provider behind an eim router × home consumer (eim)",
  },
  // The tunnels meet by a birthday search (node/services/wireguard/punch-route.ts): no relay, no user-space copy.
  { name: "provider behind a symmetric router × home consumer (eim)", provider: "symmetric", consumer: "eim", expectPath: ["punched"], throughput: "compare" },
  {
    name: "provider behind a symmetric router × consumer behind a carrier-grade NAT",
    provider: "symmetric",
    consumer: "cgnat",
    expectPath: ["punched"],
  },
  {
    name: "provider behind a symmetric router × consumer behind another (relayed over UDP)",
    provider: "symmetric",
    consumer: "symmetric",
    expectPath: ["relayed"],
    throughput: "compare",
    relay: true,
  },
];

export interface NatCellResult {
  name: string;
  provider: BenchProviderKind;
  consumer: NatKind | "same-router";
  service: string;
  /** connect → first byte as a user sees it (the `myst connect` process started to the first byte through the tunnel), without the CLI's own start-up. */
  connectToFirstByteMs?: ReturnType<typeof summarize>;
  /** The node's own phases (from `connect --json`): discovery, negotiation, tunnel, confirm. */
  phasesMs?: Record<string, ReturnType<typeof summarize>>;
  /** With `BENCH_NAT_TIMELINE=1`: each event both nodes logged, p50 ms after `myst connect` started (nat-timeline.ts). */
  timelineMs?: Record<string, { p50: number; n: number }>;
  /** The paths taken (`path.tunnel` / `path.channel`), with how often. */
  paths: Record<string, number>;
  unexpectedPaths: number;
  failures: string[];
  throughputMbps?: number;
  /**
   * CPU time (ms) each daemon's node process used while iperf3 ran through the tunnel. No tunnel packet
   * passes through either (wireguard-go and the kernel carry them): a user-space copy would cost one of
   * them most of a core for the run, not the few milliseconds of keepalives.
   */
  daemonCpuMs?: { provider: number; consumer: number };
  /**
   * Throughput ratios: `vsPublicProvider` is the one the aim (`aim`: ≥ 0.95 punched, ≥ 0.5 relayed) is judged by;
   * `vsTrackingRouter` and `vsForwardedPort` only explain it (what a NAT router's own work costs the shared CPU);
   * a relayed cell with `compareWith` is judged by `vsSamePairDirect`.
   */
  throughputRatio?: { vsPublicProvider?: number; vsSamePairDirect?: number; aim?: number; vsTrackingRouter?: number; vsForwardedPort?: number };
}

/**
 * The cells of this run: `BENCH_NAT_CELLS` names some as provider×consumer (`symmetric×eim,upnp×eim`);
 * the baselines (the public provider's cells and the forwarded port's) are always measured. Default: all.
 */
export function selectedNatCases(list = process.env.BENCH_NAT_CELLS): NatBenchCase[] {
  if (!list) return NAT_BENCH_CASES;
  const wanted = new Set(list.split(",").map((c) => c.trim().replace("x", "×")));
  const known = new Set(NAT_BENCH_CASES.map((c) => `${c.provider}×${c.consumer}`));
  const unknown = [...wanted].filter((w) => !known.has(w));
  if (unknown.length) throw new Error(`BENCH_NAT_CELLS: no cell ${unknown.join(", ")} (cells: ${[...known].join(", ")})`);
  return NAT_BENCH_CASES.filter((c) => c.provider === "public" || c.provider === "forwarded" || wanted.has(`${c.provider}×${c.consumer}`));
}
