import dgram from "node:dgram";
import { silentLogger, type Logger } from "../../log/logger";
import type { SignedProposal } from "../../proposal/proposal";
import type { ConsumerService, Tunnel, TunnelEndpoint } from "../../session/service";
import type { Admission } from "../../session/relay-opener";
import { TunnelError } from "../system";
import { checkPinnedCertificate } from "../certificate";
import { checkRelayServiceConfig, type RelayConsumerData, type RelayTransport } from "./config";
import { type Peer, TurnClient, type TurnServer } from "./turn-client";
import { type ByteCounts, CarriedBytes, creditedBytes, type WireGuardWitness } from "./authenticated-meter";
import { FreshMessages } from "./wireguard-frames";

const SESSION_ID = /^[0-9a-f]{32}$/;
/** Permissions last 300 s (RFC 8656 §9); refreshed well before. */
const PERMIT_EVERY_MS = 120_000;
/** Datagrams held while the far end is not known yet (the first handshake of either side). */
const HELD = 16;
/** WireGuard's message types (the first byte) and a handshake initiation's size (the WireGuard paper, §5.4). */
const WG_INITIATION = 1;
const WG_RESPONSE = 2;
const WG_INITIATION_BYTES = 148;
const isInitiation = (b: Buffer) => b.length === WG_INITIATION_BYTES && b[0] === WG_INITIATION;

export interface RelayConsumerOptions {
  /** The transports tried, in order. Default UDP, then TLS, then TCP (UDP blocked: the caller puts TLS first). */
  transports?: RelayTransport[];
  /** How long a transport may take to allocate before the next is tried. Default 1.5 s. */
  allocateTimeoutMs?: number;
  /**
   * Lets the one server a transport is about to try through the kill switch before the first
   * packet goes to it. The admission is the allocation's: given back when that transport fails, and
   * when its tunnel stops, whatever ended it (the relay session not confirmed, the provider not
   * told, a relay left after a move, the session's end).
   */
  admit?: (endpoints: TunnelEndpoint[]) => Promise<Admission>;
  /**
   * The addresses the relay's signed proposal names (its direct/v1 contact): a TURN server its
   * `accepted` answer names elsewhere is refused. Undefined: not checked (tests on one host).
   */
  relayAddresses?: string[];
  /** The port of the session's tunnel (wireguard-go's socket) on 127.0.0.1: the one local peer the forwarder answers. */
  tunnelPort?: number;
  /** The provider's public addresses, named to the relay when asking for the credential: the only peers its allocation may permit. */
  peers?: string[];
  /** The provider's signed proposal, which announces those addresses: the relay checks them against it. */
  provider?: SignedProposal;
  log?: Logger;
}

/**
 * The consumer side of a relay: with the credential its paid session brought, it allocates a
 * relayed UDP address on the relay's coturn (UDP, or TLS or TCP when UDP gets nothing back) and runs a
 * local UDP forwarder on 127.0.0.1: the session's real tunnel (WireGuard) sends its packets to the
 * forwarder, which wraps them as ChannelData to the relay; what the relay passes back from the
 * provider goes to the tunnel unchanged. The relay sees only the tunnel's ciphertext.
 */
export class RelayConsumerService implements ConsumerService {
  readonly type = "relay";
  constructor(private readonly o: RelayConsumerOptions = {}) {}

  /** Says it speaks TURN over TLS (the relay then names its TLS server and the certificate to pin), and names the peers it will permit. */
  async consumerData(): Promise<RelayConsumerData> {
    return { transports: ["udp", "tcp", "tls"], ...(this.o.peers ? { peers: this.o.peers } : {}), ...(this.o.provider ? { provider: this.o.provider } : {}) };
  }

