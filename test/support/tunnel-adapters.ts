import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { IdentityKey } from "../../node/identity/key";
import { silentLogger } from "../../node/log/logger";
import { checkServiceSpec, startProviderService, TUNNEL_TYPES, type TunnelType } from "../../node/services/catalog";
import type { NoopProviderService, NoopTunnel } from "../../node/services/noop/noop";
import { ProxyConsumerService, type ProxyTunnel } from "../../node/services/proxy/consumer";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { WireGuardConsumerService } from "../../node/services/wireguard/consumer";
import type { WireGuardServiceConfig } from "../../node/services/wireguard/config";
import type { ConsumerSession } from "../../node/session/consumer-session";
import type { ConsumerService, ProviderService } from "../../node/session/service";
import type { TestNetwork } from "../../scripts/lib/test-network";
import type { Topology } from "../../scripts/lib/topology";
import { startHostedProvider } from "../../scripts/lib/provider-host";

/** What an adapter's harness gets: the chain and broker, the namespaces, a directory, the identities. */
export interface AdapterEnv {
  net: TestNetwork;
  topology: Topology;
  dir: string;
  providerKey: IdentityKey;
  consumerKeys: IdentityKey[];
}

export type RunningProvider = ProviderService & { stop(): Promise<void>; readonly pid?: number; readonly restarts?: readonly number[] };

/**
 * One tunnel adapter as the behaviour suite (test/e2e/tunnel-adapters.test.ts) drives it. A real
 * tunnel (`network: true`) carries the suite's traffic through the namespaces of `AdapterEnv`;
 * one without (`noop`) has its meters moved by `simulate` instead, and the checks that need a
 * network, a process or credentials are not registered for it.
 */
export interface TunnelAdapter {
  type: string;
  network: boolean;
  startProvider(env: AdapterEnv): Promise<RunningProvider>;
  /**
   * The capabilities its provider declares (node/services/capabilities.ts). A type that declares
   * some runs its provider as an unprivileged user holding only those (scripts/lib/provider-host.ts),
   * as the systemd unit does; `startProviderWithout` starts it with one of them taken away.
   */
  capabilities: string[];
  startProviderWithout?(env: AdapterEnv, capability: string): Promise<RunningProvider>;
  consumerService(env: AdapterEnv, i: number): ConsumerService;
  /** For adapters without a network tunnel: both meters see `bytes` moved to the consumer (the proxy moves them for real, through its local port). */
  simulate?(provider: RunningProvider, session: ConsumerSession, bytes: number): void | Promise<void>;
  /** Kills the supervised process (SIGKILL); absent when the adapter supervises none. */
  crash?(provider: RunningProvider): void;
  /**
   * Tries to bring up the tunnel of `session` from consumer 1's namespace with credentials that are
   * not the session's consumer's; resolves with the rejection. Absent when the adapter has none.
   */
  impostor?(env: AdapterEnv, session: ConsumerSession): Promise<unknown>;
  /** The error codes a refused impostor gets. */
  refusal: string[];
}

/**
 * The suite's harness of a registered type, from its registry entry alone: its provider started as
 * the node starts it (its settings for the topology: the provider's public address and namespace,
 * where the type takes them), its consumer as the node makes it. A type that brings up a
 * network tunnel carries the suite's traffic through the namespaces.
 */
function fromRegistry(type: TunnelType): TunnelAdapter {
  const takes = (name: string) => !!type.settings && name in type.settings.properties;
  // Its needs in the provider's own machine (no netns: the host runs inside the namespace).
  const capabilities = [...new Set((type.capabilities?.({} as never) ?? []).map((n) => n.capability))];
  /** The provider as an unprivileged user in the provider's namespace, holding what its type declares (but `without`). */
  const hosted = async (env: AdapterEnv, without?: string) => {
    const settings = {
      ...(takes("publicIp") ? { publicIp: env.topology.providerAddress } : {}),
      ...EXTRAS[type.type]?.settings?.(env),
    };
    fs.mkdirSync(env.dir, { recursive: true });
    return startHostedProvider({
      netns: env.topology.provider,
      spec: checkServiceSpec({ type: type.type, ...(type.settings ? { [type.type]: settings } : {}) }),
      dir: env.dir,
      // A uid (and tun node) of its own for each start with a capability taken away: they start at once.
      uid: without ? 64_980 + (capabilities as string[]).indexOf(without) : 64_990,
      without,
      directory: env.net.registry,
      meterMs: 200,
      logFile: process.env.E2E_LOG ? `${process.env.E2E_LOG}.${type.type}-provider` : undefined,
    });
  };
  return {
    type: type.type,
    network: type.network,
    capabilities,
    ...(type.network && capabilities.length ? { startProviderWithout: (env: AdapterEnv, capability: string) => hosted(env, capability) } : {}),
    async startProvider(env) {
      if (type.network && capabilities.length) return hosted(env);
      const settings = {
        ...(takes("publicIp") ? { publicIp: env.topology.providerAddress } : {}),
        ...(takes("netns") ? { netns: env.topology.provider } : {}),
        ...EXTRAS[type.type]?.settings?.(env),
      };
      const spec = checkServiceSpec({ type: type.type, ...(type.settings ? { [type.type]: settings } : {}) });
      const service = await startProviderService(spec, {
        dataDir: path.join(env.dir, "provider"),
        directory: env.net.registry,
        log: testLog(`${type.type}-provider`) ?? silentLogger,
        meterMs: 200,
      });
      return Object.assign(service, { stop: service.stop?.bind(service) ?? (async () => undefined) });
    },
    consumerService: (env, i) =>
      type.consumer({
        key: env.consumerKeys[i],
        runDir: path.join(env.dir, `${type.type}-c${i}`),
        netns: env.topology.consumers[i],
        log: testLog(`${type.type}-c${i}`) ?? silentLogger,
      }),
    refusal: [],
  };
}

