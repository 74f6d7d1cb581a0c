import { isIP } from "node:net";
import { Type } from "@sinclair/typebox";
import { checkTunnelSettings, TUNNEL_FLAGS, tunnelServiceOptions, tunnelSettingsSchema } from "../tunnel-settings";
import { tunnelCapabilities } from "../capabilities";
import { defineTunnel, ServiceSpecError } from "../tunnel-type";
import { OpenVpnConsumerService } from "./consumer";
import { OpenVpnProviderService } from "./provider";
import { OpenVpnSpare } from "./spare";

/** An OpenVPN service's settings, as the API takes them and services.json keeps them. */
export const OpenVpnSettingsSchema = tunnelSettingsSchema(1194, {
  bind: Type.Optional(Type.String({ description: "listen on this address only (default: all)" })),
});

/** OpenVPN (services/openvpn): a supervised `openvpn` server, clients admitted by the management interface. */
export const openvpn = defineTunnel({
  type: "openvpn",
  network: true,
  settings: OpenVpnSettingsSchema,
  flags: { ...TUNNEL_FLAGS, bind: "--bind <address>" },
  capabilities: (settings) => tunnelCapabilities("tun device", settings),
  check(settings) {
    if (settings.bind !== undefined && !isIP(settings.bind)) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `bind "${settings.bind}" is not an IP address`);
    return checkTunnelSettings(settings, 1194);
  },
  async startProvider(settings, deps) {
    const service = new OpenVpnProviderService({ ...tunnelServiceOptions(settings, deps), directory: deps.directory, bind: settings.bind });
    await service.start();
    return service;
  },
  consumer: (deps) =>
    new OpenVpnConsumerService({
      key: deps.key,
      runDir: deps.runDir,
      netns: deps.netns,
      log: deps.log,
      routeAll: deps.routeAll,
      spare: deps.spare instanceof OpenVpnSpare ? deps.spare : undefined,
      tunnelCheck: deps.tunnelCheck,
    }),
  consumerSpare: (deps) => new OpenVpnSpare(deps),
});
