import { execFile } from "node:child_process";
import fs from "node:fs";
import type { ErrorCode } from "../errors/catalogue";
import { MystError } from "../errors/MystError";
import { requireCapabilities } from "./capabilities";
import { resolverOutsideTunnelMessage, resolversOutsideTunnel } from "../session/service";

export type TunnelErrorCode =
  | "ADDRESS_POOL_EXHAUSTED"
  | "AUTH_REFUSED"
  | "BAD_CONSUMER_DATA"
  | "BAD_SERVICE_CONFIG"
  | "BAD_SESSION_ID"
  | "CAPABILITY_MISSING"
  | "COMMAND_FAILED"
  | "DEVICE_IN_USE"
  | "ENDPOINT_NOT_IP"
  | "HANDSHAKE_TIMEOUT"
  | "KEY_IN_USE"
  | "NO_UPLINK"
  | "OPENVPN_FAILED"
  | "PORT_IN_USE"
  | "REGISTRY_UNAVAILABLE"
  | "RELAY_FAILED"
  | "RESOLVER_FAILED"
  | "RESOLVER_OUTSIDE_TUNNEL"
  | "SERVICE_NOT_RUNNING"
  | "TUN_BUSY"
  | "UAPI_FAILED"
  | "WIREGUARD_FAILED"
  | (typeof NOT_INSTALLED)[ProgramName];

/** The system programs the node runs, each with the code that says it is missing (a catalogue key). */
const NOT_INSTALLED = {
  bash: "BASH_NOT_INSTALLED",
  dnsmasq: "DNSMASQ_NOT_INSTALLED",
  ip: "IP_NOT_INSTALLED",
  ip6tables: "IP6TABLES_NOT_INSTALLED",
  iptables: "IPTABLES_NOT_INSTALLED",
  nft: "NFT_NOT_INSTALLED",
  nsenter: "NSENTER_NOT_INSTALLED",
  openssl: "OPENSSL_NOT_INSTALLED",
  openvpn: "OPENVPN_NOT_INSTALLED",
  perl: "PERL_NOT_INSTALLED",
  python3: "PYTHON3_NOT_INSTALLED",
  setpriv: "SETPRIV_NOT_INSTALLED",
  sh: "SH_NOT_INSTALLED",
  sysctl: "SYSCTL_NOT_INSTALLED",
  tc: "TC_NOT_INSTALLED",
  "wireguard-go": "WIREGUARD_GO_NOT_INSTALLED",
  turnserver: "TURNSERVER_NOT_INSTALLED",
  conntrack: "CONNTRACK_NOT_INSTALLED",
} as const satisfies Record<string, ErrorCode>;
export type ProgramName = keyof typeof NOT_INSTALLED;

export class TunnelError extends MystError<TunnelErrorCode> {}

const SEARCH = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The path of a system program, or an error a person can act on. */
export function program(name: ProgramName, pkg: string = name): string {
  for (const dir of SEARCH) {
    const p = `${dir}/${name}`;
    if (fs.existsSync(p)) return p;
  }
  throw new TunnelError(NOT_INSTALLED[name], `${name} is not installed: apt-get install --no-install-recommends ${pkg} (or run scripts/install.sh)`);
}

/**
 * Tunnels, routes and firewall rules need CAP_NET_ADMIN (and entering a network namespace
 * CAP_SYS_ADMIN), not root as such: say which is missing before trying (CAPABILITY_MISSING).
 */
export function requireNetworkCapabilities(what: string, o: { netns?: string; why?: string } = {}): void {
  requireCapabilities(what, [
    { capability: "CAP_NET_ADMIN", why: o.why ?? "to change network devices, routes and firewall rules" },
    ...(o.netns ? [{ capability: "CAP_SYS_ADMIN" as const, why: `to enter network namespace ${o.netns} (ip netns exec)` }] : []),
  ]);
}

/** argv, run inside network namespace `netns` when one is given. */
export function inNetns(netns: string | undefined, argv: string[]): string[] {
  return netns ? [program("ip", "iproute2"), "netns", "exec", netns, ...argv] : argv;
}

/** Runs a command to completion (with `input` on its stdin); rejects with its stderr. */
export function run(argv: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(argv[0], argv.slice(1), { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new TunnelError("COMMAND_FAILED", `${argv.join(" ")}: ${(stderr || err.message).trim().split("\n").pop()}`, { cause: err }));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** `ip` commands run as one batch (one process), in `netns` when given (`ip -n`, cheaper than `ip netns exec`). */
export function ipBatch(netns: string | undefined, commands: string[]): Promise<string> {
  return run([program("ip", "iproute2"), ...(netns ? ["-n", netns] : []), "-batch", "-"], `${commands.join("\n")}\n`);
}

/**
 * A resolver at an address the tunnel's own packets go to (its endpoint, the direct route's, a tunnel
 * peer's) is refused: that address is routed outside the tunnel, so lookups there would leave in clear
 * text (docs/privacy.md). Every tunnel type checks its config's endpoint with the config, and what its
 * route adds once known.
 */
export function refuseResolversOutsideTunnel(dns: string[], outside: { address: string }[]): void {
  const found = resolversOutsideTunnel(dns, outside);
  if (found.length > 0) throw new TunnelError("RESOLVER_OUTSIDE_TUNNEL", resolverOutsideTunnelMessage(found));
}