  async connect(session: { id: string; provider: string; serviceConfig: unknown }): Promise<RelayTunnel> {
    if (!SESSION_ID.test(session.id)) throw new TunnelError("BAD_SESSION_ID", "the relay's session id is not 32 hex characters");
    if (!checkRelayServiceConfig.Check(session.serviceConfig)) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay's service config is malformed");
    const config = session.serviceConfig;
    if (!config.username.endsWith(`:${session.id}`)) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay's credential is not for this session");
    const expected = this.o.relayAddresses;
    if (expected) {
      const elsewhere = config.servers.filter((s) => !expected.includes(s.address));
      if (expected.length === 0) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay's proposal names no public address to check its TURN servers against");
      if (elsewhere.length > 0)
        throw new TunnelError(
          "BAD_SERVICE_CONFIG",
          `the relay names TURN server ${elsewhere.map((s) => `${s.address}:${s.port}`).join(", ")}, not at the address its proposal gives (${expected.join(", ")})`,
        );
    }
    const order = this.o.transports ?? ["udp", "tls", "tcp"];
    // A TLS server comes with the certificate the relay's signed answer names: it must be that one.
    if (config.servers.some((s) => s.transport === "tls")) {
      if (!config.certificate || !config.fingerprint) throw new TunnelError("BAD_SERVICE_CONFIG", "the relay names a TLS server but no certificate to pin");
      checkPinnedCertificate(config.certificate, config.fingerprint, "the relay's");
    }
    const pin = config.certificate && config.fingerprint ? { certificate: config.certificate, fingerprint: config.fingerprint } : undefined;
    const failures: string[] = [];
    for (const transport of order) {
      const server = config.servers.find((s) => s.transport === transport);
      if (!server) continue;
      const endpoint: TunnelEndpoint = { address: server.address, port: server.port, protocol: transport === "udp" ? "udp" : "tcp" };
      let admission: Admission | undefined;
      let tunnel: RelayTunnel | undefined;
      try {
        admission = await this.o.admit?.([endpoint]);
        const turn = await TurnClient.allocate(
          { ...server, ...(server.transport === "tls" ? { pin } : {}) } as TurnServer,
          { username: config.username, password: config.password },
          { timeoutMs: this.o.allocateTimeoutMs ?? 1500 },
        );
        tunnel = new RelayTunnel(turn, session.provider, this.o.log ?? silentLogger, this.o.tunnelPort, admission);
        await tunnel.bind();
        return tunnel;
      } catch (err) {
        failures.push(`${transport}: ${(err as Error).message}`);
        // Its tunnel gives the admission back as it stops; without one, it is given back here.
        const undone = tunnel ? tunnel.stop() : (admission?.release() ?? Promise.resolve());
        await undone.catch((e) => this.o.log?.error({ err: (e as Error).message }, "withdrawing a relay's server from the kill switch failed"));
      }
    }
    throw new TunnelError("RELAY_FAILED", `no allocation on the relay (${failures.join("; ") || "it names no server this node can use"})`);
  }
}

/**
 * A relay allocation and its local forwarder, as a session's tunnel: its meter is the TURN
 * transport's bytes both ways (what the relay's coturn counts and invoices), of what came from the
 * relay only the frames valid for the session: TURN frames of this allocation carrying a WireGuard
 * message not seen before; once the session's WireGuard vouches (`capBy`), its data frames only
 * in proportion to what WireGuard authenticated (authenticated-meter.ts). The forwarder answers
 * one local peer, the session's tunnel.
 */
export class RelayTunnel implements Tunnel {
  readonly #socket = dgram.createSocket("udp4");
  #down?: (reason: string) => void;
  #stopping = false;
  /** The tunnel's own socket on this host (learned from its first datagram). */
  #local?: { address: string; port: number };
  #localConnected = false;
  readonly #connecting: Buffer[] = [];
  /** The provider's tunnel as the relay sees it (learned from its first datagram: a symmetric NAT's port cannot be known before). */
  #peer?: Peer;
  #permitted: string[] = [];
  #permitTimer?: NodeJS.Timeout;
  readonly #toPeer: Buffer[] = [];
  readonly #toLocal: Buffer[] = [];
  /**
   * The first handshake: our tunnel's initiation went to the provider and is not answered yet. Both
   * ends start one at once (the provider is kicked so that its first packet tells us its port), and
   * WireGuard keeps one handshake per peer: an initiation consumed on each side makes both answers
   * fail, and each side tries again only after 5 s (REKEY_TIMEOUT; measured: 5.1 s of a 5.5 s
   * relayed connect). So ours wins: the provider's crossing initiation is not delivered, and its
   * answer to ours completes the handshake in one round trip.
   */
  #initiated = false;
  #answered = false;
  readonly #fresh = new FreshMessages();
  #strangers = 0;
  /** The tunnel data the forwarder passed each way, and the TURN frames that carried it. */
  readonly #carried = { in: new CarriedBytes(), out: new CarriedBytes() };
  #witness?: WireGuardWitness & { refresh?: () => Promise<void> };

