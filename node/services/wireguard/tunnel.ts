import { Type } from "@sinclair/typebox";
import { checkTunnelSettings, TUNNEL_FLAGS, tunnelServiceOptions, tunnelSettingsSchema } from "../tunnel-settings";
import { tunnelCapabilities } from "../capabilities";
import { defineTunnel } from "../tunnel-type";
import { WireGuardConsumerService } from "./consumer";
import { WireGuardProviderService } from "./provider";
import { WireGuardSpare } from "./spare";

/** A WireGuard service's settings, as the API takes them and services.json keeps them. */
export const WireGuardSettingsSchema = tunnelSettingsSchema(51820, {
  device: Type.Optional(
    Type.String({
      pattern: "^[A-Za-z0-9_-]{1,15}$",
      description: "the interface's name (a name in use is refused: DEVICE_IN_USE), default the first free of mystwg0, mystwg1, …",
    }),
  ),
  mtu: Type.Optional(Type.Integer({ minimum: 1280, maximum: 1500, description: "the tunnel's MTU, default 1420" })),
});

/** WireGuard (services/wireguard): a supervised wireguard-go, a peer per session. */
export const wireguard = defineTunnel({
  type: "wireguard",
  network: true,
  settings: WireGuardSettingsSchema,
  flags: { ...TUNNEL_FLAGS, device: "--device <name>" },
  capabilities: (settings) => tunnelCapabilities("interface", settings),
  check: (settings) => checkTunnelSettings(settings, 51820),
  async startProvider(settings, deps) {
    const service = new WireGuardProviderService({ ...tunnelServiceOptions(settings, deps), device: settings.device, mtu: settings.mtu });
    await service.start();
    return service;
  },
  consumer: (deps) =>
    new WireGuardConsumerService({
      runDir: deps.runDir,
      netns: deps.netns,
      log: deps.log,
      routeAll: deps.routeAll,
      spare: deps.spare instanceof WireGuardSpare ? deps.spare : undefined,
      tunnelCheck: deps.tunnelCheck,
    }),
  consumerSpare: (deps) => new WireGuardSpare(deps),
});
