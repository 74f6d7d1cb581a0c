import net from "node:net";
import tls from "node:tls";
import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { SignerDirectory } from "../../identity/protocol-signature";
import { type SignedProposal, SignedProposalSchema } from "../../proposal/proposal";
import { announcedAddressesOf } from "../../session/offer-addresses";
import { sameAddress } from "../../values/address";
import { isPublicAddress } from "../../values/ip";
import type { ConsumerService, Tunnel } from "../../session/service";
import { checkPinnedCertificate } from "../certificate";
import { TunnelError } from "../system";
import { checkRelayServiceConfig, type RelayConsumerData, relayCommonName } from "./config";
import { verifyCarriedProposal } from "./provider-peers";
import { TcpRelayedListener } from "./turn-tcp";

/**
 * The TCP allocation turned round (docs/proxy.md "A consumer allowed only TCP/443"): the *consumer*
 * holds it, over TURN over TLS on the relay's port (443 passes where only web traffic does), in an
 * ordinary relay session that names the provider's announced addresses with its signed proposal
 * (the relay checks them as for any relay session: provider-peers.ts); the provider, which can dial
 * out though nobody can dial it, connects to the relayed TCP address; coturn announces that
 * connection on the consumer's control connection and the consumer binds it on a data connection to
 * the same port, over which its proxy runs TLS to the provider as on any path.
 */

/**
 * Where a proxy provider dials back (the consumer's relayed TCP address), in the proxy's
 * `session.create` consumer data (`dialBack`), with the relay's signed proposal (`proposal`) and the
 * TURN port the allocation is held on (`turnPort`): the provider dials only an address that proposal
 * announces (relayDialBack) and that serves the relay's certificate on that port (proveRelayAt), so
 * a consumer cannot make it connect to any host it likes before paying.
 */
