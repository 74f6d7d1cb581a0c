import dgram from "node:dgram";

/**
 * The sockets of one direct channel: its own (the one its candidates name) and, on the hard side of
 * a birthday search (plan.ts), its probing sockets, bound as the channel is made so that their first
 * probes leave as soon as the checks start. Each is closed once nothing needs it: the rest when the
 * path is chosen or the search is over, the winner of the tunnel's search when the tunnel takes its
 * port, all of them with the channel.
 */
export class ChannelSockets {
  readonly #open: dgram.Socket[];

  constructor(
    readonly own: dgram.Socket,
    probing: number,
    listen: (socket: dgram.Socket) => void,
  ) {
    this.#open = [own];
    listen(own);
    for (let i = 0; i < probing; i++) {
      const s = dgram.createSocket("udp4").bind(0);
      listen(s);
      this.#open.push(s);
    }
  }

  /** The probing sockets still open (the hard side's; none on the other sides). */
  get probing(): dgram.Socket[] {
    return this.#open.filter((s) => s !== this.own);
  }

  /** Closes every socket but those in `keep` (an undefined one keeps nothing). */
  keepOnly(keep: (dgram.Socket | undefined)[]): void {
    this.#close(this.#open.filter((s) => !keep.includes(s)));
  }

  /** Closes this one (its port goes to the tunnel: the routers keep its mappings while packets flow from it). */
  closeOne(socket: dgram.Socket): void {
    this.#close([socket]);
  }

  /** Every socket still open, taken out of the set (to be closed by the caller once what was sent has left). */
  takeAll(): dgram.Socket[] {
    return this.#open.splice(0);
  }

  #close(sockets: dgram.Socket[]): void {
    for (const s of sockets) {
      const at = this.#open.indexOf(s);
      if (at >= 0) this.#open.splice(at, 1);
      try {
        s.close();
      } catch {
        // already closed
      }
    }
  }
}