  constructor(
    readonly turn: TurnClient,
    /** The relay's identity. */
    readonly relay: string,
    private readonly log: Logger,
    /** wireguard-go's port on 127.0.0.1 (undefined: the first local socket that sends is taken for it). */
    private readonly tunnelPort?: number,
    /** The relay's server let through the kill switch for this allocation: given back when it stops. */
    private readonly admission?: Admission,
  ) {
    turn.on("closed", (reason) => {
      if (!this.#stopping) this.#down?.(`the relay's allocation ended: ${reason}`);
    });
    turn.on("data", (peer, data, frameBytes) => {
      // Not the session's traffic (a permitted peer's junk, a replay, a relay's own making): neither passed on nor counted.
      if (!this.#permitted.includes(peer.address) || !this.#fresh.accept(data)) return turn.disown(frameBytes);
      this.#carried.in.add(data.length, frameBytes);
      this.#fromRelay(peer, data);
    });
  }

  /** Where the provider sends: the relayed transport address. */
  get relayed(): Peer {
    return this.turn.relayed;
  }

  get transport(): RelayTransport {
    return this.turn.server.transport;
  }

  /** Where the tunnel's packets really leave this host (the relay's TURN server; TLS is TCP to a firewall): the kill switch and the host route. */
  get outside(): TunnelEndpoint {
    return { address: this.turn.server.address, port: this.turn.server.port, protocol: this.turn.server.transport === "udp" ? "udp" : "tcp" };
  }

  /** The forwarder the tunnel sends to instead of the provider. */
  get local(): { address: string; port: number } {
    return { address: "127.0.0.1", port: this.#socket.address().port };
  }

  async bind(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#socket.once("error", reject);
      this.#socket.bind(0, "127.0.0.1", () => {
        this.#socket.off("error", reject);
        resolve();
      });
    });
    // Connected to the tunnel's socket, the forwarder hears of its absence (ECONNREFUSED while
    // wireguard-go restarts or stops): nothing to do, its next datagram says where it is.
    this.#socket.on("error", (err) => this.log.debug({ err: err.message }, "the relay's forwarder: the tunnel's socket did not take a datagram"));
    this.#socket.on("message", (data, from) => {
      // One local peer: the session's tunnel. Another local socket can neither send through the relay nor take the answers.
      const tunnel = this.#local ?? (this.tunnelPort !== undefined ? { address: "127.0.0.1", port: this.tunnelPort } : from);
      if (from.address !== tunnel.address || from.port !== tunnel.port) {
        if (this.#strangers++ === 0)
          this.log.warn({ from: `${from.address}:${from.port}` }, "a local socket that is not the tunnel's sent to the relay's forwarder: ignored");
        return;
      }
      if (!this.#local) this.#connectLocal(from);
      if (!this.#answered && isInitiation(data)) this.#initiated = true;
      if (this.#toLocal.length > 0) for (const held of this.#toLocal.splice(0)) if (this.#deliverable(held)) this.#sendLocal(held);
      if (this.#peer) this.#toProvider(this.#peer, data);
      else if (this.#toPeer.length < HELD) this.#toPeer.push(data);
    });
  }

  /** Lets the provider's addresses send to the relayed address (per IP: any port its router picks). Refreshed until stopped. */
  async permit(addresses: string[]): Promise<void> {
    this.#permitted = [...new Set(addresses)];
    await this.turn.permit(this.#permitted);
    clearInterval(this.#permitTimer);
    this.#permitTimer = setInterval(() => {
      this.turn.permit(this.#permitted).catch((err) => this.log.warn({ err: (err as Error).message }, "refreshing the relay's permission failed"));
    }, PERMIT_EVERY_MS);
    this.#permitTimer.unref();
  }

  /** Sends the tunnel's datagram to the provider through the relay, counting it and its frame. */
  #toProvider(peer: Peer, data: Buffer): void {
    const before = this.turn.bytes.sent;
    this.turn.send(peer, data);
    this.#carried.out.add(data.length, this.turn.bytes.sent - before);
  }

  /**
   * From now on the relay's data frames are credited only as far as the session's WireGuard
   * authenticated them: `meter` reads its peer's `rx_bytes`/`tx_bytes`, `base` is that reading
   * when this relay started carrying the tunnel (zero for a tunnel that began on it), `refresh`
   * reads it anew (before an invoice is judged).
   */
  capBy(meter: () => ByteCounts, base: ByteCounts = { bytesIn: 0, bytesOut: 0 }, refresh?: () => Promise<void>): void {
    this.#witness = { meter, base: { ...base }, refresh };
  }

  /** Reads WireGuard's counters now (the relay's invoice is judged against them). */
  async refresh(): Promise<void> {
    await this.#witness?.refresh?.();
  }

  #fromRelay(peer: Peer, data: Buffer): void {
    if (!this.#peer || this.#peer.address !== peer.address || this.#peer.port !== peer.port) {
      // The provider's tunnel, first heard (or moved: its router mapped it anew): bind a channel to it.
      this.#peer = peer;
      this.turn.bind(peer).catch((err) => this.log.warn({ err: (err as Error).message }, "binding a relay channel failed (Send indications carry it)"));
      for (const held of this.#toPeer.splice(0)) this.#toProvider(peer, held);
    }
    if (!this.#local) {
      if (this.#toLocal.length < HELD) this.#toLocal.push(data);
    } else if (this.#deliverable(data)) this.#sendLocal(data);
  }

  /**
   * The tunnel's socket, first heard: the forwarder's socket is connected to it, so each datagram
   * goes without a destination to look up and the kernel drops every other local sender's.
   */
  #connectLocal(tunnel: { address: string; port: number }): void {
    this.#local = { address: tunnel.address, port: tunnel.port };
    this.#socket.connect(tunnel.port, tunnel.address, () => {
      this.#localConnected = true;
      for (const held of this.#connecting.splice(0)) this.#socket.send(held);
    });
  }

  /** To the tunnel: held while the socket connects (a datagram with a destination would fail then: EISCONN). */
  #sendLocal(data: Buffer): void {
    if (this.#localConnected) this.#socket.send(data);
    else if (this.#connecting.length < HELD) this.#connecting.push(data);
  }

  /** Whether a packet from the provider goes to our tunnel: not an initiation crossing ours in the first handshake. */
  #deliverable(data: Buffer): boolean {
    if (this.#answered) return true;
    if (data[0] === WG_RESPONSE) this.#answered = true;
    if (this.#initiated && isInitiation(data)) {
      this.log.debug("the provider's first handshake initiation crossed ours: not delivered (ours completes the handshake)");
      return false;
    }
    return true;
  }

  onDown(listener: (reason: string) => void): void {
    this.#down = listener;
  }

  isUp(): boolean {
    return !this.turn.closed;
  }

  stats(): { bytesIn: number; bytesOut: number } {
    return creditedBytes({ bytesIn: this.turn.bytes.received, bytesOut: this.turn.bytes.sent }, this.#carried, this.#witness);
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#permitTimer);
    try {
      await this.turn.close();
    } finally {
      try {
        this.#socket.close();
      } catch {
        // closed
      }
      // The session's own rules keep the server let out while its tunnel still runs through it (kill switch: admissions.ts).
      await this.admission?.release();
    }
  }
}