export const DialBackSchema = Type.Object(
  {
    relay: Type.String({ pattern: "^0x[0-9a-fA-F]{40}$" }),
    address: Type.String({ maxLength: 15, pattern: "^[0-9.]+$" }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    turnPort: Type.Integer({ minimum: 1, maximum: 65535 }),
    proposal: SignedProposalSchema,
  },
  { additionalProperties: false },
);
export type DialBack = Static<typeof DialBackSchema>;
const checkDialBack = TypeCompiler.Compile(DialBackSchema);

/** The dial-back in a proxy consumer's data (a peer's words: anything), checked; undefined when it names none. */
export function dialBackOf(consumerData: unknown): DialBack | undefined {
  const back = (consumerData as { dialBack?: unknown } | null)?.dialBack;
  if (back === undefined) return undefined;
  if (!checkDialBack.Check(back)) throw new TunnelError("BAD_CONSUMER_DATA", "the consumer's dial-back address is malformed");
  if ((consumerData as { relay?: unknown }).relay !== undefined)
    throw new TunnelError("BAD_CONSUMER_DATA", "the consumer names both a relay grant and a dial-back address");
  return back;
}

/**
 * Whether a dial-back address is a relay's (what a provider checks before it dials, which comes
 * before any payment): the relay's proposal the dial-back carries must be signed by the relay it
 * names, that relay registered, the proposal unexpired and a relay's; and the address must be one
 * that proposal announces (coturn relays from the relay's announced public address). A private
 * address, which no proposal can announce, is for the caller's destination policy to judge first (it
 * refuses one unless the operator lets consumers reach private networks: tests on one host). Refuses
 * with BAD_CONSUMER_DATA and a sentence naming the failed check.
 *
 * What this does not prove: that the relay is anyone but a registered identity that signed a relay
 * proposal (a consumer may not name itself, `consumer`, but may have a second identity). That the
 * address runs that relay is proveRelayAt's, which the provider asks next; for it, a public address's
 * TURN port must be one of TURN_PORTS, so that the proof itself reaches no other port.
 */
export async function relayDialBack(back: DialBack, directory: SignerDirectory, consumer?: string): Promise<void> {
  if (consumer !== undefined && sameAddress(back.relay, consumer))
    throw new TunnelError("BAD_CONSUMER_DATA", "the consumer's dial-back names the consumer itself as the relay");
  const proposal = await verifyCarriedProposal(back.proposal, directory, "the relay's proposal the consumer's dial-back carries");
  if (proposal.serviceType !== "relay")
    throw new TunnelError("BAD_CONSUMER_DATA", `the proposal the consumer's dial-back carries is a ${proposal.serviceType} proposal, not a relay's`);
  if (!sameAddress(proposal.provider, back.relay))
    throw new TunnelError("BAD_CONSUMER_DATA", `the consumer's dial-back names relay ${back.relay} but carries the proposal of ${proposal.provider}`);
  if (!isPublicAddress(back.address)) return;
  if (!TURN_PORTS.includes(back.turnPort))
    throw new TunnelError(
      "BAD_CONSUMER_DATA",
      `the consumer's dial-back names TURN port ${back.turnPort}: a relay it takes a dial-back to serves TURN over TLS on ${TURN_PORTS.join(", ")}`,
    );
  // A relay relays from an address it can be reached at: not one its router only lets through after a punch.
  const announced = announcedAddressesOf(proposal, { reachableOnly: true });
  if (!announced.includes(back.address))
    throw new TunnelError(
      "BAD_CONSUMER_DATA",
      `the consumer's dial-back address ${back.address} is not one relay ${proposal.provider} announces (${announced.join(", ") || "it announces none"})`,
    );
}

/** How many relay proofs (proveRelayAt) a provider makes for one consumer in a minute. */
export const DIAL_BACK_PROOFS_PER_MINUTE = 6;

/**
 * A budget of relay proofs per consumer over the last minute. A refused session is not a session: a
 * consumer could otherwise have a provider send TLS hellos, before any payment, to one address after
 * another at the pace it opens sessions. Refuses with BAD_CONSUMER_DATA naming the limit.
 */
export class ProofBudget {
  readonly #taken = new Map<string, number[]>();
  constructor(
    readonly perMinute: number,
    readonly clock: () => number = Date.now,
  ) {}

  take(consumer: string): void {
    const now = this.clock();
    const key = consumer.toLowerCase();
    const recent = (this.#taken.get(key) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= this.perMinute)
      throw new TunnelError("BAD_CONSUMER_DATA", `the consumer asked for more than ${this.perMinute} relay dial-backs in a minute: try again later`);
    recent.push(now);
    this.#taken.set(key, recent);
    // Forget consumers whose last proof is a minute old, now and then: the map stays as small as the last minute.
    if (this.#taken.size > 1024) for (const [k, ts] of this.#taken) if (now - ts[ts.length - 1] >= 60_000) this.#taken.delete(k);
  }
}

/** The ports a relay on a public address must serve TURN over TLS on for a provider to dial back to it: 443 (web traffic), and TURN's own (RFC 8656 §18). */
export const TURN_PORTS: readonly number[] = [443, 3478, 5349];

/**
 * Proves that `address` runs the relay `relay` before a provider dials its relayed port (the dial-back
 * comes before any payment): a TLS handshake to its TURN port must show a certificate naming that relay
 * (`CN=myst-relay <identity>`, services/relay/provider.ts), and the handshake proves the server holds
 * its key. Anybody can make such a certificate, but only a host its maker runs serves it: a host of
 * someone else's answers with its own or not at all, and is then never dialled. Nothing is sent on the
 * connection but the TLS hello (no name: the address alone), and it is closed after the handshake.
 * Refuses with BAD_CONSUMER_DATA naming what failed.
 */
export function proveRelayAt(address: string, turnPort: number, relay: string, timeoutMs: number): Promise<void> {
  const expected = `CN=${relayCommonName(relay)}`;
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(deadline);
      socket.destroy();
      reject(new TunnelError("BAD_CONSUMER_DATA", `${address}:${turnPort} is not shown to run relay ${relay}: ${why}`));
    };
    // No CA: a relay's certificate is self-signed. What is checked is whom it names, and that the server holds its key.
    const socket = tls.connect({ host: address, port: turnPort, rejectUnauthorized: false, minVersion: "TLSv1.2" });
    // A deadline for the whole handshake, not an idle timeout: a server that sends its handshake a byte
    // at a time would hold an idle timeout off for ever, and the session's admission with it.
    const deadline = setTimeout(() => fail(`no TLS handshake in ${timeoutMs / 1000} s`), timeoutMs);
    socket.once("close", () => clearTimeout(deadline));
    socket.once("error", (err) => fail(err.message));
    socket.once("secureConnect", () => {
      const subject = socket.getPeerX509Certificate()?.subject;
      if (subject === expected) {
        clearTimeout(deadline);
        socket.destroy();
        return resolve();
      }
      fail(`its certificate names ${subject ? `"${subject.replaceAll("\n", ", ").slice(0, 80)}"` : "nobody"}, not that relay`);
    });
  });
}

/**
 * A TCP connection to a relayed address (either end of a relayed proxy: the consumer to the
 * provider's allocation, the provider dialling back to the consumer's); RELAY_FAILED naming `what`
 * when it is refused or nothing answers within `timeoutMs`.
 */
export function connectRelayed(address: string, port: number, timeoutMs: number, what: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address, port, noDelay: true });
    const fail = (why: string) => {
      socket.destroy();
      reject(new TunnelError("RELAY_FAILED", `cannot open TCP to ${what} ${address}:${port}: ${why}`));
    };
    const onError = (err: Error) => fail(err.message);
    socket.setTimeout(timeoutMs, () => fail(`no answer in ${timeoutMs / 1000} s`));
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.setTimeout(0);
      // From here whatever runs over it (TLS) reports its errors.
      socket.off("error", onError).on("error", () => undefined);
      resolve(socket);
    });
  });
}

