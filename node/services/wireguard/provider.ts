import fs from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import type { TunnelServiceOptions } from "../tunnel-options";
import { TunnelProvider, type MeteredSession } from "../tunnel-provider";
import { stopStale } from "../supervision";
import { ipBatch, TunnelError } from "../system";
import { checkConsumerData, type WireGuardServiceConfig } from "./config";
import { DEFAULT_DEVICE, DeviceClaim, interfacesIn } from "./device-claim";
import { generateKeyPair, isKey, publicKeyOf } from "./keys";
import { DEVICE_NAME, WireGuardProcess } from "./process";
import { enlargeReceiveBuffers } from "./socket-buffer";
import { PunchRoutes } from "./punch-route";
import { type SprayResult, sprayFromSocketOf } from "./tunnel-spray";
import type { PeerChange, PeerState } from "./uapi";

export interface WireGuardProviderOptions extends TunnelServiceOptions {
  /**
   * The interface; taken by another wireguard-go or node, the start fails (`DEVICE_IN_USE`). Default:
   * the first free of mystwg0, mystwg1, … (its control socket's name is shared by every namespace of
   * the host, so two providers cannot both have mystwg0; see device-claim.ts).
   */
  device?: string;
  /** The interface's MTU, which the consumer's interface takes too. Default 1420 (wg-quick's). */
  mtu?: number;
}

/** The tunnel's IPv6 subnet when the service carries IPv6 (unique local addresses, "myst" + 1). */
export const WIREGUARD_SUBNET_6 = "fd6d:7973:7401::/64";

/** Host numbers of the /24 handed to consumers (.1 is the provider's). */
const FIRST_HOST = 2;
const LAST_HOST = 254;
/**
 * Each end sends a keepalive every `KEEPALIVE_S` seconds (persistent keepalive): a consumer heard
 * from within `HEARD_MS` is connected. Without them an idle tunnel and a dead peer look the same
 * (WireGuard is silent when there is nothing to send), and a session whose consumer died would be
 * "connected" until its last handshake expired three minutes later.
 */
export const KEEPALIVE_S = 10;
export const HEARD_MS = 15_000;
/**
 * The provider's keepalive toward a consumer reached over a punched path: its router's mapping for
 * the consumer is re-made by it within this period after the router lost it (a reboot, a conntrack
 * flush), so the consumer's packets get through again within seconds. About 29 KB an hour.
 */
export const PUNCHED_KEEPALIVE_S = 3;

interface LiveSession extends MeteredSession {
  publicKey: string;
  host: number;
  endpoint?: string;
  /** Its keepalive period, once set (KEEPALIVE_S, or PUNCHED_KEEPALIVE_S on a punched path). */
  keepaliveS?: number;
  lastHandshakeMs: number;
  /** When its byte count from the consumer last grew. */
  lastHeardMs?: number;
}

/**
 * The provider side of WireGuard: one supervised wireguard-go on one interface, a peer per
 * session (the consumer's per-session public key, a /32 and with IPv6 a /128) added through the
 * control socket when the session opens and removed when it closes or stops paying. Metered from
 * the peers' `rx_bytes`/`tx_bytes`. NAT, the LAN block and the tunnel resolver are the same code
 * OpenVPN uses (services/firewall.ts, services/tunnel-resolver.ts).
 */
export class WireGuardProviderService extends TunnelProvider<LiveSession> {
  readonly type = "wireguard";
  readonly #o: WireGuardProviderOptions;
  #claim?: DeviceClaim;
  #process?: WireGuardProcess;
  #privateKey?: string;
  /** The kernel routes of sessions whose tunnel meets the consumer's from a probing socket's port (made on the first). */
  #punch?: PunchRoutes;

  constructor(options: WireGuardProviderOptions) {
    if (isIP(options.publicAddress) === 0) throw new TunnelError("BAD_SERVICE_CONFIG", `the public address "${options.publicAddress}" is not an IP address`);
    super(options, { process: "wireguard-go", service: "a WireGuard service", subnet: "10.9.0.0", subnet6: WIREGUARD_SUBNET_6 });
    this.#o = options;
  }

  protected get process(): WireGuardProcess | undefined {
    return this.#process;
  }

  /** The interface: the one named in the options, or the free one claimed at start. */
  get device(): string {
    const device = this.#claim?.device ?? this.#o.device;
    if (!device) throw new TunnelError("SERVICE_NOT_RUNNING", "the WireGuard service has not started: its interface is picked at start");
    return device;
  }

