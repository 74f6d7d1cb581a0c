import type { TunnelCheckSettings } from "./tunnel-check";
import path from "node:path";
import { Type, type Static, type TObject, type TOptional } from "@sinclair/typebox";
import { Value, ValueErrorType } from "@sinclair/typebox/value";
import type { PublicKeyDirectory } from "../identity/protocol-signature";
import type { IdentityKey } from "../identity/key";
import type { Logger } from "../log/logger";
import type { ConsumerService, ProviderService } from "../session/service";
import {
  type CapabilityNeed,
  describeCapabilities,
  explainMissing,
  type HeldCapabilities,
  heldCapabilities,
  missingCapabilities,
  requireCapabilities,
} from "./capabilities";
import type { ControlsSettings } from "./controls/settings-schema";
import { TunnelControls } from "./controls/tunnel-controls";
import { ServicePolicy } from "./controls/service-policy";
import * as registry from "./registry";
import { type ConsumerSpare, ServiceSpecError, type TunnelType } from "./tunnel-type";

export { ServiceSpecError, type ServiceSpecErrorCode, type TunnelType } from "./tunnel-type";

/** The service types this node can sell and buy, in services/registry.ts's order (CommonJS keeps its exports' order). */
export const TUNNEL_TYPES: readonly TunnelType[] = Object.values(registry);
// A line of the registry that could not work fails the start, naming it: a name proposals and
// discovery refuse, one taken twice, or one a start body already uses for something else.
for (const t of TUNNEL_TYPES) {
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(t.type) || ["type", "offer", "controls"].includes(t.type))
    throw new Error(`services/registry.ts: "${t.type}" cannot name a service type (^[a-z][a-z0-9-]{0,31}$, not type, offer or controls)`);
  if (TUNNEL_TYPES.filter((o) => o.type === t.type).length > 1) throw new Error(`services/registry.ts: two service types are named "${t.type}"`);
}

/** Their names: the API's, services.json's, the CLI's and the dashboard's choices. */
export const SERVICE_TYPES: readonly string[] = TUNNEL_TYPES.map((t) => t.type);
export type ServiceType = string;
/**
 * Each type as a client sees it (the CLI, through the API's schemas): its settings and `myst service
 * start` flags, and whether it carries traffic through a network tunnel.
 */
export const SERVICE_SETTINGS = TUNNEL_TYPES.map((t) => ({ type: t.type, network: t.network, settings: t.settings, flags: t.flags ?? {} }));
/** What `myst connect` and `PUT /v1/connection` buy when no type is named. */
export const DEFAULT_SERVICE_TYPE = SERVICE_TYPES[0];

/**
 * A provider service to run, as the API body and services.json spell it: its type, its settings
 * under the type's name (`{type: "wireguard", wireguard: {…}}`; none for a type without settings),
 * and the provider's controls (any type).
 */
export interface ServiceSpec {
  type: ServiceType;
  controls?: ControlsSettings;
  [settings: string]: unknown;
}

/** What a provider service needs from the node that runs it. */
export interface ServiceDeps {
  dataDir: string;
  directory: PublicKeyDirectory;
  /** The node's identity (a relay's certificate names it). */
  identity?: string;
  log: Logger;
  /** The offer's bandwidth: each session of a tunnel service is limited to it (0: no limit). */
  bandwidthMbps?: number;
  /** How often a tunnel reads its byte counts. Default 1 s. */
  meterMs?: number;
}

/** Each type's settings schema under its name, optional: the properties a start body and services.json add for them. */
export function settingsProperties(): Record<string, TOptional<TObject>> {
  return Object.fromEntries(TUNNEL_TYPES.flatMap((t) => (t.settings ? [[t.type, Type.Optional(t.settings)]] : [])));
}

export function isServiceType(type: string): boolean {
  return SERVICE_TYPES.includes(type);
}

/** The registry's entry of a type, or SERVICE_TYPE_UNKNOWN naming the choices. */
export function tunnelType(type: string): TunnelType {
  const found = TUNNEL_TYPES.find((t) => t.type === type);
  if (!found) throw new ServiceSpecError("SERVICE_TYPE_UNKNOWN", `unknown service type "${type}"; choose ${SERVICE_TYPES.join(" or ")}`);
  return found;
}

