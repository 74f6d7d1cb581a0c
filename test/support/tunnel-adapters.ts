import path from "node:path";
import type { IdentityKey } from "../../node/identity/key";
import { NoopConsumerService, NoopProviderService, type NoopTunnel } from "../../node/services/noop/noop";
import { OpenVpnConsumerService } from "../../node/services/openvpn/consumer";
import { OpenVpnProviderService } from "../../node/services/openvpn/provider";
import { WireGuardConsumerService } from "../../node/services/wireguard/consumer";
import type { WireGuardServiceConfig } from "../../node/services/wireguard/config";
import { WireGuardProviderService } from "../../node/services/wireguard/provider";
import type { ConsumerSession } from "../../node/session/consumer";
import type { ConsumerService, ProviderService } from "../../node/session/service";
import type { TestNetwork } from "../../scripts/lib/test-network";
import type { Topology } from "../../scripts/lib/topology";

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
 * network or a process say they are skipped.
 */
export interface TunnelAdapter {
  type: string;
  network: boolean;
  startProvider(env: AdapterEnv): Promise<RunningProvider>;
  consumerService(env: AdapterEnv, i: number): ConsumerService;
  /** For adapters without a network: both meters see `bytes` moved to the consumer. */
  simulate?(provider: RunningProvider, session: ConsumerSession, bytes: number): void;
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

const openvpn: TunnelAdapter = {
  type: "openvpn",
  network: true,
  async startProvider(env) {
    const service = new OpenVpnProviderService({
      dir: path.join(env.dir, "openvpn-provider"),
      directory: env.net.registry,
      publicAddress: env.topology.providerAddress,
      netns: env.topology.provider,
      meterMs: 200,
    });
    await service.start();
    return service;
  },
  consumerService: (env, i) =>
    new OpenVpnConsumerService({ key: env.consumerKeys[i], runDir: path.join(env.dir, `openvpn-c${i}`), netns: env.topology.consumers[i] }),
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
};

const wireguard: TunnelAdapter = {
  type: "wireguard",
  network: true,
  async startProvider(env) {
    const service = new WireGuardProviderService({
      dir: path.join(env.dir, "wireguard-provider"),
      publicAddress: env.topology.providerAddress,
      netns: env.topology.provider,
      device: `mwp${env.topology.tag}`,
      meterMs: 200,
      log: testLog("wireguard-provider"),
    });
    await service.start();
    return service;
  },
  consumerService: (env, i) =>
    new WireGuardConsumerService({ runDir: path.join(env.dir, `wireguard-c${i}`), netns: env.topology.consumers[i], log: testLog(`wireguard-c${i}`) }),
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
};

const noop: TunnelAdapter = {
  type: "noop",
  network: false,
  async startProvider() {
    const service = new NoopProviderService();
    return Object.assign(service, {
      async stop() {
        service.running = false;
      },
    });
  },
  consumerService: () => new NoopConsumerService(),
  simulate(provider, session, bytes) {
    const tunnel = session.tunnel as NoopTunnel;
    tunnel.bytes = { bytesIn: tunnel.bytes.bytesIn + bytes, bytesOut: tunnel.bytes.bytesOut };
    const meter = (provider as unknown as NoopProviderService).meter;
    const before = meter.get(session.id) ?? { bytesIn: 0, bytesOut: 0 };
    meter.set(session.id, { bytesIn: before.bytesIn, bytesOut: before.bytesOut + bytes });
  },
  refusal: [],
};

/** E2E_LOG=<file>: the adapters log there (debug), one file per side. */
function testLog(side: string) {
  if (!process.env.E2E_LOG) return undefined;
  const pino = require("pino");
  return pino({ level: "debug" }, pino.destination(`${process.env.E2E_LOG}.${side}`));
}

/** Every tunnel adapter the behaviour suite runs: a new adapter is added by naming it here. */
export const TUNNEL_ADAPTERS: TunnelAdapter[] = [openvpn, wireguard, noop];
