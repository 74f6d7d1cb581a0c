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
/** Handshake messages remembered (a few a minute; their replay is what matters, within the same minutes). */
const HANDSHAKES_REMEMBERED = 1024;

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
 *
 * It runs once per datagram from the relay, so it allocates nothing for a transport message: the
 * counters seen are numbers in a set per receiver index, and the order they are forgotten in is a
 * ring of typed arrays. (It kept string keys in one Set and forgot the oldest through a new iterator
 * per datagram, which walks the set's deleted entries: 22-29 µs a datagram once full, measured.) A
 * counter is kept as a number: exact below 2^53 (no genuine WireGuard session gets there: 285 years
 * at a million packets a second); above it, forged counters may share a key, which only drops them.
 */
export class FreshMessages {
  /** Per receiver index, the counters seen and not yet forgotten. */
  readonly #counters = new Map<number, Set<number>>();
  /** The remembered transport messages in arrival order (a ring): the slot at `#next` is the oldest once full. */
  readonly #receivers = new Uint32Array(REMEMBERED);
  readonly #ring = new Float64Array(REMEMBERED);
  #next = 0;
  #full = false;
  /** Handshake messages seen (rare: one a rekey), forgotten in arrival order. */
  readonly #handshakes = new Set<string>();
  /** The last receiver's set (almost every datagram has the same receiver as the one before). */
  #lastReceiver = -1;
  #lastSet?: Set<number>;

  /** Whether `b` is a WireGuard message not seen lately (and remembers it). */
  accept(b: Buffer): boolean {
    if (b.length < 32 || b[1] !== 0 || b[2] !== 0 || b[3] !== 0) return false;
    const type = b[0];
    if (type === 4) return this.#transport(b.readUInt32LE(4), b.readUInt32LE(8) + b.readUInt32LE(12) * 2 ** 32);
    if ((type !== 1 && type !== 2 && type !== 3) || b.length !== HANDSHAKE_SIZES[type]) return false;
    // A handshake message's first 40 bytes hold its sender index and ephemeral key (or a cookie's nonce): unique per message.
    const key = b.subarray(0, 40).toString("hex");
    if (this.#handshakes.has(key)) return false;
    this.#handshakes.add(key);
    if (this.#handshakes.size > HANDSHAKES_REMEMBERED) this.#handshakes.delete(this.#handshakes.values().next().value as string);
    return true;
  }

  #transport(receiver: number, counter: number): boolean {
    if (this.#setOf(receiver).has(counter)) return false;
    if (this.#full) this.#forget(this.#receivers[this.#next], this.#ring[this.#next]);
    // Fetched again after the forget: it may have emptied and dropped this receiver's set.
    this.#setOf(receiver).add(counter);
    this.#receivers[this.#next] = receiver;
    this.#ring[this.#next] = counter;
    if (++this.#next === REMEMBERED) [this.#next, this.#full] = [0, true];
    return true;
  }

  #setOf(receiver: number): Set<number> {
    if (receiver === this.#lastReceiver && this.#lastSet) return this.#lastSet;
    let seen = this.#counters.get(receiver);
    if (!seen) {
      seen = new Set();
      this.#counters.set(receiver, seen);
    }
    [this.#lastReceiver, this.#lastSet] = [receiver, seen];
    return seen;
  }

  #forget(receiver: number, counter: number): void {
    const seen = this.#counters.get(receiver);
    if (!seen) return;
    seen.delete(counter);
    if (seen.size > 0) return;
    this.#counters.delete(receiver);
    if (this.#lastReceiver === receiver) [this.#lastReceiver, this.#lastSet] = [-1, undefined];
  }
}
