import crypto from "node:crypto";
import net from "node:net";
import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { ATTR, attributeOf, BINDING, decodeStunMessage, decodeXorAddress, encodeStunMessage } from "../../nat/stun";
import type { ConsumerService, Tunnel } from "../../session/service";
import { isPublicAddress } from "../../values/ip";
import { checkPinnedCertificate, FINGERPRINT_PATTERN } from "../certificate";
import { TunnelError } from "../system";
import { checkRelayServiceConfig, MAX_NAMED_PEERS, type RelayServiceConfig } from "./config";
import { nextStreamFrame } from "./turn-client";

/**
 * A relay credential a consumer hands a provider nobody can dial (docs/proxy.md "Through a relay"):
 * the consumer pays the relay session; the provider uses the credential to hold a TCP allocation
 * (RFC 6062) on the relay over TLS, lets in only `peers` (the consumer's own public address, as the
 * relay saw it), and answers with the relayed TCP address. Sent inside the signed, encrypted dialog
 * (the proxy's `session.create` consumer data, `relay`).
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
 * This host's address as a TURN server at `server` sees it: a STUN Binding over TCP (RFC 8489 §7.2.2;
 * coturn answers one without a credential). Over TCP, since a network that drops UDP is why a relay
 * is used; its answer is only ever named as the peer the relay may let in, so a server that lies
 * makes the session fail, never opens it wider.
 */
export function publicAddressVia(server: { address: string; port: number }, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const transactionId = crypto.randomBytes(12);
    const socket = net.connect({ host: server.address, port: server.port, noDelay: true });
    let buf = Buffer.alloc(0);
    const fail = (why: string) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new TunnelError("RELAY_FAILED", `the relay ${server.address}:${server.port} did not say this host's address: ${why}`));
    };
    const timer = setTimeout(() => fail(`no answer in ${timeoutMs} ms`), timeoutMs);
    socket.once("connect", () => socket.write(encodeStunMessage({ method: BINDING, cls: "request", transactionId, attributes: [] }, { fingerprint: true })));
    socket.on("error", (err) => fail(err.message));
    socket.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const next = nextStreamFrame(buf);
      if (!next) return buf.length > 2048 ? fail("its answer is out of frame") : undefined;
      try {
        const m = decodeStunMessage(next.frame);
        const mapped = attributeOf(m, ATTR.XOR_MAPPED_ADDRESS);
        if (m.cls !== "success" || !m.transactionId.equals(transactionId) || !mapped) return fail("not an answer to the Binding request");
        clearTimeout(timer);
        socket.destroy();
        resolve(decodeXorAddress(mapped, m.transactionId).address);
      } catch (err) {
        fail((err as Error).message);
      }
    });
  });
}

/**
 * The consumer's side of a relay session whose allocation the provider holds (a proxy provider
 * nobody can dial): it names this host's public address as the one peer, and its "tunnel" is the
 * credential. Its meter is the proxy connection's bytes on the wire to the relayed address (`meterBy`,
 * once that connection is up): what the relay splices and coturn counts, TLS records and all.
 */
export class RelayGrantService implements ConsumerService {
  readonly type = "relay";
  /** This host's public address as the relay sees it (known after `consumerData`). */
  self?: string;

  constructor(private readonly o: { relay: string; server: { address: string; ports: number[] }; allowPrivate?: boolean }) {}

  async consumerData(): Promise<unknown> {
    const self = await firstAnswer(this.o.server.ports.map((port) => () => publicAddressVia({ address: this.o.server.address, port })));
    if (net.isIP(self) !== 4 || (!this.o.allowPrivate && !isPublicAddress(self)))
      throw new TunnelError("RELAY_FAILED", `the relay sees this host at ${self}, not a public IPv4 address a relay lets in`);
    this.self = self;
    return { transports: ["udp", "tcp", "tls"], peers: [self] };
  }

  async connect(session: { id: string; provider: string; serviceConfig: unknown }): Promise<RelayGrantTunnel> {
    if (!checkRelayServiceConfig.Check(session.serviceConfig)) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay's service config is malformed");
    const config = session.serviceConfig;
    if (!config.username.endsWith(`:${session.id}`)) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay's credential is not for this session");
    const server = config.servers.find((s) => s.transport === "tls") ?? config.servers.find((s) => s.transport === "tcp");
    if (!server || server.address !== this.o.server.address)
      throw new TunnelError("BAD_SERVICE_CONFIG", `the relay names no TCP or TLS server at the address its proposal gives (${this.o.server.address})`);
    if (server.transport === "tls") checkPinnedCertificate(config.certificate ?? "", config.fingerprint ?? "", "the relay's");
    return new RelayGrantTunnel(grantOf(this.o.relay, config, server, [this.self!]));
  }
}

/** The first of `tries` that resolves, in order; the last failure when none does. */
async function firstAnswer<T>(tries: (() => Promise<T>)[]): Promise<T> {
  let last: unknown = new TunnelError("RELAY_FAILED", "no port to ask the relay on");
  for (const t of tries) {
    try {
      return await t();
    } catch (err) {
      last = err;
    }
  }
  throw last;
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
