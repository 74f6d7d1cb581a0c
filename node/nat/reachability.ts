import dgram from "node:dgram";
import dns from "node:dns/promises";
import net from "node:net";
import { isCarrierAddress, isPublicAddress, localAddresses } from "./addresses";
import type { PortMapper, RouterMapping } from "./port-mapping";
import { type BindingOptions, type BindingResult, parseServer, stunBinding, type TransportAddress } from "./stun";

/**
 * How this node can be reached, measured (never configured): what STUN servers see of one UDP
 * socket, whether its NAT keeps one public port for it whatever the destination, whether that NAT
 * lets in what was not asked for, and what port the router opened for it when it was asked
 * (port-mapping.ts). The contacts name only public addresses; local ones are for a peer in the
 * signed dialog, never for discovery. docs/reachability.md says it in words.
 */

/** How the NAT in front of the socket chooses its public port: "none" when there is no NAT. */
export type NatMapping = "none" | "endpoint-independent" | "endpoint-dependent" | "unknown";
export type ContactKind = "public" | "mapped" | "punch-only";
export interface Contact {
  kind: ContactKind;
  address: string;
  port: number;
  protocol: "udp" | "tcp";
}

/** What may stand in `Reachability.filtering` (RFC 4787/5780's filtering behaviours). */
export const NAT_FILTERINGS = ["endpoint-independent", "address-dependent", "address-and-port-dependent", "unknown"] as const;
export type NatFiltering = (typeof NAT_FILTERINGS)[number];

export interface Reachability {
  mapping: NatMapping;
  /** One of `NAT_FILTERINGS`: what comes in unasked ("endpoint-independent": anything; the others: only from where the node sent). */
  filtering: string;
  /** The node's public IPv4 address, as the STUN servers see it (when it is a public one). */
  publicAddress?: string;
  contacts: Contact[];
  measuredAt: number;
  /** Words a person understands. */
  summary: string;
}

/** What the measurement saw besides the result: for `myst status --json`, the log and tests. */
export interface ReachabilityDetails {
  /** The local port the contacts lead to. */
  localPort: number;
  /** The port the router mapped, and whether it is advertised (and why not). */
  portMapping?: { mapping?: RouterMapping; advertised: boolean; reason?: string };
  /** STUN servers that did not answer, with why. */
  unanswered: string[];
}

export interface MeasureOptions {
  /** STUN servers, "host:port" (port 3478 by default); the first that answers is asked first, the next for a second destination. */
  stunServers: string[];
  /** Measure from this socket (bound, udp4): the one whose mapping the contacts describe. Default: one of our own, bound to `port`. */
  socket?: dgram.Socket;
  /** With no `socket`: the local UDP port to measure from. Default any. */
  port?: number;
  /** Ask the router for a mapping of the socket's port; undefined: do not ask. */
  portMapper?: PortMapper;
  /** This machine's own IPv4 addresses. Default: its interfaces'. */
  localAddresses?: string[];
  /** Retransmission of the mapping tests (RFC 8489's defaults would wait 39.5 s for a dead server). Default RTO 250 ms, 5 requests, last wait 4 RTO: 6.75 s. */
  stun?: Pick<BindingOptions, "rtoMs" | "requests" | "lastWaitFactor">;
  /** Retransmission of the filtering tests, whose silence is an answer. Default RTO 200 ms, 3 requests, last wait 4 RTO: 1.4 s each. */
  filteringProbe?: Pick<BindingOptions, "rtoMs" | "requests" | "lastWaitFactor">;
  signal?: AbortSignal;
  now?: () => number;
}

const DEFAULT_STUN = { rtoMs: 250, requests: 5, lastWaitFactor: 4 };
const DEFAULT_FILTERING_PROBE = { rtoMs: 200, requests: 3, lastWaitFactor: 4 };

