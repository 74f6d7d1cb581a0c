import dns from "node:dns";
import net from "node:net";
import os from "node:os";
import { checkEgress, type EgressSettings } from "../controls/egress";
import { canonicalIp, isPublicAddress } from "../../values/ip";

/** Mail submission and relay: blocked unless the provider allows mail (`controls.egress.allowSmtp`). */
export const SMTP_PORTS = [25, 465, 587];

/** A CONNECT target as the consumer named it: a host name or an address literal, and a port. */
export interface Destination {
  host: string;
  port: number;
}

/** Why a destination is refused, in the words the consumer is answered with (`myst-refusal`). */
export type DestinationRefusal = "bad-target" | "blocked-port" | "private-network" | "blocked-network" | "unresolved";

export class DestinationRefused extends Error {
  constructor(
    readonly refusal: DestinationRefusal,
    message: string,
  ) {
    super(message);
  }
}

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})?)*\.?$/;

/** `host:port` or `[v6]:port` of a CONNECT request's `:authority`; a DestinationRefused when it is neither. */
export function parseAuthority(authority: string | undefined): Destination {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(authority ?? "");
  const port = Number(m?.[3]);
  const host = m?.[1] ?? m?.[2] ?? "";
  if (!m || port < 1 || port > 65535) throw new DestinationRefused("bad-target", `"${String(authority).slice(0, 80)}" is not host:port`);
  if (m[1] !== undefined ? net.isIPv6(host) : net.isIPv4(host) || HOST_NAME.test(host)) return { host, port };
  throw new DestinationRefused("bad-target", `"${host.slice(0, 80)}" is not a host name or an address`);
}

/** An IPv4 address inside an IPv6 one that leads to it: mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96), 6to4 (2002::/16). */
function embeddedV4(address: string): string | undefined {
  const lower = address.toLowerCase();
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const words = expand6(lower);
  if (!words) return undefined;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return v4(words[6], words[7]);
  if (words[0] === 0x64 && words[1] === 0xff9b && words.slice(2, 6).every((w) => w === 0)) return v4(words[6], words[7]);
  if (words[0] === 0x2002) return v4(words[1], words[2]);
  return undefined;
}

function expand6(address: string): number[] | undefined {
  if (!net.isIPv6(address)) return undefined;
  let text = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const p = v4[1].split(".").map(Number);
    text = text.slice(0, -v4[1].length) + `${((p[0] << 8) | p[1]).toString(16)}:${((p[2] << 8) | p[3]).toString(16)}`;
  }
  const [head, tail] = text.split("::");
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const fill = tail !== undefined ? 8 - h.length - t.length : 0;
  const all = [...h, ...Array(fill).fill("0"), ...t].map((w) => Number.parseInt(w, 16));
  return all.length === 8 ? all : undefined;
}

export interface DestinationPolicyOptions {
  egress?: EgressSettings;
  /** Private ranges consumers may reach after all (CIDR), as the tunnels' `allowPrivateRanges`. */
  allowPrivateRanges?: string[];
  /** Let consumers reach private networks and this host (the tunnels' `allowPrivate`). Default false. */
  allowPrivate?: boolean;
  /** This provider's public address (consumers must not loop back into it). */
  publicIp?: string;
  /** Resolves a name (tests put a fake resolver here). Default: the system's, every address. */
  lookup?: (host: string) => Promise<string[]>;
}

/**
 * Where a proxy stream may go, checked on the address it will really connect to: the name is
 * resolved here, at the provider, and every address is judged (no SSRF through a name that
 * resolves into the provider's LAN). Refused: private, loopback, link-local (with the cloud
 * metadata address 169.254.169.254), carrier-grade NAT, multicast and reserved networks, IPv4 and
 * IPv6 (and IPv4 inside IPv6), this host's own addresses, the egress policy's networks, and its
 * ports: SMTP (25, 465, 587) unless mail is allowed, and `blockPorts`.
 */
