import { isIP } from "node:net";
import { Type } from "@sinclair/typebox";
import { Strict } from "../../values/schemas";
import { ServiceSpecError, defineTunnel } from "../tunnel-type";
import { RelayConsumerService } from "./consumer";
import { RelayProviderService } from "./provider";

/** A relay's settings, as the API takes them and services.json keeps them. */
export const RelaySettingsSchema = Type.Object(
  {
    publicIp: Type.String({ description: "the relay's public IPv4 address (consumers and providers reach it there; it must be this host's own)" }),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: "the TURN port, UDP and TCP, default 3478" })),
    minPort: Type.Optional(Type.Integer({ minimum: 1024, maximum: 65535, description: "the lowest UDP port of relayed addresses, default 49152" })),
    maxPort: Type.Optional(Type.Integer({ minimum: 1024, maximum: 65535, description: "the highest UDP port of relayed addresses, default 65535" })),
    credentialTtl: Type.Optional(
      Type.Integer({ minimum: 10, maximum: 86_400, description: "seconds a session's TURN credential lets its holder allocate, default 300" }),
    ),
    allowPrivatePeers: Type.Optional(Type.Boolean({ description: "relay to private and loopback addresses too (tests on one host), default false" })),
  },
  Strict,
);

/** A relay (services/relay): a supervised coturn (TURN, RFC 8656) that public nodes sell for pairs no punch can join. */
export const relay = defineTunnel({
  type: "relay",
  network: false,
  settings: RelaySettingsSchema,
  flags: {
    publicIp: "--public-ip <address>",
    port: "--port <port>",
    minPort: "--min-port <port>",
    maxPort: "--max-port <port>",
    credentialTtl: "--credential-ttl <seconds>",
  },
  // coturn needs no privilege but a port below 1024 (443 for networks that let only web traffic out).
  capabilities: (settings) =>
    (settings.port ?? 3478) < 1024 ? [{ capability: "CAP_NET_BIND_SERVICE" as const, why: `for coturn to listen on port ${settings.port}` }] : [],
  check(settings) {
    if (isIP(settings.publicIp) !== 4) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `publicIp "${settings.publicIp}" is not an IPv4 address`);
    if ((settings.minPort ?? 49152) > (settings.maxPort ?? 65535)) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", "minPort is above maxPort");
    return { ...settings, port: settings.port ?? 3478 };
  },
  async startProvider(settings, deps) {
    const service = new RelayProviderService({
      dir: deps.dir,
      publicIp: settings.publicIp,
      port: settings.port,
      minPort: settings.minPort,
      maxPort: settings.maxPort,
      credentialTtlS: settings.credentialTtl,
      allowPrivatePeers: settings.allowPrivatePeers,
      directory: deps.directory,
      identity: deps.identity,
      sessionMbps: deps.limits?.sessionMbps,
      log: deps.log,
    });
    await service.start();
    return service;
  },
  consumer: (deps) => new RelayConsumerService({ log: deps.log }),
});
