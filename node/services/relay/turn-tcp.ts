import crypto from "node:crypto";
import { EventEmitter } from "node:events";
import type net from "node:net";
import {
  ATTR,
  attributeOf,
  decodeErrorCode,
  decodeStunMessage,
  decodeXorAddress,
  encodeStunMessage,
  longTermKey,
  looksLikeStun,
  type StunAttribute,
  type StunMessage,
} from "../../nat/stun";
import { nextStreamFrame, type Peer, TURN_ATTR, TurnClient, type TurnCredential, type TurnServer } from "./turn-client";
import { openTurnStream, TurnError } from "./turn-stream";

/**
 * TURN's TCP relaying (RFC 6062) on top of the TURN client: an allocation whose relayed address is
 * a TCP port on the relay (REQUESTED-TRANSPORT 6). A peer that connects to it is announced on the
 * control connection by a ConnectionAttempt indication carrying a CONNECTION-ID; the client opens a
 * *data connection* to the relay's own port, sends ConnectionBind with that id, and from its success
 * on the data connection is spliced to the peer's TCP connection byte for byte. Connect (the client
 * dialling a peer through the relay) exists too; myst never sends it, and the relay cuts off an
 * allocation that reaches a peer its session did not name (services/relay/provider.ts).
 */

export const TCP_METHOD = { CONNECT: 0x00a, CONNECTION_BIND: 0x00b, CONNECTION_ATTEMPT: 0x00c } as const;
/** RFC 6062 §6.2.1: a 32-bit value the server chooses, opaque to the client. */
export const CONNECTION_ID = 0x002a;

/** The CONNECTION-ID attribute of `id`. */
export function connectionIdAttribute(id: number): StunAttribute {
  const value = Buffer.alloc(4);
  value.writeUInt32BE(id >>> 0, 0);
  return { type: CONNECTION_ID, value };
}

/** The message's CONNECTION-ID, or undefined when it has none or one that is not 4 bytes. */
export function connectionIdOf(message: StunMessage): number | undefined {
  const value = attributeOf(message, CONNECTION_ID);
  return value?.length === 4 ? value.readUInt32BE(0) : undefined;
}

/** A ConnectionAttempt indication's connection id and peer, or undefined when it is not one (or malformed). */
export function connectionAttemptOf(message: StunMessage): { id: number; peer: Peer } | undefined {
  if (message.cls !== "indication" || message.method !== TCP_METHOD.CONNECTION_ATTEMPT) return undefined;
  const id = connectionIdOf(message);
  const peerValue = attributeOf(message, TURN_ATTR.XOR_PEER_ADDRESS);
  if (id === undefined || !peerValue) return undefined;
  try {
    const p = decodeXorAddress(peerValue, message.transactionId);
    return { id, peer: { address: p.address, port: p.port } };
  } catch {
    return undefined;
  }
}

/** A ConnectionBind request for `id` under the long-term credential (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY, FINGERPRINT). */
export function encodeConnectionBind(id: number, auth: { username: string; realm: string; nonce: string; key: Buffer }, transactionId: Buffer): Buffer {
  return encodeStunMessage(
    {
      method: TCP_METHOD.CONNECTION_BIND,
      cls: "request",
      transactionId,
      attributes: [
        connectionIdAttribute(id),
        { type: ATTR.USERNAME, value: Buffer.from(auth.username) },
        { type: ATTR.REALM, value: Buffer.from(auth.realm) },
        { type: ATTR.NONCE, value: Buffer.from(auth.nonce) },
      ],
    },
    { integrityKey: auth.key, fingerprint: true },
  );
}

