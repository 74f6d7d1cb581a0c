import os from "node:os";

export { isCarrierAddress, isPublicAddress } from "../values/ip";

/**
 * This machine's own IPv4 addresses (not loopback): the local candidates, and how a node knows it has
 * no NAT. `skip` leaves out interfaces by name (the reachability monitor's tunnel devices).
 */
export function localAddresses(
  interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces(),
  skip: (name: string) => boolean = () => false,
): string[] {
  return Object.entries(interfaces)
    .filter(([name]) => !skip(name))
    .flatMap(([, list]) => (list ?? []).filter((i) => i.family === "IPv4" && !i.internal))
    .map((i) => i.address);
}
