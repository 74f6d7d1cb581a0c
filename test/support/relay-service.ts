import type { Topology } from "../../scripts/lib/topology";

/**
 * `myst service start relay` for the topology's relay `i` (on 443, in DE): the first relay is the
 * cheaper (0.1 MYST per GiB against 0.2), so consumers pick it while it works.
 */
export function relayServiceStart(topology: Topology, i: number): string[] {
  return [
    "service",
    "start",
    "relay",
    "--public-ip",
    topology.relayAddressOf(i),
    "--port",
    "443",
    "--country",
    "DE",
    "--price-per-gib",
    i === 0 ? "0.1" : "0.2",
  ];
}
