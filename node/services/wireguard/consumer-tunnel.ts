import { spawn } from "node:child_process";
import dgram from "node:dgram";
import type { DirectRoute, Tunnel, TunnelCheck } from "../../session/service";
import { inNetns, program, TunnelError } from "../system";
import type { WireGuardProcess } from "./process";
import { HEARD_MS } from "./provider";

/**
 * Without a probe target: nothing heard from the provider (whose keepalive comes every 10 s) for
 * this long, the tunnel is down for good.
 */
const GONE_MS = 90_000;

/**
 * How a dead provider is noticed in seconds without traffic on a busy tunnel: whatever comes from
 * the provider (its traffic, its keepalive, a handshake) shows in wireguard-go's receive counter,
 * read every `POLL_MS`. Only when nothing came for `QUIET_MS` does the consumer probe: a DNS query
 * through the tunnel to the provider's resolver, which a live provider answers (its dnsmasq answers
 * a plain name itself, without asking upstream; were nothing listening, its firewall or kernel
 * answers with an ICMP error, which counts the same). Probes go `PROBE_EVERY_MS` apart while the
 * silence lasts, so a lost datagram or two are not a dead provider; `DEAD_AFTER_MS` after the first
 * unanswered probe the tunnel is down: at most QUIET + POLL + DEAD ≈ 3.3 s after the provider's
 * last word (plus the time to read the counter on a loaded machine). An idle healthy tunnel costs
 * one query and its answer (about 200 bytes) a second; a busy one none.
 */
export const LIVENESS = { POLL_MS: 250, QUIET_MS: 1000, PROBE_EVERY_MS: 500, DEAD_AFTER_MS: 2000 } as const;

/**
 * A DNS query (id 0x6d79, recursion desired) for the plain name "myst-ping", type A: answered
 * locally (NXDOMAIN) by a resolver run with --domain-needed. No byte is a newline (a label of 10
 * would be): bash's printf flushes at one, which would split the query into two datagrams.
 */
const PROBE_QUERY = Buffer.concat([
  Buffer.from([0x6d, 0x79, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]),
  Buffer.from([9]),
  Buffer.from("myst-ping"),
  Buffer.from([0, 0, 1, 0, 1]),
]);

/**
 * Sends the liveness probe to `address` (the provider's tunnel address, checked by `isIP`) from the
 * tunnel's namespace: in-process when it is ours, else by bash's /dev/udp in the namespace (a
 * socket of this process cannot enter another namespace).
 */
export async function probe(address: string, netns: string | undefined): Promise<void> {
  if (!netns) {
    // The answer is not read: wireguard-go's receive counter has already counted it.
    const socket = dgram.createSocket("udp4");
    try {
      await new Promise<void>((resolve, reject) => socket.send(PROBE_QUERY, 53, address, (err) => (err ? reject(err) : resolve())));
    } finally {
      socket.close();
    }
    return;
  }
  const bytes = [...PROBE_QUERY].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
  const argv = inNetns(netns, [program("bash"), "-c", `printf '${bytes}' > /dev/udp/${address}/53`]);
  await new Promise<void>((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: "ignore" });
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`the probe exited ${code}`))));
  });
}

/** The consumer's WireGuard tunnel: its meter, its liveness (LIVENESS), moving it to another relay, stopping it. */
export class WireGuardTunnel implements Tunnel {
  #down?: (reason: string) => void;
  #stopping = false;
  #stats = { bytesIn: 0, bytesOut: 0 };
  /** When the byte count from the provider last grew (its traffic, its keepalive, an answer to a probe). */
  #lastHeardMs = Date.now();
  /** When the current silence's first probe went out (none: the provider was heard since). */
  #probingSince?: number;
  #lastProbeMs = 0;
  #reading?: Promise<void>;
  #meter: NodeJS.Timeout;
  /** The stage checks through the tunnel (services/tunnel-check.ts); absent where the tunnel does not route this namespace. */
  check?: (o: { maxBytes: number; timeoutMs: number }) => Promise<TunnelCheck>;

