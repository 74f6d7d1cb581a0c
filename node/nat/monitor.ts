import dgram from "node:dgram";
import fs from "node:fs";
import os from "node:os";
import type { Logger } from "pino";
import { localAddresses } from "./addresses";
import { type PortMapper, type RouterMapping, RouterPortMapper } from "./port-mapping";
import { type MeasureOptions, measureReachability, type Reachability, type ReachabilityDetails } from "./reachability";

export interface ReachabilitySettings {
  /** STUN servers ("host:port"); none: reachability is not measured (and the router is not asked for a port). */
  stunServers: string[];
  /** Ask the home router for a port (PCP, NAT-PMP, UPnP-IGD) while measuring. */
  portMapping: boolean;
  /** The local UDP port measured from (and so the one the contacts lead to); 0: any free one. */
  port: number;
}

export interface ReachabilityMonitorOptions extends ReachabilitySettings {
  log?: Logger;
  /** Measure again this often, whatever happens. Default 10 minutes. */
  recheckMs?: number;
  /** Look at this machine's addresses this often; a change measures again at once. Default 10 s. */
  watchMs?: number;
  /** A port mapper other than the router's (tests). */
  portMapper?: PortMapper;
  /** Passed to each measurement (tests shorten the STUN timeouts). */
  measure?: Pick<MeasureOptions, "stun" | "filteringProbe">;
  /**
   * Whether this machine's own traffic goes into a consumer's tunnel now, or is held by that
   * connection's kill switch: a measurement would then see the provider's network, or nothing (no
   * STUN answer: "reachability unknown", and the next connects failed at once with "UDP gets
   * nothing back here"). While it does, the last measurement is kept, and one that falls due (a
   * network change, the recheck, a lost router mapping) is made once it no longer does.
   */
  tunnelled?: () => boolean;
}

/** What the node shows: the last measurement, or why there is none yet. */
export type ReachabilityView =
  | (Reachability & { state: "measured"; details: ReachabilityDetails })
  | { state: "measuring" | "not-measured"; summary: string; contacts: []; mapping: "unknown"; filtering: "unknown"; measuredAt?: undefined };

/**
 * Keeps a node's reachability current: measures at start, again when this machine's addresses
 * change (a new network, a new lease) and every `recheckMs` (a new public address behind the same
 * router), and tells listeners when what it would advertise changed. It owns the UDP socket it
 * measures from, whose port the contacts lead to, and the router's mapping of that port (renewed
 * by the mapper, removed at stop).
 */
export class ReachabilityMonitor {
  readonly #o: ReachabilityMonitorOptions;
  #socket?: dgram.Socket;
  #mapper?: PortMapper;
  #current?: Reachability & { details: ReachabilityDetails };
  #measuring?: Promise<void>;
  #again = false;
  #timers: NodeJS.Timeout[] = [];
  #addresses = "";
  /** A measurement fell due while this machine's traffic was tunnelled: made at the first look after it no longer is. */
  #owed = false;
  #listeners = new Set<(r: Reachability) => void>();
  #stopped = true;
  /** Services' own ports to keep mapped on the router ("udp/1194"), and what the router granted for each. */
  readonly #wanted = new Map<string, { port: number; protocol: "udp" | "tcp" }>();
  readonly #granted = new Map<string, RouterMapping>();

  constructor(options: ReachabilityMonitorOptions) {
    this.#o = options;
  }

  /** Whether the settings ask for measuring at all. */
  get enabled(): boolean {
    return this.#o.stunServers.length > 0;
  }

  /** The socket measured from (bound while started): the one a direct channel should use, so the contacts lead to it. */
  get socket(): dgram.Socket | undefined {
    return this.#socket;
  }

  /** The last measurement; undefined before the first one ends. */
  current(): (Reachability & { details: ReachabilityDetails }) | undefined {
    return this.#current;
  }