export class DestinationPolicy {
  readonly #blockedPorts: [number, number][];
  readonly #blocked = new net.BlockList();
  readonly #allowed = new net.BlockList();
  readonly #o: DestinationPolicyOptions;

  constructor(o: DestinationPolicyOptions = {}) {
    this.#o = o;
    const egress = checkEgress({ ...o.egress, allowSmtp: true });
    this.#blockedPorts = egress.ports.map((p) => {
      const [a, b] = p.split(":").map(Number);
      return [a, b ?? a];
    });
    if (!o.egress?.allowSmtp) for (const p of SMTP_PORTS) this.#blockedPorts.push([p, p]);
    for (const [cidrs, type] of [
      [egress.v4, "ipv4"],
      [egress.v6, "ipv6"],
    ] as const)
      for (const cidr of cidrs) addCidr(this.#blocked, cidr, type);
    for (const cidr of o.allowPrivateRanges ?? []) addCidr(this.#allowed, cidr, cidr.includes(":") ? "ipv6" : "ipv4");
  }

  /** Refuses a blocked port before anything is resolved. */
  checkPort(port: number): void {
    if (this.#blockedPorts.some(([a, b]) => port >= a && port <= b))
      throw new DestinationRefused("blocked-port", `port ${port} is blocked by this provider${SMTP_PORTS.includes(port) ? " (mail)" : ""}`);
  }

  /** Why `address` may not be reached, or null. */
  refusalOf(given: string): DestinationRefused | null {
    // Every check on the one spelling: `0:0:0:0:0:0:0:1` is `::1`, and the provider's own address is its own however written.
    const address = canonicalIp(given);
    if (address === undefined) return new DestinationRefused("private-network", `${given} is not an address this provider dials`);
    const v4 = net.isIPv6(address) ? embeddedV4(address) : undefined;
    if (v4 !== undefined) return this.refusalOf(v4);
    const type = net.isIPv6(address) ? "ipv6" : "ipv4";
    if (this.#blocked.check(address, type)) return new DestinationRefused("blocked-network", `${address} is in a network this provider blocks`);
    const own = address === canonicalIp(this.#o.publicIp ?? "") || ownAddresses().some((a) => canonicalIp(a) === address);
    const privateNet = own || !isPublicAddress(address);
    if (privateNet && !this.#o.allowPrivate && !this.#allowed.check(address, type))
      return new DestinationRefused("private-network", `${address} is ${own ? "this provider's own address" : "a private, loopback or link-local address"}`);
    return null;
  }

  /**
   * The addresses to connect to for `destination`: the literal, or what the name resolves to here,
   * without the refused ones; a DestinationRefused when none is left.
   */
  async addresses(destination: Destination): Promise<string[]> {
    this.checkPort(destination.port);
    const candidates = net.isIP(destination.host) ? [destination.host] : await this.#lookup(destination.host);
    const refusals = candidates.map((a) => this.refusalOf(a));
    const allowed = candidates.filter((_, i) => refusals[i] === null);
    if (allowed.length === 0) {
      const first = refusals.find((r) => r !== null)!;
      throw net.isIP(destination.host) ? first : new DestinationRefused(first.refusal, `${destination.host} resolves to ${first.message}`);
    }
    return allowed;
  }

  async #lookup(host: string): Promise<string[]> {
    try {
      const found = this.#o.lookup ? await this.#o.lookup(host) : (await dns.promises.lookup(host, { all: true, verbatim: true })).map((a) => a.address);
      if (found.length === 0) throw new Error("no address");
      return found;
    } catch (err) {
      throw new DestinationRefused("unresolved", `${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
}

function addCidr(list: net.BlockList, cidr: string, type: "ipv4" | "ipv6"): void {
  const [address, bits] = cidr.split("/");
  if (bits === undefined) list.addAddress(address, type);
  else list.addSubnet(address, Number(bits), type);
}

/** This host's addresses now (interfaces come and go). */
function ownAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((i): i is os.NetworkInterfaceInfo => !!i)
    .map((i) => i.address.toLowerCase());
}
