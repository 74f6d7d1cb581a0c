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
/** Messages remembered (about 45 MB of full-size packets, far longer than a replayed datagram stays useful to a relay). */
const REMEMBERED = 32_768;

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

/**
 * Which WireGuard messages from the relay are new: the last REMEMBERED transport messages (receiver
 * index and counter) and handshakes. Nothing here moves a window forward: a frame the relay forged
 * with a counter far ahead is not authenticated, and must not make the genuine ones look old
 * (WireGuard itself moves its window only for authenticated messages). A forged message can take
 * one counter's place; the genuine one with that counter is then dropped, as a relay may drop any.
 */
export class FreshMessages {
  readonly #seen = new Set<string>();

  /** Whether `b` is a WireGuard message not seen lately (and remembers it). */
  accept(b: Buffer): boolean {
    const shape = wireGuardShape(b);
    if (!shape) return false;
    // A handshake message's first 40 bytes hold its sender index and ephemeral key (or a cookie's nonce): unique per message.
    const key = shape.type === 4 ? `${shape.receiver}:${shape.counter}` : b.subarray(0, 40).toString("hex");
    if (this.#seen.has(key)) return false;
    this.#seen.add(key);
    // A Set iterates in insertion order: the first is the oldest.
    if (this.#seen.size > REMEMBERED) this.#seen.delete(this.#seen.values().next().value as string);
    return true;
  }
}
