/**
 * What the consumer's forwarder can tell of a datagram from the relay without WireGuard's keys:
 * whether it has the shape of a WireGuard message (its type, its size: fixed for a handshake
 * message, at least 32 bytes for a transport message; three reserved zero bytes) and whether it is new (a transport message's receiver index and
 * counter, or a handshake message's header, not seen before). A relay carries only WireGuard
 * (docs/relay.md), so what fails either test is not the session's traffic: not passed to the
 * tunnel and not counted as carried. A forged message of the right shape with a fresh counter
 * still passes (only WireGuard's AEAD can refuse it); see docs/relay.md.
 */

const HANDSHAKE_SIZES: Record<number, number> = { 1: 148, 2: 92, 3: 64 };
/** wireguard-go's replay window (RFC 6479 ring of 128 × 64 bits, one block kept free). */
const WINDOW = 8128n;
const HANDSHAKES_REMEMBERED = 64;
const RECEIVERS_REMEMBERED = 16;

export type WireGuardShape = { type: 1 | 2 | 3 } | { type: 4; receiver: number; counter: bigint };

/** The datagram as a WireGuard message, or undefined when it cannot be one. */
export function wireGuardShape(b: Buffer): WireGuardShape | undefined {
  if (b.length < 32 || b[1] !== 0 || b[2] !== 0 || b[3] !== 0) return undefined;
  const type = b[0];
  if (type === 1 || type === 2 || type === 3) return b.length === HANDSHAKE_SIZES[type] ? { type } : undefined;
  // A transport message is 32 bytes and its padded plaintext, padded to 16 bytes but never past the MTU (wireguard-go): any length from 32.
  if (type !== 4) return undefined;
  return { type, receiver: b.readUInt32LE(4), counter: b.readBigUInt64LE(8) };
}

/** Which WireGuard messages from the relay are new: a sliding window of counters per receiver index, and recent handshakes. */
export class FreshMessages {
  readonly #counters = new Map<number, { top: bigint; seen: Set<bigint> }>();
  readonly #handshakes: string[] = [];

  /** Whether `b` is a WireGuard message not seen before (and remembers it). */
  accept(b: Buffer): boolean {
    const shape = wireGuardShape(b);
    if (!shape) return false;
    if (shape.type !== 4) {
      // A handshake message's first 40 bytes hold its sender index and ephemeral key (or a cookie's nonce): unique per message.
      const key = b.subarray(0, 40).toString("hex");
      if (this.#handshakes.includes(key)) return false;
      this.#handshakes.push(key);
      if (this.#handshakes.length > HANDSHAKES_REMEMBERED) this.#handshakes.shift();
      return true;
    }
    let w = this.#counters.get(shape.receiver);
    if (!w) {
      // A new keypair every two minutes: forget the oldest receiver.
      if (this.#counters.size >= RECEIVERS_REMEMBERED) this.#counters.delete(this.#counters.keys().next().value as number);
      w = { top: shape.counter, seen: new Set() };
      this.#counters.set(shape.receiver, w);
    }
    const c = shape.counter;
    if (c + WINDOW <= w.top || w.seen.has(c)) return false;
    w.seen.add(c);
    if (c > w.top) {
      w.top = c;
      if (w.seen.size > Number(WINDOW) * 2) for (const old of w.seen) if (old + WINDOW <= c) w.seen.delete(old);
    }
    return true;
  }
}
