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

/** The service types this node can sell and buy. */
export const SERVICE_TYPES = ["openvpn", "noop"] as const;
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

/** A provider service to run: its type and, for openvpn, its settings. */
export type ServiceSpec = { type: "noop" } | { type: "openvpn"; openvpn: OpenVpnSettings };

export type ServiceSpecErrorCode = "BAD_SERVICE_SETTINGS" | "SERVICE_TYPE_UNKNOWN";

export class ServiceSpecError extends MystError<ServiceSpecErrorCode> {}

/** What a provider service needs from the node that runs it. */
export interface ServiceDeps {
  dataDir: string;
  directory: PublicKeyDirectory;
  log: Logger;
}

export function isServiceType(type: string): type is ServiceType {
  return (SERVICE_TYPES as readonly string[]).includes(type);
}

/** Checks a spec the edge could not (cross-field rules); returns it typed. */
export function checkServiceSpec(spec: { type: string; openvpn?: Partial<OpenVpnSettings> }): ServiceSpec {
  if (!isServiceType(spec.type))
    throw new ServiceSpecError("SERVICE_TYPE_UNKNOWN", `unknown service type "${spec.type}"; choose ${SERVICE_TYPES.join(" or ")}`);
  if (spec.type === "noop") return { type: "noop" };
  const o = spec.openvpn;
  if (!o?.publicIp) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", "openvpn needs publicIp: the address consumers reach this provider at");
  if (!isIP(o.publicIp)) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `publicIp "${o.publicIp}" is not an IP address`);
  if (o.bind !== undefined && !isIP(o.bind)) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `bind "${o.bind}" is not an IP address`);
  const port = o.port ?? 1194;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `port "${o.port}" is not a port number`);
  return { type: "openvpn", openvpn: { ...o, publicIp: o.publicIp, port } };
}

/** Builds and starts the provider side of a service; the caller stops it. */
export async function startProviderService(spec: ServiceSpec, deps: ServiceDeps): Promise<ProviderService> {
  if (spec.type === "noop") return new NoopProviderService();
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
  throw new ServiceSpecError("SERVICE_TYPE_UNKNOWN", `unknown service type "${type}"; choose ${SERVICE_TYPES.join(" or ")}`);
}
