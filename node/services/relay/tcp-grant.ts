import net from "node:net";
import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { ConsumerService, Tunnel } from "../../session/service";
import { isPublicAddress } from "../../values/ip";
import { checkPinnedCertificate, FINGERPRINT_PATTERN } from "../certificate";
import { TunnelError } from "../system";
import { checkRelayServiceConfig, MAX_NAMED_PEERS, type RelayConsumerData, type RelayServiceConfig } from "./config";
import { proveAddress } from "./self-proof";

/**
 * A relay credential a consumer hands a provider nobody can dial (docs/proxy.md "Through a relay"):
 * the consumer pays the relay session; the provider uses the credential to hold a TCP allocation
 * (RFC 6062) on the relay over TLS, lets in only `peers` (the consumer's own public address, as the
 * relay saw it on the consumer's proof: the relay cuts off the allocation if it lets in anyone else),
 * and answers with the relayed TCP address. Sent inside the signed, encrypted dialog (the proxy's
 * `session.create` consumer data, `relay`).
 */
export const RelayGrantSchema = Type.Object(
  {
    relay: Type.String({ pattern: "^0x[0-9a-fA-F]{40}$" }),
    server: Type.Object(
      {
        address: Type.String({ maxLength: 15, pattern: "^[0-9.]+$" }),
        port: Type.Integer({ minimum: 1, maximum: 65535 }),
        transport: Type.Union([Type.Literal("tls"), Type.Literal("tcp")]),
      },
      { additionalProperties: false },
    ),
    certificate: Type.Optional(Type.String({ maxLength: 4096, pattern: "^-----BEGIN CERTIFICATE-----" })),
    fingerprint: Type.Optional(Type.String({ pattern: FINGERPRINT_PATTERN })),
    username: Type.String({ pattern: "^[0-9]{1,12}:[0-9a-f]{32}$" }),
    password: Type.String({ pattern: "^[A-Za-z0-9+/=]{1,64}$" }),
    realm: Type.String({ pattern: "^[A-Za-z0-9.-]{1,64}$" }),
    peers: Type.Array(Type.String({ maxLength: 15, pattern: "^[0-9.]+$" }), { minItems: 1, maxItems: MAX_NAMED_PEERS }),
  },
  { additionalProperties: false },
);
export type RelayGrant = Static<typeof RelayGrantSchema>;
const checkGrant = TypeCompiler.Compile(RelayGrantSchema);

/** The grant in a proxy consumer's data (a peer's words: anything), checked; undefined when it names none. */
export function relayGrantOf(consumerData: unknown): RelayGrant | undefined {
  const grant = (consumerData as { relay?: unknown } | null)?.relay;
  if (grant === undefined) return undefined;
  if (!checkGrant.Check(grant)) throw new TunnelError("BAD_CONSUMER_DATA", "the consumer's relay grant is malformed");
  if (grant.server.transport === "tls") {
    if (!grant.certificate || !grant.fingerprint)
      throw new TunnelError("BAD_CONSUMER_DATA", "the consumer's relay grant names a TLS server but no certificate");
    checkPinnedCertificate(grant.certificate, grant.fingerprint, "the relay's");
  }
  return grant;
}

/**
 * The consumer's side of a relay session whose allocation the provider holds (a proxy provider
 * nobody can dial): the session's one peer is this host's own address, which it proves to the relay
 * (self-proof.ts: the relay reads it from its own socket; nothing this host says is believed), and its
 * "tunnel" is the credential. Its meter is the proxy connection's bytes on the wire to the relayed
 * address (`meterBy`, once that connection is up): what the relay splices and coturn counts, TLS
 * records and all.
 */
export class RelayGrantService implements ConsumerService {
  readonly type = "relay";
  /** This host's public address as the relay saw it (known after `connect`). */
  self?: string;

  constructor(private readonly o: { relay: string; server: { address: string }; allowPrivate?: boolean }) {}

  async consumerData(): Promise<RelayConsumerData> {
    return { transports: ["udp", "tcp", "tls"], proveSelf: true };
  }

  async connect(session: { id: string; provider: string; serviceConfig: unknown }): Promise<RelayGrantTunnel> {
    if (!checkRelayServiceConfig.Check(session.serviceConfig)) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay's service config is malformed");
    const config = session.serviceConfig;
    if (!config.username.endsWith(`:${session.id}`)) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay's credential is not for this session");
    const server = config.servers.find((s) => s.transport === "tls") ?? config.servers.find((s) => s.transport === "tcp");
    if (!server || server.address !== this.o.server.address)
      throw new TunnelError("BAD_SERVICE_CONFIG", `the relay names no TCP or TLS server at the address its proposal gives (${this.o.server.address})`);
    if (server.transport === "tls") checkPinnedCertificate(config.certificate ?? "", config.fingerprint ?? "", "the relay's");
    if (!config.proof) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay gave no credential to prove this host's address with");
    const turn = {
      address: server.address,
      port: server.port,
      transport: server.transport,
      ...(server.transport === "tls" ? { pin: { certificate: config.certificate!, fingerprint: config.fingerprint! } } : {}),
    };
    const self = await proveAddress(turn, config.proof);
    if (net.isIP(self) !== 4 || (!this.o.allowPrivate && !isPublicAddress(self)))
      throw new TunnelError("RELAY_FAILED", `the relay sees this host at ${self}, not a public IPv4 address a relay lets in`);
    this.self = self;
    return new RelayGrantTunnel(grantOf(this.o.relay, config, server, [self]));
  }
}

function grantOf(relay: string, config: RelayServiceConfig, server: RelayServiceConfig["servers"][number], peers: string[]): RelayGrant {
  return {
    relay,
    server: { address: server.address, port: server.port, transport: server.transport === "tls" ? "tls" : "tcp" },
    ...(server.transport === "tls" ? { certificate: config.certificate, fingerprint: config.fingerprint } : {}),
    username: config.username,
    password: config.password,
    realm: config.realm,
    peers,
  };
}

/** A relay session's credential as a "tunnel": up while the session is; metered by the connection it carries. */
export class RelayGrantTunnel implements Tunnel {
  #meter: () => { bytesIn: number; bytesOut: number } = () => ({ bytesIn: 0, bytesOut: 0 });
  #down?: (reason: string) => void;

  constructor(readonly grant: RelayGrant) {}

  /** Meters the relay by what `source` counts on the wire (the proxy connection to the relayed address). */
  meterBy(source: () => { bytesIn: number; bytesOut: number }): void {
    this.#meter = source;
  }

  /** The connection it carried went down: so does this session. */
  down(reason: string): void {
    this.#down?.(reason);
  }

  stats(): { bytesIn: number; bytesOut: number } {
    return this.#meter();
  }

  onDown(listener: (reason: string) => void): void {
    this.#down = listener;
  }

  async stop(): Promise<void> {}
}