  constructor(
    readonly process: WireGuardProcess,
    readonly device: string,
    readonly dns: string[],
    readonly ipv6: boolean,
    private readonly cleanup?: () => Promise<void>,
    /** Sends something a live provider answers through the tunnel; absent when it has no resolver to ask. */
    private readonly probe?: () => Promise<void>,
    private readonly relay?: { exempt: (address: string) => Promise<void>; move: (route: DirectRoute) => Promise<void> },
  ) {
    process.once("exit", (code) => {
      clearInterval(this.#meter);
      if (!this.#stopping) this.#down?.(process.explain(`wireguard-go exited (${code})`).message);
    });
    this.#meter = setInterval(() => void this.refresh(), probe ? LIVENESS.POLL_MS : 1000);
    this.#meter.unref();
  }

  /**
   * Sends the tunnel another way (a relay that died: the next relay's forwarder), keeping its keys
   * and its session; the liveness check starts afresh and a new `onDown` listener is wanted.
   */
  async reroute(route: DirectRoute): Promise<void> {
    if (!this.relay) throw new TunnelError("BAD_SERVICE_CONFIG", "this tunnel cannot be moved");
    await this.relay.move(route);
    this.#lastHeardMs = Date.now();
    this.#probingSince = undefined;
  }

  /** Keeps traffic to `address` outside the tunnel (a relay it is about to move to). */
  async exempt(address: string): Promise<void> {
    await this.relay?.exempt(address);
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  /** The consumer's own meter: the peer's counts of encrypted UDP payload, the quantity the provider meters. */
  refresh(): Promise<void> {
    // One read at a time: on a loaded machine a read can outlast the polling period, and an older
    // answer landing after a newer one would look like bytes received.
    this.#reading ??= this.#read().finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  async #read(): Promise<void> {
    const state = await this.process.uapi.get().catch(() => null);
    const peer = state?.peers[0];
    if (!peer) return;
    const now = Date.now();
    if (peer.rxBytes > this.#stats.bytesIn) {
      this.#lastHeardMs = now;
      this.#probingSince = undefined;
    }
    this.#stats = { bytesIn: peer.rxBytes, bytesOut: peer.txBytes };
    if (this.#stopping || !this.#down) return;
    if (this.probe) return this.#checkAlive(now);
    if (now - this.#lastHeardMs > GONE_MS) {
      // The provider removed our peer (or is gone): nothing has come back for many keepalives.
      this.#goneDown(`nothing heard from the provider through the tunnel for ${Math.round((now - this.#lastHeardMs) / 1000)} s`);
    }
  }

  /** Silent for `QUIET_MS`: probe, and call the tunnel down when the probes stay unanswered (see `LIVENESS`). */
  #checkAlive(now: number): void {
    if (now - this.#lastHeardMs < LIVENESS.QUIET_MS) return;
    this.#probingSince ??= now;
    if (now - this.#probingSince >= LIVENESS.DEAD_AFTER_MS) {
      return this.#goneDown(
        `the provider answered nothing through the tunnel for ${((now - this.#lastHeardMs) / 1000).toFixed(1)} s, probes included: it is gone or dropped this tunnel`,
      );
    }
    if (now - this.#lastProbeMs < LIVENESS.PROBE_EVERY_MS) return;
    this.#lastProbeMs = now;
    this.probe!().catch((err) => this.process.options.log?.debug({ err: (err as Error).message }, "the tunnel's liveness probe could not be sent"));
  }

  #goneDown(reason: string): void {
    const down = this.#down;
    this.#down = undefined;
    down?.(reason);
  }

  /**
   * Up: the provider was heard from recently — within `QUIET_MS` plus the probes' `DEAD_AFTER_MS`
   * when it is probed, else within 15 s (`HEARD_MS`, its keepalive's period and a half).
   */
  isUp(): boolean {
    const limit = this.probe ? LIVENESS.QUIET_MS + LIVENESS.DEAD_AFTER_MS + LIVENESS.POLL_MS : HEARD_MS;
    return this.process.running && Date.now() - this.#lastHeardMs < limit;
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#meter);
    await this.refresh();
    await this.process.stop();
    await this.cleanup?.();
  }

  onDown(listener: (reason: string) => void): void {
    this.#down = listener;
  }

  stats(): { bytesIn: number; bytesOut: number } {
    return this.#stats;
  }
}
