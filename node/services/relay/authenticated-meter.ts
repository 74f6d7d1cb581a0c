/**
 * The consumer's meter of a relay, capped by what WireGuard authenticated (issue 29). The forwarder
 * can tell a WireGuard message's shape and freshness (wireguard-frames.ts) but not its
 * authenticity: a relay that forges transport messages with fresh counters gets them past it. The
 * session's own WireGuard can: its peer's `rx_bytes`/`tx_bytes` (wireguard-go's UAPI) grow only by
 * messages that decrypted under the session's keys (and by what it sent). So of the TURN frames
 * that carried tunnel data each way, the relay is credited in proportion to the data WireGuard
 * authenticated: frames × min(1, authenticated ÷ data). A genuine relay's frames are all
 * authenticated and counted whole, their per-packet overhead (a ChannelData header, its padding
 * over TCP, a Send or Data indication) included; a forger's are worth nothing, and the overhead
 * its forged frames add is credited only at the genuine traffic's own rate of overhead per
 * authenticated byte. The TURN messages that are not data (allocate, permission, channel bind,
 * refresh and their answers, the answers checked by MESSAGE-INTEGRITY) are counted as they are.
 */

export interface ByteCounts {
  bytesIn: number;
  bytesOut: number;
}

/** One direction's tunnel data through the relay: WireGuard message bytes, and the TURN frame bytes that carried them. */
export class CarriedBytes {
  data = 0;
  frames = 0;
  add(data: number, frame: number): void {
    this.data += data;
    this.frames += frame;
  }

  /** The frames, credited in proportion to the data WireGuard authenticated (never more than counted). */
  credited(authenticated: number): number {
    if (authenticated >= this.data) return this.frames;
    return Math.floor((this.frames * Math.max(0, authenticated)) / this.data);
  }
}

/** What WireGuard authenticated since the relay started carrying the session: a meter and its reading then. */
export interface WireGuardWitness {
  meter: () => ByteCounts;
  base: ByteCounts;
}

/**
 * The relay's bytes both ways as the consumer credits them: `raw` (the TURN transport's counts) with
 * the data frames in it replaced by their credited part, when a witness is known (before the
 * session's WireGuard is up there is none, and the frames count as the forwarder saw them).
 */
export function creditedBytes(raw: ByteCounts, carried: { in: CarriedBytes; out: CarriedBytes }, witness?: WireGuardWitness): ByteCounts {
  if (!witness) return raw;
  const now = witness.meter();
  return {
    bytesIn: raw.bytesIn - carried.in.frames + carried.in.credited(now.bytesIn - witness.base.bytesIn),
    bytesOut: raw.bytesOut - carried.out.frames + carried.out.credited(now.bytesOut - witness.base.bytesOut),
  };
}
