import crypto from "node:crypto";
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

/** The search's targets: `count` random ports of each of the peer's internet addresses; none when it named none. */
export function sprayTargets(plan: PunchPlan, count: number): SprayTargets | undefined {
  const addresses = [...new Set(plan.peerCandidates.filter((c) => c.kind !== "local").map((c) => c.address))];
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
