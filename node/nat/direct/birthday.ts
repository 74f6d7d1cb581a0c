import crypto from "node:crypto";
import { orderCandidates } from "./candidates";
import { randomPorts } from "./channel-codec";
import { type DirectionKey, PacketType, sealPacket } from "./packet";
import type { PunchPlan } from "./plan";

/**
 * The easy side's half of the birthday search (plan.ts): a bounded set of random ports of the
 * peer's internet addresses (never a LAN one), probed from the channel's socket and from the
 * tunnel's own. With N sockets on the hard side and M ports here, over 64,512 ports, a try meets
 * with 1 − e^(−N·M/64,512); the first meeting comes after about 64,512 / (N + 1) probes.
 */
export interface SprayTargets {
  addresses: string[];
  ports: number[];
}

/**
 * How many of the peer's internet addresses a search aims at, and how many of its internet candidates
 * the hard side's sockets probe: the peer chooses them (up to 16 in an offer), and each costs a whole
 * spray (4,096 datagrams) or a probe from every one of 256 sockets each round, so a peer naming many
 * could make this node send tens of thousands of datagrams at addresses of its choosing. A node has
 * one public address, or two (a mapped and a reflexive one); its best-ranked come first.
 */
export const SEARCH_ADDRESSES_MAX = 2;
export const HARD_SIDE_CANDIDATES_MAX = 4;

/** The peer's internet candidates a search aims at, best-ranked first, capped (SEARCH_ADDRESSES_MAX, HARD_SIDE_CANDIDATES_MAX). */
export function searchCandidates(plan: PunchPlan): PunchPlan["peerCandidates"] {
  const internet = orderCandidates(plan.peerCandidates).filter((c) => c.kind !== "local");
  const addresses = [...new Set(internet.map((c) => c.address))].slice(0, SEARCH_ADDRESSES_MAX);
  return internet.filter((c) => addresses.includes(c.address)).slice(0, HARD_SIDE_CANDIDATES_MAX);
}

/** The search's targets: `count` random ports of each of the peer's internet addresses (at most SEARCH_ADDRESSES_MAX); none when it named none. */
export function sprayTargets(plan: PunchPlan, count: number): SprayTargets | undefined {
  const addresses = [...new Set(searchCandidates(plan).map((c) => c.address))];
  return addresses.length === 0 ? undefined : { addresses, ports: randomPorts(count) };
}

/**
 * The tunnel's spray: one sealed probe per port and address, with the tunnel's own key, sealed as
 * it is taken (the sender streams them: the first leave before the last are made).
 */
export function* tunnelSprayDatagrams(key: DirectionKey, targets: SprayTargets): Generator<{ address: string; port: number; bytes: Buffer }> {
  for (const [i, port] of targets.ports.entries())
    for (const address of targets.addresses)
      yield { address, port, bytes: sealPacket(key, PacketType.probe, BigInt(i), Buffer.concat([crypto.randomBytes(8), Buffer.of(2)])) };
}
