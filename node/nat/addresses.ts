import os from "node:os";

export { isCarrierAddress, isPublicAddress } from "../values/ip";

/** This machine's own IPv4 addresses (not loopback): the local candidates, and how a node knows it has no NAT. */
export function localAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((i): i is os.NetworkInterfaceInfo => i !== undefined && i.family === "IPv4" && !i.internal)
    .map((i) => i.address);
}