/** How long the consumer waits for the provider's connection to its relayed address once the provider answered. */
const DIAL_BACK_WAIT_MS = 10_000;

/**
 * The consumer's side of a relay session whose TCP allocation it holds itself: named peers (the
 * provider's announced addresses) and the provider's signed proposal, as any relay session; TURN
 * over TLS first, plain TCP if the relay names no TLS server. Its tunnel hands out the provider's
 * connection once it arrives.
 */
export class TcpHeldService implements ConsumerService {
  readonly type = "relay";

  constructor(
    private readonly o: {
      relay: string;
      /** The relay's signed proposal: it goes to the provider with the dial-back, which dials only an address it announces. */
      relayProposal: SignedProposal;
      server: { address: string };
      peers: string[];
      provider: SignedProposal;
    },
  ) {}

  async consumerData(): Promise<RelayConsumerData> {
    return { transports: ["udp", "tcp", "tls"], peers: this.o.peers, provider: this.o.provider };
  }

  async connect(session: { id: string; provider: string; serviceConfig: unknown }): Promise<TcpHeldTunnel> {
    if (!checkRelayServiceConfig.Check(session.serviceConfig)) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay's service config is malformed");
    const config = session.serviceConfig;
    if (!config.username.endsWith(`:${session.id}`)) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay's credential is not for this session");
    const server = config.servers.find((s) => s.transport === "tls") ?? config.servers.find((s) => s.transport === "tcp");
    if (!server || server.address !== this.o.server.address)
      throw new TunnelError("BAD_SERVICE_CONFIG", `the relay names no TCP or TLS server at the address its proposal gives (${this.o.server.address})`);
    if (server.transport === "tls") checkPinnedCertificate(config.certificate ?? "", config.fingerprint ?? "", "the relay's");
    const turn = {
      address: server.address,
      port: server.port,
      transport: server.transport,
      ...(server.transport === "tls" ? { pin: { certificate: config.certificate!, fingerprint: config.fingerprint! } } : {}),
    };
    const listener = await TcpRelayedListener.open(turn, { username: config.username, password: config.password }, this.o.peers).catch((err: Error) => {
      throw new TunnelError("RELAY_FAILED", `no TCP allocation on the relay ${server.address}:${server.port} (${server.transport}): ${err.message}`, {
        cause: err,
      });
    });
    const { address, port } = listener.relayed;
    return new TcpHeldTunnel(listener, { relay: this.o.relay, address, port, turnPort: server.port, proposal: this.o.relayProposal });
  }
}

/**
 * A TCP allocation this host holds, as a relay session's "tunnel": up while the allocation is;
 * metered by the connection it carries (`meterBy`: the proxy's bytes on the wire, what coturn splices
 * and counts). The provider's connection is taken once (`next`); any later one is closed: one proxy
 * connection per session, as on every path.
 */
export class TcpHeldTunnel implements Tunnel {
  #meter: () => { bytesIn: number; bytesOut: number } = () => ({ bytesIn: 0, bytesOut: 0 });
  #down?: (reason: string) => void;
  #first: Promise<net.Socket>;
  #taken = false;

  constructor(
    private readonly listener: TcpRelayedListener,
    readonly dialBack: DialBack,
  ) {
    this.#first = new Promise((resolve, reject) => {
      // Each bound connection keeps coturn's counters reporting (TcpRelayedListener #evenCounters, #flipParity).
      listener.on("connection", (socket) => {
        if (this.#taken) return socket.destroy();
        this.#taken = true;
        resolve(socket);
      });
      listener.once("unbound", (reason) => reject(new TunnelError("RELAY_FAILED", `the provider's connection through the relay was not bound: ${reason}`)));
      listener.once("closed", (reason) => {
        reject(new TunnelError("RELAY_FAILED", `the relay's TCP allocation closed: ${reason}`));
        this.#down?.(reason);
      });
    });
    this.#first.catch(() => undefined);
  }

  /** The relay's TURN server the allocation is held on. */
  get server(): { address: string; port: number } {
    return { address: this.listener.turn.server.address, port: this.listener.turn.server.port };
  }

  /** The provider's connection, spliced by the relay (RELAY_FAILED when it does not come in time). */
  next(): Promise<net.Socket> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new TunnelError("RELAY_FAILED", `the provider did not connect to the relayed address in ${DIAL_BACK_WAIT_MS / 1000} s`)),
        DIAL_BACK_WAIT_MS,
      );
    });
    return Promise.race([this.#first, late]).finally(() => clearTimeout(timer));
  }

  /** Meters the relay by what `source` counts on the wire (the proxy connection it carries). */
  meterBy(source: () => { bytesIn: number; bytesOut: number }): void {
    this.#meter = source;
  }

  stats(): { bytesIn: number; bytesOut: number } {
    return this.#meter();
  }

  onDown(listener: (reason: string) => void): void {
    this.#down = listener;
  }

  async stop(): Promise<void> {
    await this.listener.close();
  }
}
