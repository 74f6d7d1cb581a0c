import { isIP } from "node:net";
import { Type } from "@sinclair/typebox";
import { Strict } from "../../values/schemas";
import { ServiceSpecError, defineTunnel } from "../tunnel-type";
import { ProxyConsumerService } from "./consumer";
import { DestinationPolicy } from "./destination";
import { ProxyProviderService } from "./provider";

/** TCP port of the provider's HTTP/2 server unless `--port` says. */
export const DEFAULT_PROXY_PORT = 8443;

/** A proxy service's settings, as the API takes them and services.json keeps them. */
export const ProxySettingsSchema = Type.Object(
  {
    publicIp: Type.String({ description: "the address consumers reach this provider at (an IP address)" }),
    port: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 65535, description: `TCP port of the HTTP/2 proxy server, default ${DEFAULT_PROXY_PORT} (0: any free port)` }),
    ),
    listen: Type.Optional(Type.String({ maxLength: 39, description: "the local address the proxy server binds (default all)" })),
    allowPrivate: Type.Optional(Type.Boolean({ description: "let consumers reach private networks and this host (default false)" })),
    allowPrivateRanges: Type.Optional(Type.Array(Type.String({ maxLength: 43 }), { maxItems: 64, description: "private ranges consumers may reach" })),
  },
  Strict,
);

/**
 * The proxy (services/proxy): HTTP/2 CONNECT over TLS, in this process, without privilege; the
 * consumer gets a local SOCKS5 and HTTP proxy port instead of a network tunnel (docs/proxy.md).
 */
export const proxy = defineTunnel({
  type: "proxy",
  network: false,
  settings: ProxySettingsSchema,
  flags: {
    publicIp: "--public-ip <address>",
    port: "--port <port>",
    listen: "--listen <address>",
    allowPrivate: "--allow-private",
    allowPrivateRanges: "--allow-private-range <cidr...>",
  },
  check(settings) {
    if (!isIP(settings.publicIp)) throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `publicIp "${settings.publicIp}" is not an IP address`);
    if (settings.listen !== undefined && !isIP(settings.listen))
      throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `listen "${settings.listen}" is not an IP address`);
    for (const cidr of settings.allowPrivateRanges ?? []) {
      const [address, bits] = cidr.split("/");
      const max = isIP(address) === 6 ? 128 : 32;
      if (!isIP(address) || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max)))
        throw new ServiceSpecError("BAD_SERVICE_SETTINGS", `allowPrivateRanges: "${cidr}" is not an address or a CIDR`);
    }
    return { ...settings, port: settings.port ?? DEFAULT_PROXY_PORT };
  },
  // A TCP port and outbound connections: nothing, unless the port is a privileged one (443).
  capabilities: (settings) =>
    settings.port !== undefined && settings.port > 0 && settings.port < 1024
      ? [{ capability: "CAP_NET_BIND_SERVICE", why: `to listen on TCP port ${settings.port}`, child: false }]
      : [],
  async startProvider(settings, deps) {
    const service = new ProxyProviderService({
      dir: deps.dir,
      publicAddress: settings.publicIp,
      port: settings.port ?? DEFAULT_PROXY_PORT,
      listen: settings.listen,
      policy: new DestinationPolicy({
        egress: deps.limits?.egress,
        allowPrivate: settings.allowPrivate,
        allowPrivateRanges: settings.allowPrivateRanges,
        publicIp: settings.publicIp,
      }),
      sessionMbps: deps.limits?.sessionMbps,
      serviceMbps: deps.limits?.serviceMbps,
      directory: deps.directory,
      log: deps.log,
    });
    await service.start();
    return service;
  },
  consumer: (deps) => new ProxyConsumerService({ listen: deps.listen, log: deps.log }),
});