/** What the suite knows of a type beyond its registry entry: settings of its own, how to crash it, how to play an impostor. */
const EXTRAS: Record<string, Partial<TunnelAdapter> & { settings?: (env: AdapterEnv) => Record<string, unknown> }> = {
  openvpn: {
    crash: (provider) => process.kill(provider.pid!, "SIGKILL"),
    async impostor(env, session) {
      // The session's config with another identity's key: its password (a signature) does not verify.
      const impostor = new OpenVpnConsumerService({
        key: env.consumerKeys[1],
        runDir: path.join(env.dir, "openvpn-impostor"),
        netns: env.topology.consumers[1],
        connectTimeoutMs: 15_000,
      });
      return impostor.connect({ id: session.id, provider: env.providerKey.address, serviceConfig: session.serviceConfig }).then(
        () => new Error("the impostor connected"),
        (err) => err,
      );
    },
    refusal: ["AUTH_REFUSED"],
  },
  wireguard: {
    // An interface of the test's own: wireguard-go's control sockets are shared by every namespace.
    settings: (env) => ({ device: `mwp${env.topology.tag}` }),
    crash: (provider) => process.kill(provider.pid!, "SIGKILL"),
    async impostor(env, session) {
      // The session's config with a key pair of the impostor's own: the provider knows only the
      // consumer's public key for this session, so it never answers the handshake.
      const impostor = new WireGuardConsumerService({
        runDir: path.join(env.dir, "wireguard-impostor"),
        netns: env.topology.consumers[1],
        device: `mwi${env.topology.tag}`,
        connectTimeoutMs: 3000,
      });
      const { publicKey } = await impostor.consumerData();
      const serviceConfig: WireGuardServiceConfig = { ...(session.serviceConfig as WireGuardServiceConfig), clientPublicKey: publicKey };
      return impostor.connect({ id: session.id, provider: env.providerKey.address, serviceConfig }).then(
        async (tunnel) => {
          await tunnel.stop();
          return new Error("the impostor connected");
        },
        (err) => err,
      );
    },
    refusal: ["HANDSHAKE_TIMEOUT"],
  },
  proxy: {
    // In this process's namespace, on loopback: the provider opens exactly 127.0.0.1 to its consumers here.
    settings: () => ({ publicIp: "127.0.0.1", port: 0, listen: "127.0.0.1", allowPrivateRanges: ["127.0.0.1/32"] }),
    consumerService: () => new ProxyConsumerService({ listen: "127.0.0.1:0" }),
    /** A download of `bytes` from a server on loopback, as a plain request through the session's local HTTP proxy. */
    async simulate(_provider, session, bytes) {
      const origin = await bytesServer();
      const { port } = (session.tunnel as ProxyTunnel).address!;
      const received = await new Promise<number>((resolve, reject) => {
        http
          .get({ host: "127.0.0.1", port, path: `http://127.0.0.1:${origin}/?bytes=${bytes}` }, (res) => {
            let n = 0;
            res.on("data", (chunk: Buffer) => (n += chunk.length));
            res.on("end", () => resolve(n));
            res.on("error", reject);
          })
          .on("error", reject);
      });
      if (received !== bytes) throw new Error(`the proxy carried ${received} of ${bytes} bytes`);
    },
  },
  noop: {
    simulate(provider, session, bytes) {
      const tunnel = session.tunnel as NoopTunnel;
      tunnel.bytes = { bytesIn: tunnel.bytes.bytesIn + bytes, bytesOut: tunnel.bytes.bytesOut };
      const meter = (provider as unknown as NoopProviderService).meter;
      const before = meter.get(session.id) ?? { bytesIn: 0, bytesOut: 0 };
      meter.set(session.id, { bytesIn: before.bytesIn, bytesOut: before.bytesOut + bytes });
    },
  },
};

let origin: Promise<number> | undefined;
/** A server on loopback answering `?bytes=N` with N bytes (the proxy's downloads), started once. */
function bytesServer(): Promise<number> {
  origin ??= new Promise((resolve) => {
    const server = http.createServer((req, res) => res.end(Buffer.alloc(Number(new URL(req.url!, "http://x").searchParams.get("bytes") ?? 0))));
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
    server.unref();
  });
  return origin;
}

/** E2E_LOG=<file>: the adapters log there (debug), one file per side. */
function testLog(side: string) {
  if (!process.env.E2E_LOG) return undefined;
  const pino = require("pino");
  return pino({ level: "debug" }, pino.destination(`${process.env.E2E_LOG}.${side}`));
}

/**
 * Types that are not tunnels to the internet: a relay (services/relay) carries another session's
 * tunnel between two nodes and has no exit of its own; its behaviour is tested against real coturn
 * in test/node/services/relay.test.ts and end to end in test/e2e/relay.test.ts.
 */
const NOT_TUNNELS = ["relay"];

/** Every tunnel adapter the behaviour suite runs: every type in node/services/registry.ts, with what the suite knows of it. */
export const TUNNEL_ADAPTERS: TunnelAdapter[] = TUNNEL_TYPES.filter((type) => !NOT_TUNNELS.includes(type.type)).map((type) => {
  const { settings: _, ...extras } = EXTRAS[type.type] ?? {};
  return { ...fromRegistry(type), ...extras };
});
