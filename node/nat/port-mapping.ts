import dgram from "node:dgram";
import fs from "node:fs";
import net from "node:net";
import type { Logger } from "pino";
import { MystError } from "../errors/MystError";
import { newPcpNonce, pcpMap } from "./pcp";

/**
 * A port the home router opens for this node on its own WAN address, asked for with PCP (RFC 6887's
 * MAP request, pcp.ts: one datagram to the gateway, tried first), NAT-PMP (RFC 6886, its
 * predecessor, which older routers speak) or UPnP-IGD (SSDP search, then SOAP), the last two
 * through `@achingbrain/nat-port-mapper`. The mapping is renewed at half its lifetime and removed at
 * `stop()`. Whether the mapping is any use (the router's WAN address may itself be private, behind
 * a carrier's NAT) is judged by reachability.ts, which compares it with what STUN saw.
 */

export type PortMappingErrorCode = "PORT_MAPPING_NO_GATEWAY" | "PORT_MAPPING_UNAVAILABLE";
export class PortMappingError extends MystError<PortMappingErrorCode> {}

export type MappingMethod = "pcp" | "nat-pmp" | "upnp";

export interface RouterMapping {
  protocol: "udp" | "tcp";
  internalPort: number;
  /** The router's WAN address as the router reports it (not necessarily what the internet sees). */
  externalAddress: string;
  externalPort: number;
  method: MappingMethod;
  /** The router asked. */
  gateway: string;
  lifetimeS: number;
}

/** What reachability needs of a port mapper (a fake in unit tests, `RouterPortMapper` in the node). */
export interface PortMapper {
  /** Asks the router for `internalPort`; resolves with the mapping, or rejects saying why none was had. */
  map(internalPort: number, protocol: "udp" | "tcp"): Promise<RouterMapping>;
  /** Removes the mapping of `internalPort` (one this mapper made); no-op otherwise. */
  unmap(internalPort: number, protocol: "udp" | "tcp"): Promise<void>;
  /** Removes every mapping this mapper made and stops renewing. */
  stop(): Promise<void>;
}

export interface RouterPortMapperOptions {
  /** The router to ask. Default: this machine's default IPv4 gateway (from /proc/net/route). */
  gateway?: string;
  /** Asked lifetime of a mapping, seconds. Default 7200 (RFC 6886's recommendation); UPnP gets at least an hour (the library's floor). */
  lifetimeS?: number;
  /** How long one attempt (NAT-PMP, then UPnP's search and request) may take. Default 3 s. */
  timeoutMs?: number;
  /** The protocols to ask with, in order. Default PCP, NAT-PMP, then UPnP. */
  methods?: MappingMethod[];
  /** The mapping's description on the router. Default "myst". */
  description?: string;
  log?: Logger;
  /** Told after each renewal that the router accepted. */
  onRenewed?: (mapping: RouterMapping) => void;
  /** Told when a renewal fails: the mapping is gone until the next `map`. */
  onLost?: (mapping: RouterMapping, error: Error) => void;
}

type Library = typeof import("@achingbrain/nat-port-mapper");
type LibraryGateway = Awaited<ReturnType<ReturnType<Library["upnpNat"]>["getGateway"]>>;

// The library is ESM only (its exports have no `require` condition); TypeScript compiles `import()`
// to `require()` under CommonJS, so the import is made where TypeScript cannot rewrite it.
const importEsm = new Function("specifier", "return import(specifier)") as (specifier: string) => Promise<Library>;
let library: Promise<Library> | undefined;
const loadLibrary = () => {
  library ??= importEsm("@achingbrain/nat-port-mapper");
  return library;
};

interface Held {
  mapping: RouterMapping;
  timer: NodeJS.Timeout;
  /** UPnP keeps the gateway it found; NAT-PMP asks afresh (the library's NAT-PMP client cannot recover from an unanswered request). */
  upnp?: LibraryGateway;
  /** PCP names a mapping by its nonce: renewing and deleting it need the same one. */
  pcpNonce?: Buffer;
}

export class RouterPortMapper implements PortMapper {
  readonly #o: RouterPortMapperOptions;
  readonly #held = new Map<string, Held>();
  #stopped = false;

  constructor(options: RouterPortMapperOptions = {}) {
    this.#o = options;
  }

