import { isIP } from "node:net";
import { silentLogger, type Logger } from "../../log/logger";
import { UndoOnDeath } from "../supervision";
import { inNetns, program, run } from "../system";
import { ControlsError } from "./errors";

export interface ShaperOptions {
  netns?: string;
  /** The tunnel's interface on the provider (a tun device: packets to consumers leave by it). */
  device: string;
  /** Each session's limit, each direction, Mbit/s. */
  sessionMbps?: number;
  /** The whole service's limit (all sessions together), each direction, Mbit/s. */
  serviceMbps?: number;
  log?: Logger;
}

/** HTB wants a quantum; rate/r2q is megabytes at these rates (it warns and clamps). 10 full packets. */
const QUANTUM = "15140";
/** What HTB may send at once at a class's rate: 10 ms of it (a tun device's bursts at 200+ Mbit/s), at least 10 packets. */
const burstFor = (mbps: number) => `${Math.max(15140, Math.round((mbps * 1e6) / 8 / 100))}b`;
/** A FIFO leaf (no fq_codel) holds about 50 ms at the class's rate: short enough at 5 Mbit/s, long enough for TCP at 200. */
const fifoPackets = (mbps: number) => String(Math.max(64, Math.round((mbps * 1e6) / 8 / 1500 / 20)));
/**
 * Sessions a service limit is shared by, for each session's guaranteed rate: HTB gives a class its
 * own rate whatever its parent's, so the guarantees must add up to no more than the service's.
 */
const SHARE = 50;
/** The rate of the service class when only sessions are limited. */
const UNLIMITED = 100_000;

/**
 * Bandwidth limits for one tunnel interface, in the kernel (no userspace in the packet path):
 * HTB on the interface's egress shapes what consumers download (classified by their tunnel
 * address as destination), and the interface's ingress is redirected to an IFB device whose HTB
 * shapes what they upload (by source address). One HTB class for the whole service (1:1), one per
 * session beneath it; each session's leaf queue is fq_codel where the kernel has it, else a short
 * FIFO. Called by a tunnel adapter with its interface and each session's consumer addresses.
 */
export class TrafficShaper {
  readonly #o: ShaperOptions;
  readonly #log: Logger;
  readonly #ifb: string;
  readonly #classes = new Map<string, number>();
  #leaf?: string[];
  #applied = false;
  /** Deletes the IFB should this node die without deleting it (see UndoOnDeath). */
  readonly #undo = new UndoOnDeath();

  constructor(options: ShaperOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.#ifb = `ifb-${options.device}`.slice(0, 15);
  }

