import path from "node:path";
import { isIP } from "node:net";
import type { PublicKeyDirectory } from "../identity/protocol-signature";
import { MystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import type { Logger } from "../log/logger";
import type { ConsumerService, ProviderService } from "../session/service";
import { NoopConsumerService, NoopProviderService } from "./noop/noop";
import { OpenVpnConsumerService } from "./openvpn/consumer";
import { OpenVpnProviderService } from "./openvpn/provider";
import { WireGuardConsumerService } from "./wireguard/consumer";
import { WireGuardProviderService } from "./wireguard/provider";
import type { ControlsSettings } from "./controls/settings-schema";
import { TunnelControls } from "./controls/tunnel-controls";
import { ServicePolicy } from "./controls/service-policy";

/** The service types this node can sell and buy. */
export const SERVICE_TYPES = ["openvpn", "wireguard", "noop"] as const;
export type ServiceType = (typeof SERVICE_TYPES)[number];

/** How to run the provider side of OpenVPN (as the CLI flags and the API body give it). */
export interface OpenVpnSettings {
  /** The address consumers connect to. */
  publicIp: string;
  /** UDP port. Default 1194. */
  port?: number;
  bind?: string;
  uplink?: string;
  /** Let consumers reach private networks and this host. Default false (blocked). */
  allowPrivate?: boolean;
  allowPrivateRanges?: string[];
  netns?: string;
  /** Carry consumers' IPv6 (NAT66 out of the uplink): this provider has IPv6 egress. Default false. */
  ipv6?: boolean;
}

/** How to run the provider side of WireGuard (as the CLI flags and the API body give it). */
export interface WireGuardSettings {
  /** The address consumers send their tunnel packets to: an IP address. */
  publicIp: string;
  /** UDP port. Default 51820. */
  port?: number;
  uplink?: string;
  /** Let consumers reach private networks and this host. Default false (blocked). */
  allowPrivate?: boolean;
  allowPrivateRanges?: string[];
  netns?: string;
  /** Carry consumers' IPv6 (a /128 each, NAT66 out of the uplink). Default false. */
  ipv6?: boolean;
  /** The interface. Default: the first free of mystwg0, mystwg1, … */
  device?: string;
  /** The tunnel's MTU. Default 1420. */
  mtu?: number;
}

/** A provider service to run: its type, its tunnel settings, and the provider's controls (any type). */
export type ServiceSpec = ({ type: "noop" } | { type: "openvpn"; openvpn: OpenVpnSettings } | { type: "wireguard"; wireguard: WireGuardSettings }) & {
  controls?: ControlsSettings;
};

export type ServiceSpecErrorCode = "BAD_SERVICE_SETTINGS" | "SERVICE_TYPE_UNKNOWN";

export class ServiceSpecError extends MystError<ServiceSpecErrorCode> {}

/** What a provider service needs from the node that runs it. */
export interface ServiceDeps {
  dataDir: string;
  directory: PublicKeyDirectory;
  log: Logger;
  /** The offer's bandwidth: each session of a tunnel service is limited to it (0: no limit). */
  bandwidthMbps?: number;
}

export function isServiceType(type: string): type is ServiceType {
  return (SERVICE_TYPES as readonly string[]).includes(type);
}

/** Checks a spec the edge could not (cross-field rules); returns it typed. */
export function checkServiceSpec(spec: {
  type: string;
  openvpn?: Partial<OpenVpnSettings>;
  wireguard?: Partial<WireGuardSettings>;
  controls?: ControlsSettings;
}): ServiceSpec {
  if (!isServiceType(spec.type))
    throw new ServiceSpecError("SERVICE_TYPE_UNKNOWN", `unknown service type "${spec.type}"; choose ${SERVICE_TYPES.join(" or ")}`);
  const controls = spec.controls && Object.keys(spec.controls).length ? { controls: spec.controls } : {};
  if (spec.type === "noop") return { type: "noop", ...controls };
  if (spec.type === "wireguard") {
    const w = spec.wireguard;
    if (spec.openvpn) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", "a wireguard service takes `wireguard` settings, not `openvpn`");
    if (!w?.publicIp) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", "wireguard needs publicIp: the address consumers reach this provider at");
    if (!isIP(w.publicIp)) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `publicIp "${w.publicIp}" is not an IP address`);
    const port = checkPort(w.port ?? 51820, w.port);
    if (w.device !== undefined && !/^[A-Za-z0-9_-]{1,15}$/.test(w.device))
      throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `device "${w.device}" is not an interface name (1-15 of A-Z a-z 0-9 _ -)`);
    if (w.mtu !== undefined && !(Number.isInteger(w.mtu) && w.mtu >= 1280 && w.mtu <= 1500))
      throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `mtu "${w.mtu}" is not between 1280 and 1500`);
    return { type: "wireguard", wireguard: { ...w, publicIp: w.publicIp, port }, ...controls };
  }
  const o = spec.openvpn;
  if (spec.wireguard) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", "an openvpn service takes `openvpn` settings, not `wireguard`");
  if (!o?.publicIp) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", "openvpn needs publicIp: the address consumers reach this provider at");
  if (!isIP(o.publicIp)) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `publicIp "${o.publicIp}" is not an IP address`);
  if (o.bind !== undefined && !isIP(o.bind)) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `bind "${o.bind}" is not an IP address`);
  const port = checkPort(o.port ?? 1194, o.port);
  return { type: "openvpn", openvpn: { ...o, publicIp: o.publicIp, port }, ...controls };
}

