import crypto from "node:crypto";

/**
 * The direct channel's datagrams. Every one is sealed with ChaCha20-Poly1305 under a key only the
 * two ends of the session know (keys.ts: derived from secrets exchanged inside the signed and
 * encrypted dialog), so nobody on the path can forge, alter or replay one: there is no checksum a
 * forger can recompute (Mysterium's UDP control channel used a CRC32).
 *
 *   marker 0xD1 (1) ‖ type (1) ‖ receiver tag (8) ‖ sequence (8, big-endian) ‖ ciphertext ‖ tag (16)
 *
 * The first 18 bytes are the associated data; the nonce is 4 zero bytes ‖ the sequence. Each
 * direction has its own key, so a sequence is never used twice under one key. The receiver tag
 * (derived from the receiving direction's key) lets a receiver drop a stranger's datagram before
 * any decryption. The marker differs from WireGuard's message types (1-4) and from STUN's first
 * byte (0x00 / 0x01), so one socket could carry all three.
 */

export const MARKER = 0xd1;
export const HEADER_BYTES = 18;
const TAG_BYTES = 16;
/**
 * The largest datagram sent or accepted: under the smallest IPv6 MTU less headers, so nothing is
 * fragmented on the way. A dialog message that does not fit goes over the broker instead.
 */
export const MAX_DATAGRAM = 1200;
export const MAX_PAYLOAD = MAX_DATAGRAM - HEADER_BYTES - TAG_BYTES;

export const PacketType = {
  /** Connectivity check: "can you hear me from here?" (sent to every candidate pair at once: the punch). */
  probe: 1,
  /** The answer to a probe, to the address it came from, saying where it came from (a reflexive address). */
  probeAck: 2,
  /** A frame of the session's dialog (request, response, notification). */
  data: 3,
  /** Keeps the routers' mappings open and tells the peer we are alive. */
  keepalive: 4,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];
const TYPES = new Set<number>(Object.values(PacketType));

/** Why a datagram was dropped before anything used it. */
export type PacketDropReason = "oversized" | "malformed" | "unknown-receiver" | "forged" | "replayed";

/** One direction's key, with the receiver tag the other side puts in front of what it sends with it. */
export interface DirectionKey {
  key: Buffer;
  tag: Buffer;
}

export function sealPacket(k: DirectionKey, type: PacketType, seq: bigint, payload: Uint8Array): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new RangeError(`a direct-channel payload of ${payload.length} bytes is over ${MAX_PAYLOAD}`);
  const header = Buffer.alloc(HEADER_BYTES);
  header[0] = MARKER;
  header[1] = type;
  k.tag.copy(header, 2, 0, 8);
  header.writeBigUInt64BE(seq, 10);
  const cipher = crypto.createCipheriv("chacha20-poly1305", k.key, nonceOf(seq), { authTagLength: TAG_BYTES });
  cipher.setAAD(header, { plaintextLength: payload.length });
  return Buffer.concat([header, cipher.update(payload), cipher.final(), cipher.getAuthTag()]);
}

/** Opens a datagram sealed with `k` (the sender's direction key); the replay check is the caller's (ReplayWindow). */
export function openPacket(k: DirectionKey, datagram: Uint8Array): { type: PacketType; seq: bigint; payload: Buffer } | { drop: PacketDropReason } {
  if (datagram.length > MAX_DATAGRAM) return { drop: "oversized" };
  if (datagram.length < HEADER_BYTES + TAG_BYTES || datagram[0] !== MARKER || !TYPES.has(datagram[1])) return { drop: "malformed" };
  const buf = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.length);
  if (!crypto.timingSafeEqual(buf.subarray(2, 10), k.tag.subarray(0, 8))) return { drop: "unknown-receiver" };
  const seq = buf.readBigUInt64BE(10);
  const header = buf.subarray(0, HEADER_BYTES);
  const body = buf.subarray(HEADER_BYTES, buf.length - TAG_BYTES);
  try {
    const decipher = crypto.createDecipheriv("chacha20-poly1305", k.key, nonceOf(seq), { authTagLength: TAG_BYTES });
    decipher.setAAD(header, { plaintextLength: body.length });
    decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
    const payload = Buffer.concat([decipher.update(body), decipher.final()]);
    return { type: buf[1] as PacketType, seq, payload };
  } catch {
    return { drop: "forged" };
  }
}

function nonceOf(seq: bigint): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(seq, 4);
  return nonce;
}

/**
 * The receiver's sliding window of sequence numbers (RFC 6479's idea, as WireGuard and IPsec do):
 * a sequence seen before, or older than the window, is a replay. Datagrams may arrive out of order
 * within the window. Only authenticated sequences are offered to it, so a forger cannot move it.
 */
export class ReplayWindow {
  #top = -1n;
  readonly #bits: Uint32Array;
  readonly #size: bigint;

  constructor(readonly size = 2048) {
    if (size % 32 !== 0) throw new RangeError("the replay window is a multiple of 32");
    this.#bits = new Uint32Array(size / 32);
    this.#size = BigInt(size);
  }

  /** True (and remembered) when `seq` is new; false when it was seen or is too old to tell. */
  accept(seq: bigint): boolean {
    if (seq > this.#top) {
      const ahead = seq - this.#top;
      if (ahead >= this.#size) this.#bits.fill(0);
      else for (let s = this.#top + 1n; s < seq; s++) this.#clear(s);
      this.#top = seq;
      this.#set(seq);
      return true;
    }
    if (this.#top - seq >= this.#size) return false;
    if (this.#has(seq)) return false;
    this.#set(seq);
    return true;
  }

  #index(seq: bigint): [number, number] {
    const bit = Number(seq % this.#size);
    return [bit >>> 5, bit & 31];
  }
  #set(seq: bigint): void {
    const [w, b] = this.#index(seq);
    this.#bits[w] |= 1 << b;
  }
  #clear(seq: bigint): void {
    const [w, b] = this.#index(seq);
    this.#bits[w] &= ~(1 << b);
  }
  #has(seq: bigint): boolean {
    const [w, b] = this.#index(seq);
    return (this.#bits[w] & (1 << b)) !== 0;
  }
}