  get limits(): boolean {
    return (this.#o.sessionMbps ?? 0) > 0 || (this.#o.serviceMbps ?? 0) > 0;
  }

  /** The IFB device that carries the uploads through their shaper. */
  get ifb(): string {
    return this.#ifb;
  }

  #tc(...args: string[]): Promise<string> {
    return run(inNetns(this.#o.netns, [program("tc", "iproute2"), ...args]));
  }

  #ip(...args: string[]): Promise<string> {
    return run(inNetns(this.#o.netns, [program("ip", "iproute2"), ...args]));
  }

  /** Root classes on the interface and the IFB (made here); the interface must exist. */
  async apply(): Promise<void> {
    if (!this.limits) return;
    await this.remove();
    const service = this.#o.serviceMbps && this.#o.serviceMbps > 0 ? this.#o.serviceMbps : UNLIMITED;
    try {
      await this.#ip("link", "add", this.#ifb, "type", "ifb");
      // The tun device's qdiscs go with the device; the IFB stays unless someone deletes it.
      this.#undo.arm([inNetns(this.#o.netns, [program("ip", "iproute2"), "link", "del", this.#ifb])]);
      await this.#ip("link", "set", this.#ifb, "up");
      this.#applied = true;
      for (const dev of [this.#o.device, this.#ifb]) {
        await this.#tc("qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "r2q", "1000");
        await this.#tc("class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", ...rate(service), "quantum", QUANTUM);
      }
      await this.#tc("qdisc", "add", "dev", this.#o.device, "handle", "ffff:", "ingress");
      await this.#tc(
        "filter",
        "add",
        "dev",
        this.#o.device,
        "parent",
        "ffff:",
        "protocol",
        "all",
        "u32",
        "match",
        "u32",
        "0",
        "0",
        "action",
        "mirred",
        "egress",
        "redirect",
        "dev",
        this.#ifb,
      );
    } catch (err) {
      await this.remove();
      throw new ControlsError(
        "SHAPING_FAILED",
        `cannot limit the bandwidth on ${this.#o.device} (the kernel needs HTB, ingress, u32, mirred and IFB; --bandwidth 0 sells without a limit): ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.#log.info({ device: this.#o.device, sessionMbps: this.#o.sessionMbps, serviceMbps: this.#o.serviceMbps }, "bandwidth limits applied");
  }

  /** A session's classes and filters: its addresses (IPv4 and/or IPv6) are its consumer's in the tunnel. */
  async addSession(sessionId: string, addresses: string[]): Promise<void> {
    if (!this.#applied) return;
    await this.removeSession(sessionId);
    const minor = this.#freeMinor();
    this.#classes.set(sessionId, minor);
    const id = `1:${minor.toString(16)}`;
    const service = this.#o.serviceMbps && this.#o.serviceMbps > 0 ? this.#o.serviceMbps : undefined;
    const ceil = Math.min(this.#o.sessionMbps && this.#o.sessionMbps > 0 ? this.#o.sessionMbps : UNLIMITED, service ?? UNLIMITED);
    // Alone under an unlimited service a session is guaranteed its whole limit (the most exact);
    // under a service limit each gets a share and borrows up to its ceiling from what is free.
    const guaranteed = service ? Math.min(ceil, service / SHARE) : ceil;
    const leaf = await this.#leafQdisc(ceil);
    for (const [dev, direction] of [
      [this.#o.device, "dst"],
      [this.#ifb, "src"],
    ] as const) {
      await this.#tc("class", "add", "dev", dev, "parent", "1:1", "classid", id, "htb", ...rate(guaranteed, ceil), "quantum", QUANTUM);
      await this.#tc("qdisc", "add", "dev", dev, "parent", id, "handle", `${minor.toString(16)}:`, ...leaf);
      for (const address of addresses) {
        const v6 = isIP(address) === 6;
        await this.#tc(
          "filter",
          "add",
          "dev",
          dev,
          "parent",
          "1:",
          "protocol",
          v6 ? "ipv6" : "ip",
          "prio",
          String(prioOf(minor, v6)),
          "u32",
          "match",
          v6 ? "ip6" : "ip",
          direction,
          `${address}/${v6 ? 128 : 32}`,
          "flowid",
          id,
        );
      }
    }
  }

  async removeSession(sessionId: string): Promise<void> {
    const minor = this.#classes.get(sessionId);
    if (minor === undefined) return;
    this.#classes.delete(sessionId);
    for (const dev of [this.#o.device, this.#ifb]) {
      for (const v6 of [false, true]) {
        await this.#tc("filter", "del", "dev", dev, "parent", "1:", "protocol", v6 ? "ipv6" : "ip", "prio", String(prioOf(minor, v6))).catch(() => undefined);
      }
      await this.#tc("class", "del", "dev", dev, "classid", `1:${minor.toString(16)}`).catch(() => undefined);
    }
  }

  /** Removes every qdisc and the IFB; safe when nothing is there (the tun device may be gone already). */
  async remove(): Promise<void> {
    await this.#undo.disarm();
    await this.#tc("qdisc", "del", "dev", this.#o.device, "root").catch(() => undefined);
    await this.#tc("qdisc", "del", "dev", this.#o.device, "ingress").catch(() => undefined);
    await this.#ip("link", "del", this.#ifb).catch(() => undefined);
    this.#classes.clear();
    this.#applied = false;
  }

  #freeMinor(): number {
    const used = new Set(this.#classes.values());
    for (let m = 0x10; m < 0x8000; m++) if (!used.has(m)) return m;
    throw new ControlsError("SHAPING_FAILED", "no free traffic class");
  }

  /** fq_codel if this kernel has it (asked once), else a FIFO of about 50 ms at `mbps`. */
  async #leafQdisc(mbps: number): Promise<string[]> {
    if (this.#leaf) return this.#leaf[0] === "fq_codel" ? this.#leaf : ["pfifo", "limit", fifoPackets(mbps)];
    const probe = `${this.#o.device}`;
    const ok = await this.#tc("qdisc", "add", "dev", probe, "parent", "1:1", "handle", "ff0:", "fq_codel").then(
      () => true,
      () => false,
    );
    if (ok) await this.#tc("qdisc", "del", "dev", probe, "parent", "1:1", "handle", "ff0:").catch(() => undefined);
    else this.#log.warn("this kernel has no fq_codel queue discipline: each session's queue is a plain FIFO (about 50 ms at its rate)");
    this.#leaf = ok ? ["fq_codel"] : ["pfifo", "limit", fifoPackets(mbps)];
    return this.#leaf;
  }
}

/** A filter priority holds one protocol: a session's IPv4 filters at its class number, its IPv6 ones 0x8000 above. */
function prioOf(minor: number, v6: boolean): number {
  return v6 ? minor + 0x8000 : minor;
}

function rate(mbps: number, ceil = mbps): string[] {
  return ["rate", `${mbps}mbit`, "ceil", `${ceil}mbit`, "burst", burstFor(ceil), "cburst", burstFor(ceil)];
}