  /** The service's public key, which every session's consumer expects at the endpoint. */
  get publicKey(): string {
    if (!this.#privateKey) throw new TunnelError("SERVICE_NOT_RUNNING", "the WireGuard service has not started");
    return publicKeyOf(this.#privateKey);
  }

  /** The service's key (kept across restarts) and its interface. */
  protected async prepare(): Promise<void> {
    this.#privateKey = loadOrCreateKey(path.join(this.#o.dir, "private.key"));
    await this.#claimDevice();
  }

  async stop(): Promise<void> {
    await super.stop();
    await this.#punch?.clear().catch(() => undefined);
    this.#punch = undefined;
    await this.#claim?.release();
    this.#claim = undefined;
  }

  /**
   * Claims the interface (device-claim.ts) and makes what depends on its name. A wireguard-go that
   * a dead node left serving our interface is stopped first: it would make the name look taken.
   */
  async #claimDevice(): Promise<void> {
    const named = this.#o.device;
    // The name the last run had (kept in the service's directory): a restart prefers it.
    const lastFile = path.join(this.#o.dir, "device");
    const kept = fs.existsSync(lastFile) ? fs.readFileSync(lastFile, "utf8").trim() : "";
    const last = DEVICE_NAME.test(kept) ? kept : undefined;
    await stopStale(
      this.#pidFile(),
      (argv) => argv.some((a) => a.endsWith("wireguard-go")) && argv.some((a) => a === named || a === last || DEFAULT_DEVICE.test(a)),
      this.log,
      "a wireguard-go",
    );
    this.#claim ??= await DeviceClaim.take({ device: named, netns: this.#o.netns, prefer: last });
    this.log.info({ device: this.#claim.device, netns: this.#o.netns }, "WireGuard interface");
    if (last && last !== this.#claim.device && !(await interfacesIn(this.#o.netns)).has(last)) {
      // The last run (killed, it could not remove them) left its firewall chains under its name,
      // which another service holds now; with no interface of that name here, nothing here uses them.
      await this.firewallOn(last).remove();
    }
    fs.writeFileSync(lastFile, `${this.#claim.device}\n`, { mode: 0o600 });
    this.firewall = this.firewallOn(this.#claim.device);
    this.controls = this.#o.controls?.(this.#claim.device);
  }

  #pidFile(): string {
    return path.join(this.#o.dir, "wireguard-go.pid");
  }

  async openSession(session: { id: string; consumer: string; consumerData: unknown }): Promise<WireGuardServiceConfig> {
    if (!this.isRunning() || !this.#privateKey) throw new TunnelError("SERVICE_NOT_RUNNING", "the WireGuard server is not running");
    if (!checkConsumerData.Check(session.consumerData))
      throw new TunnelError("BAD_CONSUMER_DATA", "the session request carries no WireGuard public key (consumerData.publicKey, 32 bytes in base64)");
    const publicKey = session.consumerData.publicKey;
    // One peer per key: a second session naming a live peer's key would take over its addresses.
    if ([...this.sessions.values()].some((s) => s.publicKey === publicKey))
      throw new TunnelError("KEY_IN_USE", "this WireGuard public key belongs to a live session: make a fresh key pair per session");
    const used = new Set([...this.sessions.values()].map((s) => s.host));
    let host = FIRST_HOST;
    while (used.has(host) && host <= LAST_HOST) host++;
    if (host > LAST_HOST) throw new TunnelError("ADDRESS_POOL_EXHAUSTED", `all ${LAST_HOST - FIRST_HOST + 1} tunnel addresses are in use`);
    const live: LiveSession = {
      id: session.id,
      consumer: session.consumer,
      publicKey,
      host,
      bytesIn: 0,
      bytesOut: 0,
      carriedIn: 0,
      carriedOut: 0,
      lastHandshakeMs: 0,
      downMs: 0,
    };
    this.sessions.set(session.id, live);
    try {
      await this.#process!.uapi.set({ peers: [this.#peer(live)] });
    } catch (err) {
      this.sessions.delete(session.id);
      throw err;
    }
    // The session's limits go on its addresses, known from the start (no client to wait for).
    await this.controls?.sessionUp(session.id, this.#addresses(live)).catch((err) => {
      this.log.error({ err: (err as Error).message, sessionId: session.id }, "could not apply the session's bandwidth limit");
    });
    return {
      endpoint: { address: this.#o.publicAddress, port: this.#port() },
      publicKey: this.publicKey,
      clientPublicKey: publicKey,
      address: `${this.#hostAddress(host)}/32`,
      ...(this.#o.ipv6 ? { address6: `${this.#hostAddress6(host)}/128`, ipv6: true } : {}),
      dns: [this.serverAddress],
      mtu: this.#mtu(),
    };
  }

  /** The UDP port wireguard-go listens on: its own packets punch the provider's router (docs/direct-channel.md). */
  get tunnelPort(): number {
    return this.#port();
  }

  /** Kept mapped on a router that maps (UPnP / NAT-PMP): consumers then reach the tunnel there without punching. */
  get listenPort(): { port: number; protocol: "udp" } {
    return { port: this.#port(), protocol: "udp" };
  }

  /**
   * The consumer was reached directly (node/nat/direct): this end sends its handshakes and
   * keepalives to the consumer's tunnel port there, which opens the provider's router for the
   * consumer's packets (the consumer sends its own the other way at the same time: the punch).
   * No packet of the tunnel passes through this process.
   */
  async directRoute(sessionId: string, route: { kind?: string; address: string; tunnelPort: number }): Promise<void> {
    const s = this.sessions.get(sessionId);
    if (!s || !this.#process?.running || isIP(route.address) !== 4) return;
    s.endpoint = `${route.address}:${route.tunnelPort}`;
    s.keepaliveS = PUNCHED_KEEPALIVE_S;
    // Relayed: the consumer's side cannot send before it hears from us (the relay lets in our
    // address, but the consumer learns our port from our first packet). Switching the keepalive
    // off and on makes wireguard-go send at once (a keepalive, so a handshake) instead of at its
    // next retransmission, up to 5 s later.
    const kick = route.kind === "relayed" ? await this.#kick(s) : [];
    await this.#process.uapi.set({ peers: [...kick, { publicKey: s.publicKey, endpoint: s.endpoint, persistentKeepalive: PUNCHED_KEEPALIVE_S }] });
    this.log.info({ sessionId, endpoint: s.endpoint }, "WireGuard toward the consumer's direct route");
  }

  /**
   * What makes wireguard-go send toward a relayed address at once. wireguard-go sends no handshake
   * initiation within 5 s (REKEY_TIMEOUT) of its last one, whatever the endpoint: a tunnel that had
   * just sent one toward the consumer's direct path (a punch that met while the consumer chose a
   * relay, or a punched path given up) answered the keepalive's kick with nothing, and stayed silent
   * toward the relay until its retry; the consumer, which learns our port from our first packet,
   * could not begin either (relayed handshakes of 5.2 and 10.1 s, docs/relay.md). Before its first
   * handshake a peer holds nothing worth keeping, so it is made anew (its counters carried over: the
   * next reading restarts from zero), and a new peer's first initiation goes at once. After one, the
   * keypair stays and the kick's keepalive needs no handshake.
   */
  async #kick(s: LiveSession): Promise<PeerChange[]> {
    const peer = (await this.#process!.uapi.get()).peers.find((p) => p.publicKey === s.publicKey);
    const kick = relayedKick(peer, this.#peer(s));
    if (peer && kick.some((c) => c.remove)) {
      s.carriedIn += peer.rxBytes;
      s.carriedOut += peer.txBytes;
      s.bytesIn = s.bytesOut = 0;
    }
    return kick;
  }

  /**
   * Our router maps per destination and the consumer's tunnel spray reached our probing socket on
   * `localPort`: the tunnel's packets to the consumer leave from that port (punch-route.ts), until
   * the session ends. Called before `directRoute`, so wireguard-go's first packet there is translated.
   */
  async punchRoute(sessionId: string, punch: { address: string; port: number; localPort: number }): Promise<void> {
    if (!this.sessions.has(sessionId) || !this.#process?.running) return;
    this.#punch ??= new PunchRoutes(this.#o.netns);
    const route = { consumer: punch.address, consumerPort: punch.port, tunnelPort: this.#port(), localPort: punch.localPort };
    if ((await this.#punch.route(sessionId, route)) === "conntrack")
      this.log.info({ sessionId }, "the probe's flow was forgotten by conntrack -D (not by the warm forgetter)");
  }

  /** The session's search has started (punch-route.ts `prepare`): its route's table is made now, before it meets. */
  async preparePunchRoute(sessionId: string): Promise<void> {
    if (!this.sessions.has(sessionId) || !this.#process?.running) return;
    this.#punch ??= new PunchRoutes(this.#o.netns);
    await this.#punch.prepare(sessionId);
  }

  /** Hard-NAT probing for the tunnel: the datagrams leave from wireguard-go's own socket (tunnel-spray.ts). */
  async sprayFromTunnel(datagrams: Iterable<{ address: string; port: number; bytes: Buffer }>): Promise<SprayResult> {
    const pid = this.#process?.pid;
    if (!pid || !this.#process?.running) throw new TunnelError("SERVICE_NOT_RUNNING", "the WireGuard server is not running");
    return sprayFromSocketOf(pid, this.#port(), datagrams);
  }

  /**
   * WireGuard's equivalent of `client-kill … HALT`: without its peer the consumer's packets are
   * dropped unanswered, and nothing is ever sent to it again.
   */
  protected async cutOff(session: LiveSession, reason: string): Promise<void> {
    await this.#punch
      ?.release(session.id)
      .catch((err) => this.log.warn({ err: (err as Error).message, sessionId: session.id }, "removing the punch route failed"));
    await this.#process?.uapi.set({ peers: [{ publicKey: session.publicKey, remove: true }] }).catch((err) => {
      this.log.warn({ err: (err as Error).message, sessionId: session.id }, "removing the WireGuard peer failed (wireguard-go gone?)");
    });
    this.log.info({ sessionId: session.id, reason }, "consumer cut off");
  }

  /** Connected: this wireguard-go heard from the consumer (traffic or its keepalive) in the last `HEARD_MS`. */
  isConnected(sessionId: string): boolean {
    const s = this.sessions.get(sessionId);
    return this.isRunning() && !!s && s.downSince === undefined && s.lastHeardMs !== undefined && Date.now() - s.lastHeardMs < HEARD_MS;
  }

  /** Reads every peer's byte counts, endpoint and last handshake from the control socket. */
  async meter(): Promise<void> {
    const process = this.#process;
    if (!process?.running) return;
    const state = await process.uapi.get();
    const byKey = new Map([...this.sessions.values()].map((s) => [s.publicKey, s]));
    for (const peer of state.peers) {
      const s = byKey.get(peer.publicKey);
      if (!s) continue;
      if (peer.rxBytes > s.bytesIn) s.lastHeardMs = Date.now();
      s.bytesIn = peer.rxBytes;
      s.bytesOut = peer.txBytes;
      if (peer.endpoint && !s.endpoint) {
        // First heard from: from now on this end keeps the tunnel alive too (see `#peer`).
        s.endpoint = peer.endpoint;
        s.keepaliveS = KEEPALIVE_S;
        await process.uapi.set({ peers: [{ publicKey: s.publicKey, persistentKeepalive: KEEPALIVE_S }] }).catch(() => undefined);
      } else if (peer.endpoint) s.endpoint = peer.endpoint;
      s.lastHandshakeMs = peer.lastHandshakeMs;
      if (s.downSince !== undefined && peer.lastHandshakeMs > 0) {
        // Served again since the consumer's first handshake with the restarted process.
        s.downMs += Math.max(0, peer.lastHandshakeMs - s.downSince);
        s.downSince = undefined;
      }
    }
  }

  /**
   * The peer of a session. The keepalive is switched on only once the consumer's endpoint is known
   * (`meter` does it): switched on before, wireguard-go tries a handshake with no endpoint, fails,
   * and then refuses to try again for 5 s.
   */
  #peer(s: LiveSession): PeerChange {
    return {
      publicKey: s.publicKey,
      allowedIps: this.#addresses(s).map((a) => (a.includes(":") ? `${a}/128` : `${a}/32`)),
      ...(s.endpoint ? { endpoint: s.endpoint, persistentKeepalive: s.keepaliveS ?? KEEPALIVE_S } : {}),
    };
  }

  protected async launch(): Promise<void> {
    const process = new WireGuardProcess({ device: this.device, pidFile: this.#pidFile(), netns: this.#o.netns, log: this.log });
    this.#process = process;
    await process.start().catch((err) => {
      // Taken between the claim and the start by a node the claim cannot see (one in another namespace).
      throw err instanceof TunnelError && err.code === "DEVICE_IN_USE"
        ? new TunnelError("DEVICE_IN_USE", `the WireGuard interface ${this.device} is in use (${err.message}): choose another name with --device`, {
            cause: err,
          })
        : err;
    });
    try {
      const live = [...this.sessions.values()];
      // A restart: the new process knows no session keys. Given each consumer's last endpoint and
      // the keepalive, it starts the handshake itself once the link is up, instead of waiting up to
      // 15 s for the consumer to notice that its packets go unanswered.
      await process.uapi.set({ privateKey: this.#privateKey!, listenPort: this.#port(), replacePeers: true, peers: live.map((s) => this.#peer(s)) });
      await ipBatch(this.#o.netns, [
        `address add ${this.serverAddress}/24 dev ${this.device}`,
        ...(this.#o.ipv6 ? [`address add ${this.#serverAddress6()}/64 dev ${this.device}`] : []),
        `link set ${this.device} mtu ${this.#mtu()} up`,
      ]);
      // Its answer to listen_port is not proof that it listens (process.ts, `listening`).
      await process.listening(this.#port());
      // After the link is up: bringing it up opens wireguard-go's sockets again.
      await enlargeReceiveBuffers(process.pid!);
    } catch (err) {
      await process.stop();
      throw err instanceof TunnelError && err.code === "PORT_IN_USE"
        ? new TunnelError("PORT_IN_USE", `WireGuard cannot take UDP port ${this.#port()}: another program uses it (choose another with --port)`, { cause: err })
        : err;
    }
    // Supervised once it is up (a process stopped above, half started, is the launch's failure).
    process.once("exit", (code) => this.supervisor.exited(code, process.recent));
    if (!process.running) this.supervisor.exited(null, process.recent);
  }

  /** wireguard-go exited: the new one has had no handshake yet (the sessions' counters are carried over). */
  protected disconnected(s: LiveSession): void {
    s.lastHandshakeMs = 0;
  }

  /** Supervision (`Supervisor`): a new wireguard-go, and the limits of its new interface and of every session. */
  protected async relaunch(): Promise<void> {
    await this.launch();
    await this.controls
      ?.apply()
      .then(() => Promise.all([...this.sessions.values()].map((s) => this.controls!.sessionUp(s.id, this.#addresses(s)))))
      .catch((err) => this.log.error({ err: (err as Error).message }, "could not apply the controls again"));
  }

  /** A session's addresses in the tunnel. */
  #addresses(s: LiveSession): string[] {
    return [this.#hostAddress(s.host), ...(this.#o.ipv6 ? [this.#hostAddress6(s.host)] : [])];
  }

  #port(): number {
    return this.#o.port ?? 51820;
  }

  #mtu(): number {
    return this.#o.mtu ?? 1420;
  }

  #hostAddress(host: number): string {
    return this.subnet.replace(/\.0$/, `.${host}`);
  }

  #serverAddress6(): string {
    return this.#hostAddress6(1);
  }

  #hostAddress6(host: number): string {
    return `${WIREGUARD_SUBNET_6.split("::/")[0]}::${host.toString(16)}`;
  }
}

/** The service's key survives restarts (consumers of live sessions expect it); made once, 0600. */
function loadOrCreateKey(file: string): string {
  try {
    const key = fs.readFileSync(file, "utf8").trim();
    if (isKey(key)) return key;
    throw new TunnelError("BAD_SERVICE_CONFIG", `${file} does not hold a WireGuard private key: remove it and a new one is made`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const { privateKey } = generateKeyPair();
  fs.writeFileSync(file, `${privateKey}\n`, { mode: 0o600 });
  return privateKey;
}

/**
 * The changes that make wireguard-go send toward a new (relayed) endpoint at once, for a peer as the
 * control socket lists it and as it should be (`fresh`, endpoint and keepalive included): before its
 * first handshake the peer is made anew (wireguard-go would send no initiation within 5 s of its last
 * one); after it, switching the keepalive off makes the trailing change's keepalive send one packet.
 */
export function relayedKick(peer: PeerState | undefined, fresh: PeerChange): PeerChange[] {
  if (!peer || peer.lastHandshakeMs > 0) return [{ publicKey: fresh.publicKey, persistentKeepalive: 0 }];
  return [{ publicKey: fresh.publicKey, remove: true }, fresh];
}
