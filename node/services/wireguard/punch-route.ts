import { isIP } from "node:net";
import { nftSession } from "../../consumer-protection/nft-session";
import { spawner } from "../spawner";
import { ConntrackForgetter } from "./conntrack-forget";
import { inNetns, program, TunnelError } from "../system";

/**
 * The kernel route for a provider whose router maps ports per destination ("symmetric") and a
 * consumer whose router keeps one port per socket (issue 28). The birthday search meets on one of
 * the provider's probing sockets (local port p): its router's mapping toward the consumer's tunnel
 * belongs to the 5-tuple (p → consumer), not to the socket. wireguard-go has one port of its own;
 * this table makes its packets toward that consumer leave from p (and the consumer's come back to
 * it), in the kernel, with no user-space copy:
 *
 * - `probe_ports`: the probing sockets' ports are `notrack` while they probe, so the host keeps no
 *   conntrack entry for (p → consumer) that the tunnel's own translated flow would clash with (the
 *   kernel would then pick another port, whose mapping the router never made).
 * - `out_ports` (consumer address · consumer port · our tunnel port → p): the tunnel's packets to the
 *   consumer are masqueraded to source port p; `in_ports` (consumer address · consumer port · p → our
 *   tunnel port): the consumer's packets to p are redirected to the tunnel's port, whichever side
 *   sends first. One element per session, removed when it ends; the table goes with the last one.
 *
 * In the provider's own namespace (the node's, or `netns`); nft needs CAP_NET_ADMIN, which a
 * provider selling WireGuard already holds (docs/running-without-root.md).
 */
export const PUNCH_TABLE = "myst_punch";

/** One session's route: the consumer's tunnel as the provider's router sees it, and the probing socket's port that met it. */
export interface PunchRoute {
  consumer: string;
  consumerPort: number;
  /** wireguard-go's own UDP port. */
  tunnelPort: number;
  /** The local port of the probing socket the consumer's tunnel spray reached. */
  localPort: number;
}

const port = (p: number, what: string): number => {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new TunnelError("BAD_SERVICE_CONFIG", `${what} is not a UDP port: ${p}`);
  return p;
};

function checkRoute(r: PunchRoute): PunchRoute {
  if (isIP(r.consumer) !== 4) throw new TunnelError("BAD_SERVICE_CONFIG", `the consumer's tunnel address is not IPv4: ${String(r.consumer).slice(0, 60)}`);
  port(r.consumerPort, "the consumer's tunnel port");
  port(r.tunnelPort, "the tunnel's port");
  port(r.localPort, "the probing socket's port");
  if (r.localPort === r.tunnelPort) throw new TunnelError("BAD_SERVICE_CONFIG", "the probing socket's port is the tunnel's own");
  return r;
}

/** The table, made if it is not there (`add` leaves an existing one and its elements alone). */
export function punchTableScript(): string {
  const t = `ip ${PUNCH_TABLE}`;
  const key = "ipv4_addr . inet_service . inet_service : inet_service";
  return [
    `add table ${t}`,
    `add set ${t} probe_ports { type inet_service; }`,
    `add map ${t} out_ports { type ${key}; }`,
    `add map ${t} in_ports { type ${key}; }`,
    `add chain ${t} raw_out { type filter hook output priority raw; policy accept; }`,
    `add chain ${t} raw_in { type filter hook prerouting priority raw; policy accept; }`,
    `add chain ${t} nat_out { type nat hook postrouting priority srcnat; policy accept; }`,
    `add chain ${t} nat_in { type nat hook prerouting priority dstnat; policy accept; }`,
    // Rules only into chains that are still empty (a second `add rule` would duplicate them).
    `flush chain ${t} raw_out`,
    `flush chain ${t} raw_in`,
    `flush chain ${t} nat_out`,
    `flush chain ${t} nat_in`,
    `add rule ${t} raw_out udp sport @probe_ports notrack`,
    `add rule ${t} raw_in udp dport @probe_ports notrack`,
    `add rule ${t} nat_out meta l4proto udp masquerade to : ip daddr . udp dport . udp sport map @out_ports`,
    `add rule ${t} nat_in meta l4proto udp redirect to : ip saddr . udp sport . udp dport map @in_ports`,
    "",
  ].join("\n");
}

/** The probing sockets' ports, untracked from now on (before their first probe leaves). */
export function probePortsScript(ports: number[], action: "add" | "delete"): string {
  const list = [...new Set(ports.map((p) => port(p, "a probing socket's port")))];
  return list.length === 0 ? "" : `${action} element ip ${PUNCH_TABLE} probe_ports { ${list.join(", ")} }\n`;
}

/**
 * The session's route, in one transaction: its probing port is tracked again (the tunnel's flow
 * needs conntrack for its translation) and the tunnel's packets to the consumer leave from it.
 */
export function routeScript(route: PunchRoute, action: "add" | "delete", wasProbing = false): string {
  const r = checkRoute(route);
  const t = `ip ${PUNCH_TABLE}`;
  return [
    ...(action === "add" && wasProbing ? [`delete element ${t} probe_ports { ${r.localPort} }`] : []),
    `${action} element ${t} out_ports { ${r.consumer} . ${r.consumerPort} . ${r.tunnelPort} : ${r.localPort} }`,
    `${action} element ${t} in_ports { ${r.consumer} . ${r.consumerPort} . ${r.localPort} : ${r.tunnelPort} }`,
    "",
  ].join("\n");
}

