import dns from "node:dns/promises";
import fs from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import type { TunnelEndpoint } from "../session/service";
import { ProtectionError } from "./errors";

/** Who the node talks to on its own behalf (not the user's traffic). */
export type ControlRole = "broker" | "discovery" | "chain";

/**
 * An endpoint of one of the node's own control connections: the broker (its dialogs, sessions,
 * invoices and promises), discovery, chain RPC. While the consumer's tunnel takes the default
 * route, these keep the route they had (a host route via the machine's own gateway) and the kill
 * switch lets exactly them out, so a session is confirmed, invoiced and paid over the connections
 * the node already has. See docs/privacy.md for what each one reveals to whom.
 */
export interface ControlEndpoint extends TunnelEndpoint {
  protocol: "tcp";
  role: ControlRole;
}

export interface ControlUrls {
  brokerUrls: string[];
  discoveryUrls: string[];
  rpcUrl: string;
}

const DEFAULT_PORTS: Record<string, number> = { "nats:": 4222, "tls:": 4222, "http:": 80, "https:": 443, "ws:": 80, "wss:": 443 };

/** Loopback and unspecified addresses never leave the machine: no exception is needed for them. */
function local(address: string): boolean {
  if (isIP(address) === 4) return address.startsWith("127.") || address === "0.0.0.0";
  return address === "::1" || address === "::";
}

/**
 * The node's control endpoints, resolved now (before any kill switch closes the resolver): every
 * address each URL's host has, on its port. Loopback ones are left out.
 */
export async function controlEndpoints(urls: ControlUrls, lookup = defaultLookup): Promise<ControlEndpoint[]> {
  const wanted: [ControlRole, string][] = [
    ...urls.brokerUrls.map((u): [ControlRole, string] => ["broker", u]),
    ...urls.discoveryUrls.map((u): [ControlRole, string] => ["discovery", u]),
    ["chain", urls.rpcUrl],
  ];
  const found = new Map<string, ControlEndpoint>();
  await Promise.all(
    wanted.map(async ([role, text]) => {
      // A broker URL may be a bare host:port, as nats.js accepts it.
      const url = new URL(role === "broker" && !text.includes("://") ? `nats://${text}` : text);
      const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
      const port = url.port ? Number(url.port) : DEFAULT_PORTS[url.protocol];
      if (!port) throw new ProtectionError("CONTROL_ENDPOINT", `the ${role} URL ${text} names no port, and ${url.protocol} has no default`);
      let addresses: string[];
      try {
        addresses = isIP(host) ? [host] : await lookup(host);
      } catch (err) {
        throw new ProtectionError("CONTROL_ENDPOINT", `cannot resolve the ${role} host ${host} before the tunnel: ${(err as Error).message}`, { cause: err });
      }
      for (const address of addresses) if (!local(address)) found.set(`${address}|${port}`, { address, port, protocol: "tcp", role });
    }),
  );
  return [...found.values()];
}

async function defaultLookup(host: string): Promise<string[]> {
  return (await dns.lookup(host, { all: true })).map((a) => a.address);
}

/**
 * Whether this process's own connections go through `netns`: no namespace named (the machine the
 * node runs on), or the named one is the namespace this process is in (`ip netns exec X myst …
 * --netns X`). A tunnel in another namespace never carries the node's own connections.
 */
export function carriesOwnConnections(netns: string | undefined): boolean {
  if (netns === undefined) return true;
  try {
    const own = fs.statSync("/proc/self/ns/net");
    const named = fs.statSync(path.join("/run/netns", netns));
    return own.ino === named.ino && own.dev === named.dev;
  } catch {
    return false;
  }
}
