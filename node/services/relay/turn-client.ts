import crypto from "node:crypto";
import dgram from "node:dgram";
import { EventEmitter } from "node:events";
import net from "node:net";
import {
  ATTR,
  attributeOf,
  BINDING,
  checkIntegrity,
  decodeErrorCode,
  decodeStunMessage,
  decodeXorAddress,
  encodeStunMessage,
  encodeXorAddress,
  longTermKey,
  looksLikeStun,
  type StunAttribute,
  type StunMessage,
} from "../../nat/stun";
import { openTurnStream, TurnError } from "./turn-stream";
import type { RelayTransport } from "./config";

export { openTurnStream, TurnError, type TurnErrorCode } from "./turn-stream";

/**
 * A TURN client (RFC 8656) on top of the node's STUN codec (nat/stun.ts): Allocate with the
 * long-term credential (the 401 → REALM/NONCE → MESSAGE-INTEGRITY dance, a 438 stale nonce
 * retried), Refresh, CreatePermission, ChannelBind, Send/Data indications and ChannelData, over UDP,
 * TCP or TLS (RFC 8656 §11.5: over a stream, ChannelData is padded to 4 bytes; over TLS the server's
 * certificate is pinned, as its signed session answer names it). The relayed transport is UDP,
 * or TCP (`relayedTransport`; RFC 6062's connections: turn-tcp.ts). No npm package speaks this from Node (the maintained ones are servers or browser
 * WebRTC stacks), so it is written here, small, against Debian's coturn in the tests.
 */

export const TURN_METHOD = { ALLOCATE: 0x003, REFRESH: 0x004, SEND: 0x006, DATA: 0x007, CREATE_PERMISSION: 0x008, CHANNEL_BIND: 0x009 } as const;
export const TURN_ATTR = {
  CHANNEL_NUMBER: 0x000c,
  LIFETIME: 0x000d,
  XOR_PEER_ADDRESS: 0x0012,
  DATA: 0x0013,
  XOR_RELAYED_ADDRESS: 0x0016,
  REQUESTED_TRANSPORT: 0x0019,
} as const;

export interface TurnServer {
  address: string;
  port: number;
  transport: RelayTransport;
  /** TLS: the only certificate trusted (no CA), by its SHA-256 fingerprint. */
  pin?: { certificate: string; fingerprint: string };
}

export interface TurnCredential {
  username: string;
  password: string;
}

export interface Peer {
  address: string;
  port: number;
}

/** Encodes ChannelData: the channel number, the length, the data (padded to 4 bytes over TCP). */
export function encodeChannelData(channel: number, data: Buffer, stream: boolean): Buffer {
  const pad = stream ? (4 - (data.length % 4)) % 4 : 0;
  // Every byte is written below (no zero-filling of a buffer about to be overwritten: once per datagram).
  const out = Buffer.allocUnsafe(4 + data.length + pad);
  out.writeUInt16BE(channel, 0);
  out.writeUInt16BE(data.length, 2);
  data.copy(out, 4);
  if (pad > 0) out.fill(0, 4 + data.length);
  return out;
}

const isChannelData = (b: Buffer) => b.length >= 4 && b[0] >= 0x40 && b[0] <= 0x4f;

/** The next whole frame (a STUN message or ChannelData) at the head of a TCP stream's buffer, or undefined until it is all there. */
export function nextStreamFrame(buf: Buffer): { frame: Buffer; rest: Buffer } | undefined {
  if (buf.length < 4) return undefined;
  const length = buf.readUInt16BE(2);
  const total = isChannelData(buf) ? 4 + length + ((4 - (length % 4)) % 4) : 20 + length;
  if (buf.length < total) return undefined;
  const frame = isChannelData(buf) ? buf.subarray(0, 4 + length) : buf.subarray(0, total);
  return { frame, rest: buf.subarray(total) };
}

