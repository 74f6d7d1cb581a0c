import { isIP } from "node:net";
import { Type, type TProperties } from "@sinclair/typebox";
import { Strict } from "../values/schemas";
import type { TunnelServiceOptions } from "./tunnel-options";
import { ServiceSpecError, type ProviderDeps } from "./tunnel-type";

/** What every tunnel's provider settings hold (each type adds its own). */
export interface TunnelSettings {
  publicIp: string;
  port?: number;
  uplink?: string;
  allowPrivate?: boolean;
  allowPrivateRanges?: string[];
  netns?: string;
  ipv6?: boolean;
}

/**
 * The settings schema of a tunnel type: what every tunnel takes (public address, port, uplink,
 * private networks, namespace, IPv6) and its own settings.
 */
export function tunnelSettingsSchema<Own extends TProperties>(defaultPort: number, own: Own) {
  return Type.Object(
    {
      publicIp: Type.String({ description: "the address consumers reach this provider at (an IP address)" }),
      port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: `UDP port, default ${defaultPort}` })),
      ...own,
      uplink: Type.Optional(Type.String({ description: "internet-facing interface for NAT (default: the default route's)" })),
      allowPrivate: Type.Optional(Type.Boolean({ description: "let consumers reach private networks and this host (default false)" })),
      allowPrivateRanges: Type.Optional(Type.Array(Type.String(), { description: "private ranges consumers may reach" })),
      netns: Type.Optional(Type.String({ description: "run the server and its firewall in this network namespace (tests, demo)" })),
      ipv6: Type.Optional(
        Type.Boolean({
          description: "carry consumers' IPv6 (NAT66 out of the uplink; this host needs IPv6 egress); the proposal says `ipv6: true` (default false)",
        }),
      ),
    },
    Strict,
  );
}

/** The `myst service start` flags of the settings every tunnel takes. */
export const TUNNEL_FLAGS = {
  publicIp: "--public-ip <address>",
  port: "--port <port>",
  uplink: "--uplink <interface>",
  allowPrivate: "--allow-private",
  allowPrivateRanges: "--allow-private-range <cidr...>",
  netns: "--netns <name>",
  ipv6: "--ipv6",
} as const;

/** Checks what the schema cannot (the public address is an IP address) and fills in the port. */
export function checkTunnelSettings<S extends TunnelSettings>(settings: S, defaultPort: number): S & { port: number } {
  if (!isIP(settings.publicIp)) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `publicIp "${settings.publicIp}" is not an IP address`);
  return { ...settings, port: settings.port ?? defaultPort };
}

/** The provider options every tunnel adapter takes, from its settings and the node. */
export function tunnelServiceOptions(settings: TunnelSettings, deps: ProviderDeps): TunnelServiceOptions {
  return {
    dir: deps.dir,
    publicAddress: settings.publicIp,
    port: settings.port,
    netns: settings.netns,
    uplink: settings.uplink,
    blockPrivate: !settings.allowPrivate,
    allowPrivate: settings.allowPrivateRanges,
    ipv6: settings.ipv6,
    controls: (device) => deps.controls({ netns: settings.netns, device, ipv6: settings.ipv6 }),
    ...(deps.meterMs !== undefined ? { meterMs: deps.meterMs } : {}),
    log: deps.log,
  };
}