/** Measures reachability once (RFC 5780's mapping and filtering tests, plus a port mapping when a mapper is given). Never throws for the network: what it could not learn is "unknown". */
export async function measureReachability(options: MeasureOptions): Promise<Reachability & { details: ReachabilityDetails }> {
  const now = options.now ?? Date.now;
  const socket = options.socket ?? (await boundSocket(options.port ?? 0));
  try {
    const localPort = socket.address().port;
    const locals = options.localAddresses ?? localAddresses();
    const unanswered: string[] = [];
    const servers = await resolveServers(options.stunServers, unanswered);
    const stun = { ...DEFAULT_STUN, ...options.stun, signal: options.signal };

    // Test I: the first server that answers.
    let first: { server: TransportAddress; result: BindingResult } | undefined;
    let rest = servers;
    while (!first && rest.length > 0) {
      const [server, ...others] = rest;
      rest = others;
      try {
        first = { server, result: await stunBinding(socket, server, stun) };
      } catch (err) {
        unanswered.push(`${server.address}:${server.port} (${(err as Error).message})`);
      }
    }
    if (!first) {
      return finish({ mapping: "unknown", filtering: "unknown", contacts: [], reason: "no STUN server answered" }, { localPort, unanswered }, now);
    }
    const seen = first.result.mapped;
    const noNat = locals.includes(seen.address) && seen.port === localPort;

    // Test II: the same socket to another address (the server's OTHER-ADDRESS, or the next server).
    let mapping: NatMapping = noNat ? "none" : "unknown";
    if (!noNat) {
      const other = first.result.otherAddress;
      const candidates = [...(other && other.address !== first.server.address ? [other] : []), ...rest.filter((s) => s.address !== first.server.address)];
      for (const server of candidates) {
        try {
          const second = await stunBinding(socket, server, stun);
          mapping = second.mapped.address === seen.address && second.mapped.port === seen.port ? "endpoint-independent" : "endpoint-dependent";
          break;
        } catch (err) {
          unanswered.push(`${server.address}:${server.port} (${(err as Error).message})`);
        }
      }
    }

    // Filtering: a fresh socket (no earlier traffic opened its NAT to the other address), RFC 5780 §4.4.
    const filtering = first.result.otherAddress
      ? await measureFiltering(first.server, { ...DEFAULT_FILTERING_PROBE, ...options.filteringProbe, signal: options.signal })
      : "unknown";

    const publicAddress = isPublicAddress(seen.address) ? seen.address : undefined;
    const contacts: Contact[] = [];
    let portMapping: ReachabilityDetails["portMapping"];
    if (noNat) {
      if (publicAddress)
        contacts.push({ kind: filtering === "endpoint-independent" ? "public" : "punch-only", address: publicAddress, port: localPort, protocol: "udp" });
    } else {
      if (options.portMapper) {
        portMapping = await askRouter(options.portMapper, localPort, publicAddress);
        if (portMapping.advertised && portMapping.mapping)
          contacts.push({ kind: "mapped", address: portMapping.mapping.externalAddress, port: portMapping.mapping.externalPort, protocol: "udp" });
      }
      if (publicAddress) contacts.push({ kind: "punch-only", address: publicAddress, port: seen.port, protocol: "udp" });
    }
    return finish(
      { mapping, filtering, publicAddress, contacts, reason: publicAddress ? undefined : `the STUN server saw ${seen.address}, not a public address` },
      { localPort, unanswered, portMapping },
      now,
    );
  } finally {
    if (!options.socket) socket.close();
  }
}

async function boundSocket(port: number): Promise<dgram.Socket> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  return socket;
}

async function resolveServers(texts: string[], unanswered: string[]): Promise<TransportAddress[]> {
  const out: TransportAddress[] = [];
  for (const text of texts) {
    try {
      const { host, port } = parseServer(text);
      const address = net.isIPv4(host) ? host : (await dns.lookup(host, { family: 4 })).address;
      if (!out.some((s) => s.address === address && s.port === port)) out.push({ family: 4, address, port });
    } catch (err) {
      unanswered.push(`${text} (${(err as Error).message})`);
    }
  }
  return out;
}

