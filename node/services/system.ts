import { execFile } from "node:child_process";
import fs from "node:fs";
import { MystError } from "../errors/MystError";

export type TunnelErrorCode =
  | "ADDRESS_POOL_EXHAUSTED"
  | "AUTH_REFUSED"
  | "BAD_CONSUMER_DATA"
  | "BAD_SERVICE_CONFIG"
  | "BAD_SESSION_ID"
  | "COMMAND_FAILED"
  | "DEVICE_IN_USE"
  | "ENDPOINT_NOT_IP"
  | "HANDSHAKE_TIMEOUT"
  | "KEY_IN_USE"
  | "NOT_ROOT"
  | "NO_UPLINK"
  | "OPENVPN_FAILED"
  | "PORT_IN_USE"
  | "RESOLVER_FAILED"
  | "SERVICE_NOT_RUNNING"
  | "TUN_BUSY"
  | "UAPI_FAILED"
  | "WIREGUARD_FAILED"
  | `${string}_NOT_INSTALLED`;

export class TunnelError extends MystError<TunnelErrorCode> {}

const SEARCH = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The path of a system program, or an error a person can act on. */
export function program(name: string, pkg = name): string {
  for (const dir of SEARCH) {
    const p = `${dir}/${name}`;
    if (fs.existsSync(p)) return p;
  }
  throw new TunnelError(
    `${name.toUpperCase()}_NOT_INSTALLED`,
    `${name} is not installed: apt-get install --no-install-recommends ${pkg} (or run scripts/install.sh)`,
  );
}

/** Tunnels and firewall rules need root (CAP_NET_ADMIN); say so before trying. */
export function requireRoot(what: string): void {
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new TunnelError("NOT_ROOT", `${what} needs root (CAP_NET_ADMIN): run it with sudo`);
  }
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