interface Pending {
  resolve: (m: StunMessage) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

export interface TurnClientOptions {
  /** The allocation's lifetime asked for, seconds (the server may shorten it). Default 600. */
  lifetimeS?: number;
  /** How long one request may take in all. Default 3 s. */
  timeoutMs?: number;
  /** UDP: the first retransmission after this (each next after twice as long). Default 250 ms. */
  rtoMs?: number;
  signal?: AbortSignal;
  /** The relayed transport asked for: UDP (RFC 8656), or TCP (RFC 6062: turn-tcp.ts). Default UDP. */
  relayedTransport?: "udp" | "tcp";
}

/**
 * One allocation on a TURN server. `allocate` makes it; `permit` lets a peer's IP send to the
 * relayed address; data from a peer arrives as "data" events (from a Data indication or a bound
 * channel); `send` sends to a peer (over its channel once bound, else a Send indication).
 * Refreshes itself at half the lifetime. Counts every byte it sends on the transport to the server
 * (STUN messages and ChannelData, headers included: what the relay meters too), and of what it
 * receives only the frames valid for the allocation: an answer to one of its own requests, data on
 * a channel it bound with its true length, a Data indication from a peer it permitted. Junk a
 * relay sends is not carried bytes (a data listener may still `disown` what it finds invalid).
 */
export class TurnClient extends EventEmitter<{
  data: [peer: Peer, data: Buffer, frameBytes: number];
  /** Another indication from the server (RFC 6062's ConnectionAttempt), counted. */
  indication: [message: StunMessage];
  closed: [reason: string];
}> {
  relayed!: Peer;
  /** The client's address as the server saw it (XOR-MAPPED-ADDRESS). */
  mapped?: Peer;
  lifetimeS = 0;
  readonly bytes = { sent: 0, received: 0 };
  readonly #permitted = new Set<string>();
  #udp?: dgram.Socket;
  #tcp?: net.Socket;
  #streamBuf: Buffer = Buffer.alloc(0);
  readonly #pending = new Map<string, Pending>();
  #realm?: string;
  #nonce?: string;
  #key?: Buffer;
  readonly #channels = new Map<string, number>();
  #lastPeer?: Peer;
  #lastChannel?: number;
  readonly #byChannel = new Map<number, Peer>();
  #nextChannel = 0x4000;
  #refresh?: NodeJS.Timeout;
  #closed = false;

  private constructor(
    readonly server: TurnServer,
    private readonly credential: TurnCredential,
    private readonly o: TurnClientOptions,
  ) {
    super();
  }

  /** Connects to the server, allocates a relayed UDP address, and keeps it refreshed until `close`. */
  static async allocate(server: TurnServer, credential: TurnCredential, o: TurnClientOptions = {}): Promise<TurnClient> {
    const client = new TurnClient(server, credential, o);
    await client.#open();
    try {
      await client.#allocate();
    } catch (err) {
      client.#shutdown("allocation failed");
      throw err;
    }
    return client;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async #open(): Promise<void> {
    const timeoutMs = this.o.timeoutMs ?? 3000;
    if (this.server.transport === "udp") {
      const socket = dgram.createSocket("udp4");
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(0, () => {
          socket.off("error", reject);
          resolve();
        });
      });
      // Connected to the relay's server: each datagram is sent without a destination to look up, and
      // the kernel drops any other sender's (measured: the relayed path is CPU-bound; docs/relay.md).
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.connect(this.server.port, this.server.address, () => {
          socket.off("error", reject);
          resolve();
        });
      });
      socket.on("message", (buf, from) => {
        if (from.address !== this.server.address || from.port !== this.server.port) return;
        this.#receive(buf);
      });
      socket.on("error", (err) => this.#shutdown(`UDP socket: ${err.message}`));
      this.#udp = socket;
      return;
    }
    const socket = await openTurnStream(this.server, timeoutMs);
    const what = this.server.transport.toUpperCase();
    socket.on("data", (chunk) => {
      this.#streamBuf = this.#streamBuf.length ? Buffer.concat([this.#streamBuf, chunk]) : chunk;
      for (;;) {
        const next = nextStreamFrame(this.#streamBuf);
        if (!next) break;
        const size = this.#streamBuf.length - next.rest.length;
        this.#streamBuf = next.rest;
        this.#handle(next.frame, size);
      }
      if (this.#streamBuf.length > 70_000) this.#shutdown("the relay's TCP stream is out of frame");
    });
    socket.on("error", (err) => this.#shutdown(`${what}: ${err.message}`));
    socket.on("close", () => this.#shutdown(`the relay closed the ${what} connection`));
    this.#tcp = socket;
  }

  #receive(buf: Buffer): void {
    // Over UDP a ChannelData datagram is its length, or padded to 4 bytes (RFC 8656 §12.5): nothing longer.
    if (isChannelData(buf) && buf.length - 4 - buf.readUInt16BE(2) > 3) return;
    this.#handle(buf, buf.length);
  }

  /** Takes back bytes counted for a frame a listener found invalid (not the session's traffic). */
  disown(bytes: number): void {
    this.bytes.received -= bytes;
  }

  /** One frame from the server, `size` bytes on the wire: counted when valid for the allocation. */
  #handle(buf: Buffer, size: number): void {
    if (isChannelData(buf)) {
      const peer = this.#byChannel.get(buf.readUInt16BE(0));
      const length = buf.readUInt16BE(2);
      if (!peer || length > buf.length - 4) return;
      this.bytes.received += size;
      this.emit("data", peer, buf.subarray(4, 4 + length), size);
      return;
    }
    if (!looksLikeStun(buf)) return;
    let message: StunMessage;
    try {
      message = decodeStunMessage(buf);
    } catch {
      return;
    }
    if (message.cls === "indication" && message.method === TURN_METHOD.DATA) {
      const peerValue = attributeOf(message, TURN_ATTR.XOR_PEER_ADDRESS);
      const data = attributeOf(message, TURN_ATTR.DATA);
      if (!peerValue || !data) return;
      let peer: Peer;
      try {
        const p = decodeXorAddress(peerValue, message.transactionId);
        peer = { address: p.address, port: p.port };
      } catch {
        return; // a malformed peer address: dropped
      }
      if (!this.#permitted.has(peer.address)) return;
      this.bytes.received += size;
      this.emit("data", peer, data, size);
      return;
    }
    if (message.cls === "indication" && this.listenerCount("indication") > 0) {
      this.bytes.received += size;
      this.emit("indication", message);
      return;
    }
    if (message.cls !== "success" && message.cls !== "error") return;
    const id = message.transactionId.toString("hex");
    const pending = this.#pending.get(id);
    if (!pending) return;
    // An answer under our key must carry a MESSAGE-INTEGRITY that checks (a 401 comes before there is one).
    if (this.#key && message.cls === "success" && checkIntegrity(message, this.#key) === false) return;
    this.bytes.received += size;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(message);
  }

  #write(bytes: Buffer): void {
    if (this.#closed) return;
    this.bytes.sent += bytes.length;
    if (this.#udp) this.#udp.send(bytes);
    else this.#tcp?.write(bytes);
  }

  /** One transaction: retransmitted over UDP (RFC 8489's RTO doubling), once over TCP; rejects on silence. */
  #transact(bytes: Buffer, transactionId: Buffer): Promise<StunMessage> {
    const timeoutMs = this.o.timeoutMs ?? 3000;
    const rto = this.o.rtoMs ?? 250;
    return new Promise<StunMessage>((resolve, reject) => {
      if (this.#closed) return reject(new TurnError("TURN_CLOSED", "the allocation is closed"));
      const id = transactionId.toString("hex");
      const started = Date.now();
      const pending: Pending = { resolve, reject };
      this.#pending.set(id, pending);
      let wait = rto;
      const send = () => {
        this.#write(bytes);
        const left = timeoutMs - (Date.now() - started);
        if (left <= 0) {
          this.#pending.delete(id);
          return reject(
            new TurnError("TURN_TIMEOUT", `the relay ${this.server.address}:${this.server.port} (${this.server.transport}) did not answer in ${timeoutMs} ms`),
          );
        }
        pending.timer = setTimeout(send, this.#udp ? Math.min(wait, left) : left);
        wait *= 2;
      };
      send();
    });
  }

  /** A request with the credential (after the first 401), retried once on 401/438 with the server's new nonce. */
  async #request(method: number, attributes: StunAttribute[]): Promise<StunMessage> {
    for (let attempt = 0; ; attempt++) {
      const transactionId = crypto.randomBytes(12);
      const auth: StunAttribute[] =
        this.#key && this.#realm && this.#nonce
          ? [
              { type: ATTR.USERNAME, value: Buffer.from(this.credential.username) },
              { type: ATTR.REALM, value: Buffer.from(this.#realm) },
              { type: ATTR.NONCE, value: Buffer.from(this.#nonce) },
            ]
          : [];
      const bytes = encodeStunMessage(
        { method, cls: "request", transactionId, attributes: [...attributes, ...auth] },
        { ...(this.#key && auth.length ? { integrityKey: this.#key } : {}), fingerprint: true },
      );
      const answer = await this.#transact(bytes, transactionId);
      if (answer.cls === "success") return answer;
      const value = attributeOf(answer, ATTR.ERROR_CODE);
      const error = value ? decodeErrorCode(value) : { code: 0, reason: "an error" };
      const realm = attributeOf(answer, ATTR.REALM)?.toString("utf8");
      const nonce = attributeOf(answer, ATTR.NONCE)?.toString("utf8");
      if ((error.code === 401 || error.code === 438) && nonce && attempt < 2 && (error.code === 438 || !auth.length)) {
        this.#nonce = nonce;
        if (realm) this.#realm = realm;
        if (this.#realm) this.#key = longTermKey(this.credential.username, this.#realm, this.credential.password);
        continue;
      }
      const e = new TurnError("TURN_ERROR_RESPONSE", `the relay ${this.server.address}:${this.server.port} answered ${error.code} ${error.reason}`);
      e.status = error.code;
      throw e;
    }
  }

  /** A request of another method under the allocation's credential (RFC 6062's Connect). */
  request(method: number, attributes: StunAttribute[]): Promise<StunMessage> {
    return this.#request(method, attributes);
  }

  /** The realm and nonce the server gave, with the credential: what a new connection of this allocation authenticates with. */
  get auth(): { credential: TurnCredential; realm?: string; nonce?: string } {
    return { credential: this.credential, realm: this.#realm, nonce: this.#nonce };
  }

  async #allocate(): Promise<void> {
    const lifetime = Buffer.alloc(4);
    lifetime.writeUInt32BE(this.o.lifetimeS ?? 600, 0);
    const answer = await this.#request(TURN_METHOD.ALLOCATE, [
      { type: TURN_ATTR.REQUESTED_TRANSPORT, value: Buffer.from([this.o.relayedTransport === "tcp" ? 6 : 17, 0, 0, 0]) },
      { type: TURN_ATTR.LIFETIME, value: lifetime },
    ]);
    const relayed = attributeOf(answer, TURN_ATTR.XOR_RELAYED_ADDRESS);
    if (!relayed) throw new TurnError("TURN_ERROR_RESPONSE", "the relay's Allocate answer has no XOR-RELAYED-ADDRESS");
    const r = decodeXorAddress(relayed, answer.transactionId);
    this.relayed = { address: r.address, port: r.port };
    const mapped = attributeOf(answer, ATTR.XOR_MAPPED_ADDRESS);
    if (mapped) {
      const m = decodeXorAddress(mapped, answer.transactionId);
      this.mapped = { address: m.address, port: m.port };
    }
    this.lifetimeS = attributeOf(answer, TURN_ATTR.LIFETIME)?.readUInt32BE(0) ?? 600;
    this.#scheduleRefresh();
  }

  #scheduleRefresh(): void {
    clearTimeout(this.#refresh);
    this.#refresh = setTimeout(
      () => {
        const lifetime = Buffer.alloc(4);
        lifetime.writeUInt32BE(this.o.lifetimeS ?? 600, 0);
        this.#request(TURN_METHOD.REFRESH, [{ type: TURN_ATTR.LIFETIME, value: lifetime }])
          .then((answer) => {
            this.lifetimeS = attributeOf(answer, TURN_ATTR.LIFETIME)?.readUInt32BE(0) ?? this.lifetimeS;
            this.#scheduleRefresh();
          })
          .catch((err) => this.#shutdown(`refreshing the allocation failed: ${(err as Error).message}`));
      },
      Math.max(1, this.lifetimeS / 2) * 1000,
    );
    this.#refresh.unref();
  }

  /** CreatePermission for these IPs (RFC 8656 §9: per IP address, any port); refreshed with every call, lasts 300 s. */
  async permit(addresses: string[]): Promise<void> {
    const txPlaceholder = Buffer.alloc(12);
    const attributes = addresses.map((address) => ({
      type: TURN_ATTR.XOR_PEER_ADDRESS,
      value: encodeXorAddress({ family: net.isIPv6(address) ? 6 : 4, address, port: 0 }, txPlaceholder),
    }));
    // XOR-PEER-ADDRESS of IPv4 is XORed with the cookie only, so the placeholder transaction id does not matter for it.
    await this.#request(TURN_METHOD.CREATE_PERMISSION, attributes);
    for (const a of addresses) this.#permitted.add(a);
  }

  /** Binds a channel to a peer (its permission must exist), so data to and from it goes as 4-byte-header ChannelData. */
  async bind(peer: Peer): Promise<number> {
    const key = `${peer.address}:${peer.port}`;
    const known = this.#channels.get(key);
    if (known !== undefined) return known;
    const channel = this.#nextChannel++;
    if (channel > 0x4fff) throw new TurnError("TURN_ERROR_RESPONSE", "no channel numbers left");
    const number = Buffer.alloc(4);
    number.writeUInt16BE(channel, 0);
    // Received on it from now: over a stream the server's success and its first ChannelData can come
    // in one chunk, read before this continues (measured: the peer's first packet then went missing).
    this.#byChannel.set(channel, peer);
    try {
      await this.#request(TURN_METHOD.CHANNEL_BIND, [
        { type: TURN_ATTR.CHANNEL_NUMBER, value: number },
        { type: TURN_ATTR.XOR_PEER_ADDRESS, value: encodeXorAddress({ family: 4, address: peer.address, port: peer.port }, Buffer.alloc(12)) },
      ]);
    } catch (err) {
      this.#byChannel.delete(channel);
      throw err;
    }
    this.#channels.set(key, channel);
    return channel;
  }

  /** Sends data to a peer through the relay: ChannelData once a channel is bound, a Send indication before. */
  send(peer: Peer, data: Buffer): void {
    // The same peer object datagram after datagram (the forwarder's): its channel without making its key again.
    if (peer !== this.#lastPeer || this.#lastChannel === undefined)
      [this.#lastPeer, this.#lastChannel] = [peer, this.#channels.get(`${peer.address}:${peer.port}`)];
    const channel = this.#lastChannel;
    if (channel !== undefined) return this.#write(encodeChannelData(channel, data, !!this.#tcp));
    const transactionId = crypto.randomBytes(12);
    this.#write(
      encodeStunMessage({
        method: TURN_METHOD.SEND,
        cls: "indication",
        transactionId,
        attributes: [
          { type: TURN_ATTR.XOR_PEER_ADDRESS, value: encodeXorAddress({ family: 4, address: peer.address, port: peer.port }, transactionId) },
          { type: TURN_ATTR.DATA, value: data },
        ],
      }),
    );
  }

  /** A Binding indication (RFC 8489 §3: a keepalive that asks for no answer): one message the relay counts as received. */
  keepalive(): void {
    this.#write(encodeStunMessage({ method: BINDING, cls: "indication", transactionId: crypto.randomBytes(12), attributes: [] }, { fingerprint: true }));
  }

  /** Releases the allocation (Refresh with lifetime 0, not waited for long) and closes the transport. */
  async close(): Promise<void> {
    if (this.#closed) return;
    const zero = Buffer.alloc(4);
    await Promise.race([
      this.#request(TURN_METHOD.REFRESH, [{ type: TURN_ATTR.LIFETIME, value: zero }]).catch(() => undefined),
      new Promise((r) => setTimeout(r, 500).unref()),
    ]);
    this.#shutdown("closed");
  }

  #shutdown(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#refresh);
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new TurnError("TURN_CLOSED", `the allocation closed: ${reason}`));
    }
    this.#pending.clear();
    try {
      this.#udp?.close();
    } catch {
      // closed
    }
    this.#tcp?.destroy();
    this.emit("closed", reason);
  }
}
