import { pidsIn } from "./netns-processes";

/** The PIDs of the wireguard-go processes running in network namespace `netns`. */
export function wireguardGoPidsIn(netns: string): string[] {
  return pidsIn(netns, "wireguard-go").map(String);
}