/** The first STUN message on a fresh stream, and the bytes after it (already the peer's). */
function firstMessage(socket: net.Socket, timeoutMs: number): Promise<{ message: StunMessage; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err?: Error, result?: { message: StunMessage; rest: Buffer }) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      if (err) reject(err);
      else resolve(result!);
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const next = nextStreamFrame(buf);
      if (!next) return buf.length > 4096 ? done(new TurnError("TURN_ERROR_RESPONSE", "the relay's answer to ConnectionBind is out of frame")) : undefined;
      socket.pause();
      if (!looksLikeStun(next.frame)) return done(new TurnError("TURN_ERROR_RESPONSE", "the relay answered ConnectionBind with something not STUN"));
      try {
        done(undefined, { message: decodeStunMessage(next.frame), rest: next.rest });
      } catch (err) {
        done(err as Error);
      }
    };
    const onClose = () => done(new TurnError("TURN_CLOSED", "the relay closed the data connection before answering ConnectionBind"));
    const timer = setTimeout(() => {
      socket.destroy();
      done(new TurnError("TURN_TIMEOUT", `the relay did not answer ConnectionBind in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on("data", onData);
    socket.once("close", onClose);
  });
}

/**
 * Opens a data connection for the connection `id` of an allocation and binds it (RFC 6062 §5.4):
 * resolves with the socket, spliced to the peer, with any of the peer's bytes that came in the
 * same read as the answer put back in front (`early`: how many; coturn sends what the peer said
 * before the bind right behind its answer). A stale nonce (438) is retried once on a new connection.
 */
export async function bindConnection(
  server: TurnServer,
  auth: { credential: TurnCredential; realm?: string; nonce?: string },
  id: number,
  timeoutMs = 3000,
): Promise<{ socket: net.Socket; early: number }> {
  let nonce = auth.nonce;
  const realm = auth.realm;
  if (!realm || !nonce) throw new TurnError("TURN_CLOSED", "the allocation has no realm and nonce to bind a connection with");
  const key = longTermKey(auth.credential.username, realm, auth.credential.password);
  for (let attempt = 0; ; attempt++) {
    const socket = await openTurnStream(server, timeoutMs);
    const transactionId = crypto.randomBytes(12);
    socket.write(encodeConnectionBind(id, { username: auth.credential.username, realm, nonce, key }, transactionId));
    const { message, rest } = await firstMessage(socket, timeoutMs).catch((err) => {
      socket.destroy();
      throw err;
    });
    if (message.cls === "success" && message.transactionId.equals(transactionId)) {
      if (rest.length) socket.unshift(rest);
      return { socket, early: rest.length };
    }
    socket.destroy();
    const value = attributeOf(message, ATTR.ERROR_CODE);
    const error = value ? decodeErrorCode(value) : { code: 0, reason: "no error code" };
    const fresh = attributeOf(message, ATTR.NONCE)?.toString("utf8");
    if (error.code === 438 && fresh && attempt === 0) {
      nonce = fresh;
      continue;
    }
    const e = new TurnError("TURN_ERROR_RESPONSE", `the relay refused ConnectionBind: ${error.code} ${error.reason}`);
    e.status = error.code;
    throw e;
  }
}

/** Permissions last 300 s (RFC 8656 §9); refreshed well before. */
const PERMIT_EVERY_MS = 120_000;

/**
 * How long, drawn at random between these bounds each time, the holder of a TCP allocation waits
 * between two Binding indications while a data connection is bound (TcpRelayedListener #flipParity).
 * Short: a session that ends in an uncounted stretch loses that stretch's bytes to the relay, and a
 * payer that watches its invoices stall could otherwise stream through a long one and end there. At
 * about one 28-byte indication a second, the loss is a second or two plus coturn's own lag.
 */
export const PARITY_FLIP_MS = { min: 500, max: 2_000 } as const;

/**
 * A TCP allocation held for peers to connect to (the passive half of RFC 6062): the control
 * connection (TLS or TCP) kept refreshed, a permission for the named peers' addresses only (the
 * relay refuses connections from any other), and each peer's connection bound on a data connection
 * of its own and handed out as "connection". The data connection goes over plain TCP to the relay's
 * port even when the control connection is TLS: what it carries is the peer's own stream (the proxy's
 * TLS, end to end), which a second TLS layer would only encrypt again.
 */
export class TcpRelayedListener extends EventEmitter<{
  connection: [socket: net.Socket, peer: Peer];
  /** A peer's connection that could not be bound (it is closed). */
  unbound: [reason: string];
  closed: [reason: string];
}> {
  #permitTimer?: NodeJS.Timeout;
  #flipTimer?: NodeJS.Timeout;
  readonly #sockets = new Set<net.Socket>();

  private constructor(
    readonly turn: TurnClient,
    readonly peers: string[],
    private readonly timeoutMs: number,
    private readonly flipMs: { min: number; max: number },
  ) {
    super();
  }

  /** `parityFlipMs`: the bounds of #flipParity's random wait (PARITY_FLIP_MS unless given: tests shorten it). */
  static async open(
    server: TurnServer,
    credential: TurnCredential,
    peers: string[],
    o: { timeoutMs?: number; parityFlipMs?: { min: number; max: number } } = {},
  ): Promise<TcpRelayedListener> {
    const turn = await TurnClient.allocate(server, credential, { relayedTransport: "tcp", timeoutMs: o.timeoutMs ?? 3000 });
    const listener = new TcpRelayedListener(turn, peers, o.timeoutMs ?? 3000, o.parityFlipMs ?? PARITY_FLIP_MS);
    turn.on("indication", (m) => listener.#attempt(m));
    turn.once("closed", (reason) => listener.#closed(reason));
    try {
      await turn.permit(peers);
    } catch (err) {
      await turn.close();
      throw err;
    }
    listener.#permitTimer = setInterval(() => void turn.permit(peers).catch(() => undefined), PERMIT_EVERY_MS);
    listener.#permitTimer.unref();
    return listener;
  }

  /** The relayed TCP address peers connect to. */
  get relayed(): Peer {
    return this.turn.relayed;
  }

  #attempt(message: StunMessage): void {
    const attempt = connectionAttemptOf(message);
    // The relay announces only permitted peers; anything else is not ours to bind.
    if (!attempt || !this.peers.includes(attempt.peer.address)) return;
    const data = { ...this.turn.server, transport: "tcp" as const, pin: undefined };
    bindConnection(data, this.turn.auth, attempt.id, this.timeoutMs).then(
      ({ socket, early }) => {
        if (this.turn.closed) return socket.destroy();
        this.#evenCounters(early);
        this.#sockets.add(socket);
        socket.once("close", () => this.#sockets.delete(socket));
        this.#flipParity();
        this.emit("connection", socket, attempt.peer);
      },
      (err) => this.emit("unbound", (err as Error).message),
    );
  }

  /**
   * Keeps coturn (4.6.1) reporting this allocation's counters, which the relay bills by. It brings
   * the counters `ps` shows up to date only when the sum of its packet counts is a multiple of 4,096,
   * checked after each read it splices, which adds two (one in, one out): once the sum is odd it is
   * never reported again (measured: 536 bytes counted after 12 MB). Each ConnectionAttempt adds one;
   * what the peer said before the bind, which coturn holds and sends right behind its answer, adds one
   * per read (`early` > 0: a peer's TLS hello, one read). When nothing came early the sum is odd, and
   * one Binding indication on the control connection (counted as one message received) makes it even.
   */
  #evenCounters(early: number): void {
    if (early === 0) this.turn.keepalive();
  }

  /**
   * The guess of #evenCounters can be wrong, and a peer can make it so: held bytes it sends in two
   * reads before the bind add two, not one, and come behind the answer all the same; held bytes that
   * reach this host in a read of their own look like none. Once wrong, the sum stays odd whatever the
   * peer sends. So while a data connection is bound, one Binding indication goes out at random moments
   * (PARITY_FLIP_MS apart): each flips the sum's parity, so the allocation is counted in every other
   * interval whatever the peer did before, around or after the bind, and the peer, which does not see
   * this control connection, cannot know which intervals those are to time its traffic. coturn resets
   * the sum to zero at each report, so after one the parity is even until the next flip.
   */
  #flipParity(): void {
    if (this.#flipTimer || this.turn.closed) return;
    this.#flipTimer = setTimeout(
      () => {
        this.#flipTimer = undefined;
        if (this.turn.closed || this.#sockets.size === 0) return;
        this.turn.keepalive();
        this.#flipParity();
      },
      crypto.randomInt(this.flipMs.min, this.flipMs.max + 1),
    );
    this.#flipTimer.unref();
  }

  #closed(reason: string): void {
    clearInterval(this.#permitTimer);
    clearTimeout(this.#flipTimer);
    this.emit("closed", reason);
  }

  /** Releases the allocation (its data connections with it). */
  async close(): Promise<void> {
    clearInterval(this.#permitTimer);
    clearTimeout(this.#flipTimer);
    for (const s of this.#sockets) s.destroy();
    await this.turn.close();
  }
}