  view(): ReachabilityView {
    if (this.#current) return { state: "measured", ...this.#current };
    const base = { contacts: [] as [], mapping: "unknown" as const, filtering: "unknown" as const };
    if (!this.enabled) return { state: "not-measured", summary: "not measured: no STUN servers are set (MYST_STUN_SERVERS)", ...base };
    return { state: this.#stopped ? "not-measured" : "measuring", summary: this.#stopped ? "not measured: the node is not running" : "measuring…", ...base };
  }

  /** Told after each measurement whose contacts, classification or words differ from the last one's. */
  onChange(listener: (r: Reachability) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Binds the socket and starts measuring in the background (a start never waits for STUN servers). */
  async start(): Promise<void> {
    if (!this.enabled || !this.#stopped) return;
    this.#stopped = false;
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(this.#o.port, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    // A datagram error (an ICMP unreachable after a probe) must not kill the node.
    socket.on("error", (err) => this.#o.log?.debug({ err }, "reachability socket error"));
    this.#socket = socket;
    this.#mapper = this.#o.portMapping
      ? (this.#o.portMapper ??
        new RouterPortMapper({
          log: this.#o.log,
          onLost: (m) => {
            this.#granted.delete(portKey(m.internalPort, m.protocol));
            void this.measure();
          },
        }))
      : undefined;
    this.#addresses = addressKey();
    const watch = setInterval(() => {
      if (this.#owed && !this.#o.tunnelled?.()) void this.measure();
      const now = addressKey();
      if (now === this.#addresses) return;
      this.#addresses = now;
      this.#o.log?.info({ addresses: now }, "this machine's addresses changed; measuring reachability again");
      void this.measure();
    }, this.#o.watchMs ?? 10_000);
    const recheck = setInterval(() => void this.measure(), this.#o.recheckMs ?? 600_000);
    for (const t of [watch, recheck]) t.unref();
    this.#timers = [watch, recheck];
    void this.measure();
  }

  /** Measures now (a measurement under way is followed by one more); resolves when done. */
  measure(): Promise<void> {
    if (this.#stopped || !this.#socket) return Promise.resolve();
    if (this.#o.tunnelled?.()) return this.#owe();
    this.#owed = false;
    if (this.#measuring) {
      this.#again = true;
      return this.#measuring;
    }
    this.#measuring = (async () => {
      do {
        this.#again = false;
        await this.#measureOnce();
      } while (this.#again && !this.#stopped);
    })().finally(() => (this.#measuring = undefined));
    return this.#measuring;
  }

  async #measureOnce(): Promise<void> {
    const socket = this.#socket;
    if (!socket) return;
    // Looked at all along, not only at the end: a connect whose kill switch held the traffic for part
    // of the measurement and was gone by its end (a short session, a failed connect) left a
    // measurement that saw nothing kept as "UDP gets nothing back here", and every later connect
    // failed with that until the 10-minute recheck (s10's nat-paths bench: 18 connects in a row).
    let heldMeanwhile = false;
    const look = setInterval(() => {
      if (this.#o.tunnelled?.()) heldMeanwhile = true;
    }, TUNNEL_LOOK_MS);
    try {
      const r = await measureReachability({
        stunServers: this.#o.stunServers,
        socket,
        portMapper: this.#mapper,
        localAddresses: localAddresses(),
        ...this.#o.measure,
      });
      if (this.#stopped) return;
      // A tunnel came up (or its kill switch armed) while it measured: what it saw is not this network.
      if (heldMeanwhile || this.#o.tunnelled?.()) return void this.#owe();
      const before = this.#current;
      this.#current = r;
      this.#o.log?.info({ mapping: r.mapping, filtering: r.filtering, contacts: r.contacts, summary: r.summary }, "reachability measured");
      if (!before || advertised(before) !== advertised(r)) for (const l of this.#listeners) l(r);
      await this.#mapServicePorts();
    } catch (err) {
      this.#o.log?.warn({ err }, "could not measure reachability");
    } finally {
      clearInterval(look);
    }
  }

  /** Keeps the last measurement until this machine's traffic no longer goes into a tunnel (`tunnelled`). */
  #owe(): Promise<void> {
    if (!this.#owed)
      this.#o.log?.info({}, "a consumer tunnel or its kill switch holds this machine's traffic: reachability kept as last measured until it no longer does");
    this.#owed = true;
    return Promise.resolve();
  }

  /**
   * Keeps a service's own port mapped on the router (OpenVPN's: its consumers reach it unasked),
   * whenever the router grants mappings that lead somewhere (the reachability socket's mapping is
   * advertised); mapped again after each measurement that finds it gone. Same external port as
   * the local one, or it is given back: the service's config names one port.
   */
  keep(port: number, protocol: "udp" | "tcp"): void {
    this.#wanted.set(portKey(port, protocol), { port, protocol });
    void this.#mapServicePorts();
  }

  /** Stops keeping a service's port mapped, and removes its mapping. */
  release(port: number, protocol: "udp" | "tcp"): void {
    const k = portKey(port, protocol);
    this.#wanted.delete(k);
    if (this.#granted.delete(k)) void this.#mapper?.unmap(port, protocol);
  }

  /** Whether the router maps this service port now (with its own number). */
  maps(port: number, protocol: "udp" | "tcp"): boolean {
    return this.#granted.has(portKey(port, protocol));
  }

  /** The services' ports the router maps now. */
  servicePorts(): RouterMapping[] {
    return [...this.#granted.values()];
  }

  async #mapServicePorts(): Promise<void> {
    const mapper = this.#mapper;
    if (!mapper || this.#stopped || !this.#current?.contacts.some((c) => c.kind === "mapped")) return;
    for (const [k, { port, protocol }] of this.#wanted) {
      if (this.#granted.has(k)) continue;
      try {
        const mapping = await mapper.map(port, protocol);
        if (mapping.externalPort !== port) {
          this.#o.log?.warn({ mapping }, "the router mapped the service's port to another port; the service's address names its own: given back");
          await mapper.unmap(port, protocol);
          continue;
        }
        if (this.#wanted.has(k)) this.#granted.set(k, mapping);
        else await mapper.unmap(port, protocol);
      } catch (err) {
        this.#o.log?.warn({ err, port, protocol }, "the router did not map the service's port: consumers that cannot punch will not reach it");
      }
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.#measuring?.catch(() => undefined);
    await this.#mapper?.stop();
    this.#granted.clear();
    this.#socket?.close();
    this.#socket = undefined;
  }
}

const portKey = (port: number, protocol: string) => `${protocol}/${port}`;
/** How often a measurement looks whether a tunnel or kill switch holds this machine's traffic (one holds it for tens of ms at the least). */
const TUNNEL_LOOK_MS = 5;

const advertised = (r: Reachability) => JSON.stringify([r.mapping, r.filtering, r.contacts, r.summary]);
/**
 * This machine's IPv4 addresses that say which network it is on: not loopback, and not a tunnel
 * device's (TUN, WireGuard, TAP). A session's own tunnel coming up is not a new network; measuring
 * again then would send the STUN probes into the session's kill switch, get no answer, and leave the
 * node's reachability unknown, so that its next connects failed at once ("UDP gets nothing back here").
 */
export function networkAddressKey(
  interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces(),
  isTunnel: (name: string) => boolean = (name) => isTunnelDevice(interfaces[name] ?? [], name),
): string {
  return localAddresses(interfaces, isTunnel).sort().join(",");
}

const NO_LINK_ADDRESS = "00:00:00:00:00:00";

/**
 * A tunnel device, by /sys/class/net/<name> where /sys lists it: its type 65534 (TUN, WireGuard) or
 * its tun_flags (TAP, OpenVPN's `dev tap`). A PPP link (PPPoE, type 512) has no link-layer address
 * either, yet it is the network: a new address on it is a change. Where /sys does not list the device
 * (a process that entered a namespace without remounting /sys reads another's), what getifaddrs says
 * of this process's own namespace decides: a TUN or WireGuard device has no link-layer address.
 */
function isTunnelDevice(addresses: os.NetworkInterfaceInfo[], name: string): boolean {
  const sys = `/sys/class/net/${name}`;
  if (fs.existsSync(sys)) return readType(`${sys}/type`) === TUN_TYPE || fs.existsSync(`${sys}/tun_flags`);
  return addresses.length > 0 && addresses.every((a) => a.mac === NO_LINK_ADDRESS);
}

/** ARPHRD_NONE: the link type of TUN and WireGuard devices. */
const TUN_TYPE = 65534;

function readType(file: string): number | undefined {
  try {
    return Number(fs.readFileSync(file, "utf8").trim());
  } catch {
    return undefined;
  }
}

const addressKey = () => networkAddressKey();