/** Checks a spec against its type's settings schema and the rules the schema cannot say; returns it with its defaults. */
export function checkServiceSpec(spec: { type: string; controls?: ControlsSettings; [settings: string]: unknown }): ServiceSpec {
  const tunnel = tunnelType(spec.type);
  for (const other of SERVICE_TYPES)
    if (other !== spec.type && spec[other] !== undefined)
      throw new ServiceSpecError(
        "BAD_SERVICE_SETTINGS",
        `a ${spec.type} service takes ${tunnel.settings ? `\`${spec.type}\` settings` : "no settings"}, not \`${other}\``,
      );
  const controls = spec.controls && Object.keys(spec.controls).length ? { controls: spec.controls } : {};
  if (!tunnel.settings) {
    if (spec[spec.type] !== undefined) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `a ${spec.type} service takes no settings`);
    return { type: spec.type, ...controls };
  }
  const settings = (spec[spec.type] ?? {}) as Static<TObject>;
  const error = Value.Errors(tunnel.settings, settings).First();
  if (error) {
    const name = error.path.slice(1).replaceAll("/", ".");
    throw new ServiceSpecError(
      "BAD_SERVICE_SETTINGS",
      error.type === ValueErrorType.ObjectRequiredProperty
        ? `${spec.type} needs ${name}${error.schema.description ? `: ${error.schema.description}` : ""}`
        : `${spec.type}.${name}: ${error.message}`,
    );
  }
  return { type: spec.type, [spec.type]: tunnel.check ? tunnel.check(settings) : settings, ...controls };
}

/** The capabilities the provider side of a checked spec needs (its type's declaration for its settings). */
export function serviceCapabilities(spec: ServiceSpec): readonly CapabilityNeed[] {
  return tunnelType(spec.type).capabilities?.((spec[spec.type] ?? {}) as Static<TObject>) ?? [];
}

/**
 * What this process may sell, with the capabilities it holds (read at the daemon's start): each
 * type that needs one it lacks (with its default settings), and the sentence that says why.
 */
export function capabilityReport(held: HeldCapabilities = heldCapabilities()): { held: string; passedOn: string; refused: { type: string; reason: string }[] } {
  const refused = TUNNEL_TYPES.flatMap((t) => {
    const missing = missingCapabilities(t.capabilities?.({}) ?? [], held);
    return missing.length ? [{ type: t.type, reason: explainMissing(t.type, missing, held) }] : [];
  });
  return { held: describeCapabilities(held.effective), passedOn: describeCapabilities(held.children), refused };
}

/**
 * Builds and starts the provider side of a checked spec; the caller stops it. A spec whose
 * capabilities this process does not hold is refused first (CAPABILITY_MISSING, naming each one).
 */
export async function startProviderService(spec: ServiceSpec, deps: ServiceDeps): Promise<ProviderService> {
  requireCapabilities(spec.type, serviceCapabilities(spec));
  return tunnelType(spec.type).startProvider((spec[spec.type] ?? {}) as Static<TObject>, {
    dir: path.join(deps.dataDir, "services", spec.type),
    directory: deps.directory,
    ...(deps.identity ? { identity: deps.identity } : {}),
    log: deps.log,
    ...(deps.meterMs !== undefined ? { meterMs: deps.meterMs } : {}),
    limits: { sessionMbps: deps.bandwidthMbps, serviceMbps: spec.controls?.serviceBandwidthMbps, egress: spec.controls?.egress },
    // The provider's controls on a tunnel's interface (bandwidth limits, egress policy): the same for every tunnel type.
    controls: (tunnel) =>
      new TunnelControls({
        ...tunnel,
        sessionMbps: deps.bandwidthMbps,
        serviceMbps: spec.controls?.serviceBandwidthMbps,
        egress: spec.controls?.egress,
        log: deps.log,
      }),
  });
}

/** The consumer side of a service type; `spares`: what the daemon keeps ready (`consumerSpares`), by type. */
export function consumerService(
  type: string,
  deps: {
    key: IdentityKey;
    dataDir: string;
    netns?: string;
    log: Logger;
    routeAll?: boolean;
    listen?: string;
    spares?: ReadonlyMap<string, ConsumerSpare>;
    tunnelCheck?: TunnelCheckSettings;
  },
): ConsumerService {
  return tunnelType(type).consumer({
    key: deps.key,
    runDir: path.join(deps.dataDir, "run"),
    netns: deps.netns,
    log: deps.log,
    routeAll: deps.routeAll,
    listen: deps.listen,
    spare: deps.spares?.get(type),
    tunnelCheck: deps.tunnelCheck,
  });
}

/**
 * What a consumer daemon keeps ready for the next connection, by service type (configs `wireguardSpare`,
 * `openvpnSpare`; `types`: only these, default every type that has one): started and stopped with the node.
 */
export function consumerSpares(deps: { dataDir: string; log: Logger; types?: string[] }): Map<string, ConsumerSpare> {
  const runDir = path.join(deps.dataDir, "run");
  const wanted = (type: string) => !deps.types || deps.types.includes(type);
  return new Map(TUNNEL_TYPES.flatMap((t) => (t.consumerSpare && wanted(t.type) ? [[t.type, t.consumerSpare({ runDir, log: deps.log })] as const] : [])));
}

/**
 * A service's admission policy (schedule, access lists, caps) from its spec, every value checked
 * (an access list file is read now): a bad one stops the start with a ControlsError that names it.
 */
export function servicePolicy(spec: ServiceSpec, log: Logger): ServicePolicy {
  return new ServicePolicy(spec.controls ?? {}, { log });
}