/**
 * The provider's punch routes in one namespace: `prepare` as a hard-side search starts, `probing`
 * before it sends, `route` when it met, `release` when the session ends (or the search failed). The
 * table is removed when nothing is left in it, so a failed or ended session leaves nothing behind.
 */
export class PunchRoutes {
  readonly #probing = new Set<number>();
  readonly #routes = new Map<string, PunchRoute>();
  /** Sessions whose search is on, the table made for them in advance (`prepare`). */
  readonly #searching = new Set<string>();
  #made = false;
  /** Started as a search starts (`prepare`): forgets the probe's flow when it meets with no process start. */
  #forgetter?: ConntrackForgetter;

  constructor(readonly netns?: string) {}

  /**
   * The table made (and nft's session warm) while the session's search runs, so that when it meets
   * `route` is one small transaction: an nft start (3–25 ms) and the table's set-up are no longer
   * between the meeting and the tunnel's first packet.
   */
  async prepare(sessionId: string): Promise<void> {
    this.#searching.add(sessionId);
    if (!this.#forgetter?.usable) this.#forgetter = new ConntrackForgetter(this.netns);
    if (this.#made) return;
    await this.#apply(punchTableScript());
    this.#made = true;
    // Released meanwhile (the session ended) with nothing else in the table: it goes.
    if (this.#searching.size === 0 && this.#routes.size === 0 && this.#probing.size === 0) await this.clear();
  }

  async probing(ports: number[]): Promise<void> {
    await this.#apply((this.#made ? "" : punchTableScript()) + probePortsScript(ports, "add"));
    this.#made = true;
    for (const p of ports) this.#probing.add(p);
  }

  /**
   * Puts the session's route in place. Resolves with how the probe's flow was forgotten: by the warm
   * forgetter (`ctnetlink`), or by `conntrack -D` (`conntrack`: no forgetter, or it failed or found nothing).
   */
  async route(sessionId: string, route: PunchRoute): Promise<"ctnetlink" | "conntrack"> {
    await this.#apply((this.#made ? "" : punchTableScript()) + routeScript(route, "add", this.#probing.has(route.localPort)));
    this.#made = true;
    this.#probing.delete(route.localPort);
    this.#searching.delete(sessionId);
    this.#routes.set(sessionId, route);
    // What the host tracked between the consumer's tunnel and the probing port (the probe's own flow)
    // would keep its translation: forgotten, so the tunnel's next packet takes this route. Over the
    // warm forgetter when the search was prepared; `conntrack -D` otherwise, or if that fails.
    const forgetter = this.#forgetter?.usable ? this.#forgetter : undefined;
    // "dropped 0" is not taken as done: the forgetter looks only at each interface's first address,
    // and the flow may have left from another; `conntrack -D` then matches it wherever it is.
    const forgot = await forgetter?.forget(route.consumer, route.consumerPort, route.localPort).then(
      (dropped) => dropped > 0,
      () => false,
    );
    if (forgot) return "ctnetlink";
    await this.#forget(route);
    return "conntrack";
  }

  /** The session's route (if any) and these probing ports go; the table too when nothing is left. */
  async release(sessionId: string, probePorts: number[] = []): Promise<void> {
    const route = this.#routes.get(sessionId);
    const ports = probePorts.filter((p) => this.#probing.has(p));
    const searched = this.#searching.delete(sessionId);
    // A prepare whose table could not be made still started the forgetter: it goes with the last search.
    if (!this.#made && this.#searching.size === 0 && this.#routes.size === 0 && this.#probing.size === 0) this.#endForgetter();
    if (!this.#made || (!route && ports.length === 0 && !searched)) return;
    this.#routes.delete(sessionId);
    for (const p of ports) this.#probing.delete(p);
    if (this.#routes.size === 0 && this.#probing.size === 0 && this.#searching.size === 0) {
      this.#made = false;
      this.#endForgetter();
      await this.#apply(`table ip ${PUNCH_TABLE}\ndelete table ip ${PUNCH_TABLE}\n`);
    } else await this.#apply((route ? routeScript(route, "delete") : "") + probePortsScript(ports, "delete"));
    // The tunnel's translated flow would outlive the route (and catch a later session to the same port).
    if (route) await this.#forget(route);
  }

  /** Whatever a dead node left (at start) or this one holds (at stop). */
  async clear(): Promise<void> {
    this.#routes.clear();
    this.#probing.clear();
    this.#searching.clear();
    this.#made = false;
    this.#endForgetter();
    await this.#apply(`table ip ${PUNCH_TABLE}\ndelete table ip ${PUNCH_TABLE}\n`);
  }

  #endForgetter(): void {
    this.#forgetter?.end();
    this.#forgetter = undefined;
  }

  /** Drops the host's conntrack entries to and from the consumer's tunnel (conntrack -D; none is no error), both at once: it is on the connect's path. */
  async #forget(r: PunchRoute): Promise<void> {
    const conntrack = program("conntrack", "conntrack");
    const sides = [
      ["--orig-dst", r.consumer, "--dport", String(r.consumerPort)],
      ["--orig-src", r.consumer, "--sport", String(r.consumerPort)],
    ];
    await Promise.all(sides.map((side) => spawner.run(inNetns(this.netns, [conntrack, "-D", "-p", "udp", ...side]), "", 15_000).catch(() => undefined)));
  }

  #apply(script: string): Promise<void> {
    return nftSession(this.netns).apply(script);
  }
}
