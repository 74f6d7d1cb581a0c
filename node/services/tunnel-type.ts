import type { TunnelCheckSettings } from "./tunnel-check";
import type { Static, TObject } from "@sinclair/typebox";
import { MystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import type { PublicKeyDirectory } from "../identity/protocol-signature";
import type { Logger } from "../log/logger";
import type { ConsumerService, ProviderService } from "../session/service";
import type { CapabilityNeed } from "./capabilities";
import type { EgressSettings } from "./controls/egress";
import type { TunnelControls } from "./controls/tunnel-controls";

export type ServiceSpecErrorCode = "BAD_SERVICE_SETTINGS" | "SERVICE_TYPE_UNKNOWN";

export class ServiceSpecError extends MystError<ServiceSpecErrorCode> {}

/** What the node gives the provider side of a service it starts. */
export interface ProviderDeps {
  /** The service's own directory (keys, config, pid files, sockets): `<data-dir>/services/<type>`. */
  dir: string;
  directory: PublicKeyDirectory;
  /** The node's identity (a relay's certificate names it). */
  identity?: string;
  log: Logger;
  /** The provider's controls on a tunnel device (bandwidth limits, egress policy): the same for every type. */
  controls: (tunnel: { netns?: string; device: string; ipv6?: boolean }) => TunnelControls;
  /** How often to read the byte counts. Default 1 s (the adapter suite reads faster). */
  meterMs?: number;
  /**
   * The same controls as values, for a service that enforces them itself rather than on a device
   * (the proxy): each session's and the service's bandwidth (Mbit/s) and the egress policy.
   */
  limits?: { sessionMbps?: number; serviceMbps?: number; egress?: EgressSettings };
}

/**
 * What a consumer daemon keeps ready for a type's next connection, started with the node and
 * stopped with it (WireGuard: one unconfigured device, services/wireguard/spare.ts).
 */
export interface ConsumerSpare {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** What the node gives the consumer side of a service for one connection. */
export interface ConsumerDeps {
  key: IdentityKey;
  /** A private directory for pid files and sockets (`<data-dir>/run`). */
  runDir: string;
  netns?: string;
  log: Logger;
  /** Route all traffic into the tunnel (false: a confined connection routes its namespace only). */
  routeAll?: boolean;
  /** Where a service that serves the consumer locally (the proxy) listens: `host:port`. */
  listen?: string;
  /** What the daemon keeps ready for this type (its `consumerSpare`), when it keeps one. */
  spare?: ConsumerSpare;
  /** What a tunnel's stage checks ask (the settings tunnelCheckName and tunnelCheckUrl; services/tunnel-check.ts). */
  tunnelCheck?: TunnelCheckSettings;
}

/**
 * A service type, as its own folder under services/ describes it to the rest of the node: its
 * name, the settings its provider side takes (the API body, services.json, the CLI's flags and the
 * dashboard's fields all come from this schema), and how to start either side. Nothing outside
 * its folder names it but its line in services/registry.ts.
 */
export interface TunnelType<Settings extends TObject = TObject> {
  /** The name in proposals, the API, the CLI and services.json (as discovery's pattern: `^[a-z][a-z0-9-]{0,31}$`). */
  readonly type: string;
  /**
   * It carries the consumer's traffic through a network tunnel (a device consumer protection guards:
   * kill switch, DNS, IPv6); false for a service that only talks over the session (noop).
   */
  readonly network: boolean;
  /** The provider's settings, under the type's name in `POST /v1/services` (`{type, <type>: {…}}`); absent: it takes none. */
  readonly settings?: Settings;
  /** The `myst service start` flag of each setting that has one (`publicIp: "--public-ip <address>"`); its help is the setting's description. */
  readonly flags?: { readonly [setting: string]: string };
  /**
   * What the schema cannot say (an address that must be an IP, cross-field rules) and the defaults
   * services.json records; runs after the schema check; throws ServiceSpecError.
   */
  check?(settings: Static<Settings>): Static<Settings>;
  /**
   * The Linux capabilities its provider side needs (measured: docs/running-without-root.md), for
   * these settings; absent or empty: none, it runs as any user. The node refuses to start a service
   * whose needs it does not hold, naming each missing capability (services/capabilities.ts).
   */
  capabilities?(settings: Static<Settings>): readonly CapabilityNeed[];
  /** Builds and starts the provider side; the caller stops it. */
  startProvider(settings: Static<Settings>, deps: ProviderDeps): Promise<ProviderService>;
  /** The consumer side, for one connection. */
  consumer(deps: ConsumerDeps): ConsumerService;
  /** Optional: what a consumer daemon keeps ready for the next connection (configs `wireguardSpare`, `openvpnSpare`); handed to `consumer` as `deps.spare`. */
  consumerSpare?(deps: { runDir: string; log: Logger }): ConsumerSpare;
}

/** A service type with its settings' static type checked against its schema (the registry keeps them untyped). */
export function defineTunnel<Settings extends TObject>(type: TunnelType<Settings>): TunnelType {
  return type as unknown as TunnelType;
}
