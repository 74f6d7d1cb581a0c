import fs from "node:fs";
import path from "node:path";
import type { PublicKeyDirectory } from "../../identity/protocol-signature";
import { verifyBytes } from "../../identity/protocol-signature";
import { authMessage, type OpenVpnServiceConfig } from "./credentials";
import type { ClientBlock, ManagementClient } from "./management";
import { ensurePki, type ServicePki } from "./pki";
import { OpenVpnProcess } from "./process";
import { TunnelError } from "../system";
import type { TunnelServiceOptions } from "../tunnel-options";
import { TunnelProvider, type MeteredSession } from "../tunnel-provider";

export interface OpenVpnProviderOptions extends TunnelServiceOptions {
  directory: PublicKeyDirectory;
  /** Address to listen on. Default: all. */
  bind?: string;
  tunDevice?: string;
}

/** The tunnel's IPv6 subnet when the service carries IPv6 (unique local addresses, "myst"). */
export const TUNNEL_SUBNET_6 = "fd6d:7973:7400::/64";

interface LiveSession extends MeteredSession {
  clientId?: number;
  /** The consumer's addresses in the tunnel, once its client connected (what the controls shape). */
  addresses?: string[];
}

/**
 * The provider side of OpenVPN: one supervised `openvpn` server per service, consumers admitted
 * through the management interface (username = session id, password = the consumer's signature
 * over it, only for a live session of that consumer, one client per session), metered from
 * `status 3`, cut off with `client-kill … HALT` when their session ends.
 */
export class OpenVpnProviderService extends TunnelProvider<LiveSession> {
  readonly type = "openvpn";
  /** OpenVPN's server only answers: its consumers must reach its address unasked (docs/reachability.md). */
  readonly reach = "public-or-mapped" as const;