/** RFC 5780 §4.4 from a fresh socket: answered from the other address and port, then from the other port only. */
async function measureFiltering(
  server: TransportAddress,
  probe: Pick<BindingOptions, "rtoMs" | "requests" | "lastWaitFactor" | "signal">,
): Promise<NatFiltering> {
  const socket = await boundSocket(0);
  try {
    const answered = (change: { ip: boolean; port: boolean }) =>
      stunBinding(socket, server, { ...probe, change }).then(
        () => true,
        () => false,
      );
    if (await answered({ ip: true, port: true })) return "endpoint-independent";
    if (await answered({ ip: false, port: true })) return "address-dependent";
    return "address-and-port-dependent";
  } finally {
    socket.close();
  }
}

/** Asks the router for the port, and keeps the mapping only if it leads to where STUN sees this node. */
async function askRouter(mapper: PortMapper, port: number, publicAddress: string | undefined): Promise<NonNullable<ReachabilityDetails["portMapping"]>> {
  let mapping: RouterMapping;
  try {
    mapping = await mapper.map(port, "udp");
  } catch (err) {
    return { advertised: false, reason: (err as Error).message };
  }
  const refuse = async (reason: string) => {
    await mapper.unmap(port, "udp");
    return { mapping, advertised: false, reason };
  };
  if (isCarrierAddress(mapping.externalAddress))
    return refuse(`the router's own address ${mapping.externalAddress} is inside a carrier's NAT (100.64.0.0/10): its port leads nowhere`);
  if (!isPublicAddress(mapping.externalAddress))
    return refuse(`the router's own address ${mapping.externalAddress} is private: another NAT is beyond it, so its port leads nowhere`);
  if (publicAddress && mapping.externalAddress !== publicAddress)
    return refuse(
      `the router says its address is ${mapping.externalAddress} but the internet sees ${publicAddress}: another NAT is beyond it, so its port leads nowhere`,
    );
  return { mapping, advertised: true };
}

function finish(
  r: { mapping: NatMapping; filtering: NatFiltering; publicAddress?: string; contacts: Contact[]; reason?: string },
  details: ReachabilityDetails,
  now: () => number,
): Reachability & { details: ReachabilityDetails } {
  const contacts = r.contacts.filter((c) => isPublicAddress(c.address));
  return {
    mapping: r.mapping,
    filtering: r.filtering,
    ...(r.publicAddress ? { publicAddress: r.publicAddress } : {}),
    contacts,
    measuredAt: now(),
    summary: summarize({ ...r, contacts }, details),
    details,
  };
}

/** The reachability in words: what the node sits behind, and how a peer can reach it. */
export function summarize(
  r: { mapping: NatMapping; filtering: string; publicAddress?: string; contacts: Contact[]; reason?: string },
  details?: Pick<ReachabilityDetails, "portMapping">,
): string {
  const mapped = r.contacts.find((c) => c.kind === "mapped");
  const refused = details?.portMapping && !details.portMapping.advertised && details.portMapping.mapping ? ` (${details.portMapping.reason})` : "";
  if (r.mapping === "unknown" && !r.publicAddress)
    return `reachability unknown: ${r.reason ?? "the STUN servers could not tell"}; reachable only through nodes that reach it`;
  if (r.mapping === "none") {
    return r.filtering === "endpoint-independent"
      ? `a public address (${r.publicAddress}) with no NAT: reachable directly`
      : `a public address (${r.publicAddress}) behind a firewall that lets in only what the node asked for: reachable by hole punching`;
  }
  if (mapped) return `behind a home router that opened port ${mapped.port} for this node on ${mapped.address}: reachable directly`;
  if (r.mapping === "endpoint-independent")
    return r.filtering === "endpoint-independent"
      ? `behind a router that keeps one port per app and lets anyone answer on it: reachable by hole punching${refused}`
      : `behind a home router that keeps one port per app: reachable by hole punching${refused}`;
  if (r.mapping === "endpoint-dependent")
    return `behind a router that gives each destination a new port (symmetric NAT): reachable by hole punching only from public nodes or nodes whose router keeps one port per app; two such nodes need a relay${refused}`;
  return `behind a NAT whose behaviour could not be measured (one STUN server answered, and it has no second address): reachable by hole punching, perhaps${refused}`;
}