  async map(internalPort: number, protocol: "udp" | "tcp"): Promise<RouterMapping> {
    if (this.#stopped) throw new PortMappingError("PORT_MAPPING_UNAVAILABLE", "the port mapper is stopped");
    const gateway = this.#o.gateway ?? defaultGateway();
    if (!gateway) throw new PortMappingError("PORT_MAPPING_NO_GATEWAY", "this machine has no default IPv4 gateway to ask for a port");
    await this.unmap(internalPort, protocol);
    const local = await localAddressToward(gateway);
    const reasons: string[] = [];
    for (const method of this.#o.methods ?? (["pcp", "nat-pmp", "upnp"] as const)) {
      try {
        const { mapping, upnp, pcpNonce } = await this.#ask(method, gateway, local, internalPort, protocol);
        this.#hold(mapping, upnp, pcpNonce);
        this.#o.log?.info({ mapping }, "the router mapped a port");
        return mapping;
      } catch (err) {
        reasons.push(`${METHOD_NAMES[method]}: ${(err as Error).message}`);
      }
    }
    throw new PortMappingError("PORT_MAPPING_UNAVAILABLE", `the router ${gateway} mapped no port (${reasons.join("; ")})`);
  }

  async unmap(internalPort: number, protocol: "udp" | "tcp"): Promise<void> {
    const held = this.#held.get(key(internalPort, protocol));
    if (!held) return;
    this.#held.delete(key(internalPort, protocol));
    clearTimeout(held.timer);
    try {
      if (held.upnp) await upnpDelete(held.upnp, held.mapping, AbortSignal.timeout(this.#timeout));
      else if (held.pcpNonce) await this.#pcp(held.mapping.gateway, internalPort, protocol, 0, held.pcpNonce, 0);
      // NAT-PMP deletes with lifetime 0 and external port 0 (RFC 6886 §3.4); the library's own unmap asks for TCP whatever was mapped.
      else
        await this.#pmp(held.mapping.gateway, (g, signal) =>
          g.map(internalPort, "", { protocol, ttl: 0, externalPort: 0, description: "", autoRefresh: false, signal }),
        );
      this.#o.log?.info({ mapping: held.mapping }, "the router's port mapping was removed");
    } catch (err) {
      this.#o.log?.warn({ err, mapping: held.mapping }, "could not remove the router's port mapping (it expires by itself)");
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#held.values()].map((h) => this.unmap(h.mapping.internalPort, h.mapping.protocol)));
  }

  get #timeout(): number {
    return this.#o.timeoutMs ?? 3000;
  }

  get #lifetimeS(): number {
    return this.#o.lifetimeS ?? 7200;
  }

  async #ask(
    method: MappingMethod,
    gateway: string,
    local: string,
    internalPort: number,
    protocol: "udp" | "tcp",
    held?: { upnp?: LibraryGateway; pcpNonce?: Buffer; externalPort?: number },
  ) {
    const description = this.#o.description ?? "myst";
    if (method === "pcp") {
      const pcpNonce = held?.pcpNonce ?? newPcpNonce();
      const r = await this.#pcp(gateway, internalPort, protocol, this.#lifetimeS, pcpNonce, held?.externalPort ?? internalPort, local);
      const mapping = { protocol, internalPort, externalAddress: r.externalAddress, externalPort: r.externalPort, method, gateway, lifetimeS: r.lifetimeS };
      return { mapping: mapping satisfies RouterMapping, upnp: undefined, pcpNonce };
    }
    if (method === "nat-pmp") {
      // The library writes `ttl` into the NAT-PMP request as it is: seconds here.
      const result = await this.#pmp(gateway, async (g, signal) => {
        const externalAddress = await g.externalIp({ signal });
        const m = await g.map(internalPort, local, { protocol, ttl: this.#lifetimeS, description, autoRefresh: false, signal });
        return { externalAddress, externalPort: m.externalPort };
      });
      return { mapping: { protocol, internalPort, ...result, method, gateway, lifetimeS: this.#lifetimeS } satisfies RouterMapping, upnp: undefined };
    }
    const signal = AbortSignal.timeout(this.#timeout);
    const found = held?.upnp ?? (await findUpnpGateway(gateway, signal));
    const externalAddress = await found.externalIp({ signal });
    const lifetimeS = Math.max(this.#lifetimeS, 3600);
    const m = await found.map(internalPort, local, { protocol, ttl: lifetimeS * 1000, externalPort: internalPort, description, autoRefresh: false, signal });
    return {
      mapping: { protocol, internalPort, externalAddress, externalPort: m.externalPort, method, gateway, lifetimeS } satisfies RouterMapping,
      upnp: found,
    };
  }

  /** One PCP MAP exchange from this node's address toward the router (lifetime 0 deletes). */
  async #pcp(gateway: string, internalPort: number, protocol: "udp" | "tcp", lifetimeS: number, nonce: Buffer, suggestedPort: number, local?: string) {
    const client = local ?? (await localAddressToward(gateway));
    return pcpMap(gateway, { client, protocol, internalPort, suggestedPort, lifetimeS, nonce }, this.#timeout);
  }

  /** One NAT-PMP exchange on a fresh client, closed after; tried twice (a PCP announcement can land on its socket as an answer). */
  async #pmp<T>(gateway: string, exchange: (g: LibraryGateway, signal: AbortSignal) => Promise<T>): Promise<T> {
    const { pmpNat } = await loadLibrary();
    let last: unknown;
    for (let attempt = 0; attempt < 2; attempt++) {
      const client = pmpNat(gateway, { autoRefresh: false });
      try {
        return await exchange(client, AbortSignal.timeout(this.#timeout / 2));
      } catch (err) {
        last = err;
      } finally {
        await client.stop().catch(() => {});
      }
    }
    throw last instanceof Error ? new Error(describe(last)) : new Error(String(last));
  }

  #hold(mapping: RouterMapping, upnp: LibraryGateway | undefined, pcpNonce: Buffer | undefined): void {
    const timer = setTimeout(() => void this.#renew(mapping), (mapping.lifetimeS * 1000) / 2);
    timer.unref();
    this.#held.set(key(mapping.internalPort, mapping.protocol), { mapping, timer, upnp, pcpNonce });
  }

  async #renew(old: RouterMapping): Promise<void> {
    const held = this.#held.get(key(old.internalPort, old.protocol));
    if (!held || this.#stopped) return;
    try {
      const local = await localAddressToward(old.gateway);
      const { mapping, upnp, pcpNonce } = await this.#ask(old.method, old.gateway, local, old.internalPort, old.protocol, {
        ...held,
        externalPort: old.externalPort,
      });
      if (this.#stopped || this.#held.get(key(old.internalPort, old.protocol)) !== held) return;
      this.#hold(mapping, upnp, pcpNonce);
      this.#o.log?.debug({ mapping }, "the router's port mapping was renewed");
      this.#o.onRenewed?.(mapping);
    } catch (err) {
      this.#held.delete(key(old.internalPort, old.protocol));
      this.#o.log?.warn({ err, mapping: old }, "the router did not renew its port mapping");
      this.#o.onLost?.(old, err as Error);
    }
  }
}

const key = (port: number, protocol: string) => `${protocol}/${port}`;

const METHOD_NAMES: Record<MappingMethod, string> = { pcp: "PCP", "nat-pmp": "NAT-PMP", upnp: "UPnP" };

function describe(err: Error): string {
  if (err.name === "TimeoutError" || err.name === "AbortError") return "no answer";
  return err.message;
}

async function findUpnpGateway(gateway: string, signal: AbortSignal): Promise<LibraryGateway> {
  const { upnpNat } = await loadLibrary();
  const client = upnpNat({ autoRefresh: false });
  try {
    for await (const found of client.findGateways({ signal })) if (found.host === gateway && found.family === "IPv4") return found;
  } catch (err) {
    throw new Error(describe(err as Error));
  }
  throw new Error("no UPnP gateway answered");
}

/**
 * UPnP's DeletePortMapping for what was mapped. The library's own `unmap` sends an empty
 * NewProtocol, which miniupnpd (rightly) does not match to any mapping, so the request is made
 * through the library's device (its SOAP client) with the protocol; a library without that device
 * falls back to its own `unmap`.
 */
async function upnpDelete(gateway: LibraryGateway, mapping: RouterMapping, signal: AbortSignal): Promise<void> {
  const device = (
    gateway as unknown as {
      gateway?: { run?: (service: string, action: string, args: [string, string | number][], o: { signal: AbortSignal }) => Promise<unknown> };
    }
  ).gateway;
  if (typeof device?.run !== "function") return gateway.unmap(mapping.internalPort, { signal });
  await device.run(
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "DeletePortMapping",
    [
      ["NewRemoteHost", ""],
      ["NewExternalPort", mapping.externalPort],
      ["NewProtocol", mapping.protocol.toUpperCase()],
    ],
    { signal },
  );
}

/** This machine's default IPv4 gateway, from the kernel's routing table (/proc/net/route: little-endian hex). */
export function defaultGateway(routes = "/proc/net/route"): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(routes, "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n").slice(1)) {
    const [, destination, gateway, flags] = line.trim().split(/\s+/);
    // RTF_UP | RTF_GATEWAY, destination 0.0.0.0
    if (destination === "00000000" && gateway && (Number.parseInt(flags, 16) & 0x3) === 0x3) {
      const n = Number.parseInt(gateway, 16);
      return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join(".");
    }
  }
  return undefined;
}

/** The address this machine uses to reach `host` (a connected UDP socket sends nothing). */
export async function localAddressToward(host: string): Promise<string> {
  if (!net.isIPv4(host)) throw new PortMappingError("PORT_MAPPING_NO_GATEWAY", `${host} is not an IPv4 address`);
  const socket = dgram.createSocket("udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.connect(5351, host, () => resolve());
    });
    return socket.address().address;
  } catch (err) {
    throw new PortMappingError("PORT_MAPPING_NO_GATEWAY", `no route to the gateway ${host}`, { cause: err });
  } finally {
    socket.close();
  }
}