  get listenPort(): { port: number; protocol: "udp" } {
    return { port: this.#o.port ?? 1194, protocol: "udp" };
  }
  readonly #o: OpenVpnProviderOptions;
  #process?: OpenVpnProcess;
  #pki?: ServicePki;

  constructor(options: OpenVpnProviderOptions) {
    super(options, { process: "openvpn", service: "an OpenVPN service", subnet: "10.8.0.0", subnet6: TUNNEL_SUBNET_6 });
    this.#o = options;
    this.firewall = this.firewallOn(this.#tun());
    this.controls = options.controls?.(this.#tun());
  }

  protected get process(): OpenVpnProcess | undefined {
    return this.#process;
  }

  protected async prepare(): Promise<void> {
    this.#pki = await ensurePki(path.join(this.#o.dir, "pki"));
    fs.writeFileSync(this.#configFile(), this.#serverConfig(), { mode: 0o600 });
  }

  async openSession(session: { id: string; consumer: string }): Promise<OpenVpnServiceConfig> {
    if (!this.isRunning() || !this.#pki) throw new TunnelError("SERVICE_NOT_RUNNING", "the OpenVPN server is not running");
    this.sessions.set(session.id, { id: session.id, consumer: session.consumer, bytesIn: 0, bytesOut: 0, carriedIn: 0, carriedOut: 0, downMs: 0 });
    return {
      remote: this.#o.publicAddress,
      port: this.#o.port ?? 1194,
      protocol: "udp",
      cipher: "AES-256-GCM",
      ca: this.#pki.ca,
      tlsCrypt: this.#pki.tlsCrypt,
      dns: [this.serverAddress],
      ...(this.#o.ipv6 ? { ipv6: true } : {}),
    };
  }

  /**
   * Closes the client's instance of a session the consumer ended (`kill` by its common name, the session id): at once,
   * with no message to a client that is gone or going. Its exit notification (`explicit-exit-notify`, sent by its
   * openvpn before it exits) only schedules that: openvpn keeps the instance 5 s after it (for retransmissions), and
   * `client-kill` of it schedules the same exit again. Any other consumer is told to stop (`client-kill … HALT`; without
   * HALT its openvpn would reconnect).
   */
  protected async cutOff(session: LiveSession, reason: string, options: { byConsumer?: boolean }): Promise<void> {
    const management = this.#process?.management;
    const cid = session.clientId;
    if (!management || cid === undefined || !(await this.#connected(cid))) return;
    if (options.byConsumer) {
      // Answered once the instance is closed (its DISCONNECT), so the consumer's disconnect returns with it gone.
      const closed = instanceClosed(management, cid, 1000);
      await management.command(`kill ${session.id}`).then(
        () => closed,
        (err) => this.log.debug({ err: (err as Error).message, sessionId: session.id }, "kill: the client is gone already"),
      );
    } else {
      await management.command(`client-kill ${cid} HALT`).catch((err) => {
        this.log.warn({ err: (err as Error).message, sessionId: session.id }, "client-kill failed (already gone?)");
      });
    }
    this.log.info({ sessionId: session.id, reason }, "consumer cut off");
  }

  isConnected(sessionId: string): boolean {
    return this.isRunning() && this.sessions.get(sessionId)?.clientId !== undefined;
  }

  async #connected(clientId: number): Promise<boolean> {
    const rows = await this.#process?.management?.clients().catch(() => []);
    return !!rows?.some((r) => r.clientId === clientId);
  }

  /** Reads byte counts of every connected client from the management interface. */
  async meter(): Promise<void> {
    const management = this.#process?.management;
    if (!management) return;
    const rows = await management.clients();
    for (const row of rows) {
      const s = this.sessions.get(row.username);
      if (!s || s.clientId !== row.clientId) continue;
      if (!s.addresses && row.virtualAddress) void this.#shape(s, [row.virtualAddress]);
      s.bytesIn = row.bytesReceived;
      s.bytesOut = row.bytesSent;
    }
  }

  protected async launch(): Promise<void> {
    const process = new OpenVpnProcess({
      configFile: this.#configFile(),
      managementSocket: this.#socket(),
      pidFile: path.join(this.#o.dir, "openvpn.pid"),
      netns: this.#o.netns,
      log: this.log,
    });
    this.#process = process;
    // Not acted on: a client's exit notification in openvpn's log. A client controls text that openvpn logs at the end
    // of a line of the same shape (an unknown control message), so a log line cannot say which instance to close
    // (review of session 12: one consumer closed another's). Without a word on the dialog, openvpn's own 5 s close it.
    const management = await process.start();
    management.on("client", (block) => void this.#onClient(management, block));
    process.once("exit", (code) => this.supervisor.exited(code, process.recent));
  }

  /** openvpn exited: its clients are gone (the sessions' counters are carried over). */
  protected disconnected(s: LiveSession): void {
    s.clientId = undefined;
  }

  /** Supervision (`Supervisor`): a new openvpn, and the limits of its new tun device (sessions' as they come back). */
  protected async relaunch(): Promise<void> {
    await this.launch();
    for (const s of this.sessions.values()) s.addresses = undefined;
    await this.controls?.apply().catch((err) => this.log.error({ err: (err as Error).message }, "could not apply the controls again"));
  }

  async #onClient(management: ManagementClient, block: ClientBlock): Promise<void> {
    if (block.kind === "DISCONNECT") {
      for (const s of this.sessions.values()) {
        if (s.clientId === block.cid) {
          // The disconnect carries the client's final counts (newer than our last meter reading).
          const received = Number(block.env.bytes_received);
          const sent = Number(block.env.bytes_sent);
          if (Number.isSafeInteger(received) && received >= s.bytesIn) s.bytesIn = received;
          if (Number.isSafeInteger(sent) && sent >= s.bytesOut) s.bytesOut = sent;
          s.carriedIn += s.bytesIn;
          s.carriedOut += s.bytesOut;
          s.bytesIn = s.bytesOut = 0;
          s.clientId = undefined;
          s.addresses = undefined;
          void this.controls?.sessionDown(s.id).catch(() => undefined);
        }
      }
      return;
    }
    if (block.kind === "ESTABLISHED") {
      // The client's tunnel addresses are known once it is established: its limits go on them.
      const session = [...this.sessions.values()].find((x) => x.clientId === block.cid);
      const addresses = [block.env.ifconfig_pool_remote_ip, block.env.ifconfig_pool_remote_ip6].filter((a): a is string => !!a);
      if (session && addresses.length) await this.#shape(session, addresses);
      return;
    }
    if (block.kind !== "CONNECT" && block.kind !== "REAUTH") return;
    const verdict = await this.#authorize(block.cid, block.env.username ?? "", block.env.password ?? "", block.kind === "REAUTH");
    if (verdict === true && block.kind === "CONNECT") {
      // openvpn does not wake a client up when the management interface authorizes it: the push
      // reply then waits for the client's next timer, a second later. A pending-auth notice just
      // before the authorization does wake it, and the reply goes out at once (~1 s → ~50 ms).
      // Both go in one write; openvpn carries out the authorization even if it refuses the notice.
      await management
        .commands([`client-pending-auth ${block.cid} ${block.kid} myst:authorized 60`, `client-auth-nt ${block.cid} ${block.kid}`])
        .catch(() => undefined);
    } else if (verdict === true) {
      await management.command(`client-auth-nt ${block.cid} ${block.kid}`).catch(() => undefined);
    } else {
      this.log.warn({ cid: block.cid, reason: verdict }, "openvpn client refused");
      await management.command(`client-deny ${block.cid} ${block.kid} "${verdict}"`).catch(() => undefined);
    }
  }

  /** The session's limits on its consumer's tunnel addresses (once per connection). */
  async #shape(session: LiveSession, addresses: string[]): Promise<void> {
    if (!this.controls) return;
    session.addresses = addresses;
    await this.controls.sessionUp(session.id, addresses).catch((err) => {
      this.log.error({ sessionId: session.id, err: (err as Error).message }, "could not limit the session's bandwidth");
    });
  }

  /** true, or why not. */
  async #authorize(cid: number, username: string, password: string, reauth: boolean): Promise<true | string> {
    const session = this.sessions.get(username);
    if (!session) return "no live session";
    if (session.clientId !== undefined && session.clientId !== cid) return "the session already has a client";
    if (reauth && session.clientId === cid) return true;
    const publicKey = await this.#o.directory.publicKeyOf(session.consumer).catch(() => null);
    let signature: Buffer;
    try {
      signature = Buffer.from(password, "base64");
    } catch {
      return "bad password";
    }
    if (!publicKey || !verifyBytes(publicKey, authMessage(session.id), signature)) return "bad password";
    session.clientId = cid;
    if (session.downSince !== undefined) {
      session.downMs += Date.now() - session.downSince;
      session.downSince = undefined;
    }
    return true;
  }

  #tun(): string {
    return this.#o.tunDevice ?? "myst0";
  }

  #configFile(): string {
    return path.join(this.#o.dir, "server.conf");
  }

  #socket(): string {
    return path.join(this.#o.dir, "management.sock");
  }

  #serverConfig(): string {
    const pki = this.#pki!;
    return [
      "# written by myst; regenerated at every start",
      "mode server",
      "tls-server",
      `dev ${this.#tun()}`,
      "dev-type tun",
      "proto udp",
      ...(this.#o.bind ? [`local ${this.#o.bind}`] : []),
      `port ${this.#o.port ?? 1194}`,
      "topology subnet",
      `server ${this.subnet} 255.255.255.0`,
      ...(this.#o.ipv6 ? [`server-ipv6 ${TUNNEL_SUBNET_6}`] : []),
      `ca ${path.join(pki.dir, "ca.crt")}`,
      `cert ${pki.cert}`,
      `key ${pki.key}`,
      "dh none",
      `tls-crypt ${path.join(pki.dir, "tls-crypt.key")}`,
      "tls-version-min 1.2",
      "data-ciphers AES-256-GCM",
      "verify-client-cert none",
      "username-as-common-name",
      `management ${this.#socket()} unix`,
      "management-client-auth",
      'push "redirect-gateway def1"',
      `push "dhcp-option DNS ${this.serverAddress}"`,
      // Clients notice a dead server after 3 s without a packet (ping every second) and connect
      // again to the restarted one: a crash costs seconds, not the minute of `keepalive 10 60`.
      "keepalive 1 3",
      "persist-key",
      "persist-tun",
      "explicit-exit-notify 1",
      // No `rcvbuf`: what the consumers upload gets the OS's default receive buffer, as stock openvpn.
      // A larger one (512 KiB, 2 MiB) drops fewer datagrams but queues the upload here instead: one
      // consumer's upload carried 2-9% less by mean (0.3-7% by median ratio) with 512 KiB, four at once no more (docs/connect-path.md).
      // What it drops of an upload it never counts, so never bills.
      "verb 3",
      "",
    ].join("\n");
  }
}

/** Resolves when openvpn reports a client's instance closed (`>CLIENT:DISCONNECT`), or after `timeoutMs`. */
function instanceClosed(management: ManagementClient, cid: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function onClient(block: ClientBlock) {
      if (block.kind === "DISCONNECT" && block.cid === cid) done();
    }
    function done() {
      clearTimeout(timer);
      management.off("client", onClient);
      resolve();
    }
    management.on("client", onClient);
  });
}