function checkPort(port: number, given: unknown): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `port "${given}" is not a port number`);
  return port;
}

/** The provider's controls on a tunnel's interface (bandwidth limits, egress policy): the same for every tunnel type. */
function tunnelControls(spec: ServiceSpec, deps: ServiceDeps, tunnel: { netns?: string; device: string; ipv6?: boolean }): TunnelControls {
  return new TunnelControls({
    ...tunnel,
    sessionMbps: deps.bandwidthMbps,
    serviceMbps: spec.controls?.serviceBandwidthMbps,
    egress: spec.controls?.egress,
    log: deps.log,
  });
}

/** Builds and starts the provider side of a service; the caller stops it. */
export async function startProviderService(spec: ServiceSpec, deps: ServiceDeps): Promise<ProviderService> {
  if (spec.type === "noop") return new NoopProviderService();
  if (spec.type === "wireguard") {
    const w = spec.wireguard;
    const wireguard = new WireGuardProviderService({
      dir: path.join(deps.dataDir, "services", "wireguard"),
      publicAddress: w.publicIp,
      port: w.port,
      device: w.device,
      mtu: w.mtu,
      netns: w.netns,
      uplink: w.uplink,
      blockPrivate: !w.allowPrivate,
      allowPrivate: w.allowPrivateRanges,
      ipv6: w.ipv6,
      controls: (device) => tunnelControls(spec, deps, { netns: w.netns, device, ipv6: w.ipv6 }),
      log: deps.log,
    });
    await wireguard.start();
    return wireguard;
  }
  const o = spec.openvpn;
  const service = new OpenVpnProviderService({
    dir: path.join(deps.dataDir, "services", "openvpn"),
    directory: deps.directory,
    publicAddress: o.publicIp,
    port: o.port,
    bind: o.bind,
    netns: o.netns,
    uplink: o.uplink,
    blockPrivate: !o.allowPrivate,
    allowPrivate: o.allowPrivateRanges,
    ipv6: o.ipv6,
    controls: (device) => tunnelControls(spec, deps, { netns: o.netns, device, ipv6: o.ipv6 }),
    log: deps.log,
  });
  await service.start();
  return service;
}

/** The consumer side of a service type. */
export function consumerService(type: string, deps: { key: IdentityKey; dataDir: string; netns?: string; log: Logger; routeAll?: boolean }): ConsumerService {
  if (type === "noop") return new NoopConsumerService();
  if (type === "openvpn")
    return new OpenVpnConsumerService({ key: deps.key, runDir: path.join(deps.dataDir, "run"), netns: deps.netns, log: deps.log, routeAll: deps.routeAll });
  if (type === "wireguard")
    return new WireGuardConsumerService({ runDir: path.join(deps.dataDir, "run"), netns: deps.netns, log: deps.log, routeAll: deps.routeAll });
  throw new ServiceSpecError("SERVICE_TYPE_UNKNOWN", `unknown service type "${type}"; choose ${SERVICE_TYPES.join(" or ")}`);
}

/**
 * A service's admission policy (schedule, access lists, caps) from its spec, every value checked
 * (an access list file is read now): a bad one stops the start with a ControlsError that names it.
 */
export function servicePolicy(spec: ServiceSpec, log: Logger): ServicePolicy {
  return new ServicePolicy(spec.controls ?? {}, { log });
}
