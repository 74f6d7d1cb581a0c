import fs from "node:fs";
import { isIP } from "node:net";
import type { IdentityKey } from "../../identity/key";
import { silentLogger, type Logger } from "../../log/logger";
import type { ConnectTarget, ConsumerService, Tunnel, TunnelCheck, TunnelGuard, TunnelPlan } from "../../session/service";
import { authMessage, checkServiceConfig, type OpenVpnServiceConfig } from "./credentials";
import type { OpenVpnProcess } from "./process";
import { traced } from "../../log/connect-trace";
import type { OpenVpnSpare } from "./spare";
import { launchWaiting, type WaitingOpenVpn } from "./waiting";
import { program, refuseResolversOutsideTunnel, requireNetworkCapabilities, TunnelError } from "../system";
import { stageChecks, type TunnelCheckSettings } from "../tunnel-check";

const SESSION_ID = /^[0-9a-f]{32}$/;

export interface OpenVpnConsumerOptions {
  key: IdentityKey;
  /** A private directory for the short-lived credentials file and the management socket (`<data-dir>/run`). */
  runDir: string;
  /** Run openvpn in this network namespace (tests and the demo). */
  netns?: string;
  /** How long the tunnel may take to come up. Default 20 s. */
  connectTimeoutMs?: number;
  /** The tun device's name, which the kill switch lets through. Default mystc0. */
  device?: string;
  /**
   * Default true: all traffic is routed into the tunnel (`redirect-gateway def1`). False: the
   * tunnel comes up without touching the routes (confined apps route into it themselves).
   */
  routeAll?: boolean;
  /**
   * A consumer daemon's spare openvpn (config `openvpnSpare`, spare.ts): taken by the next connection (instead of
   * one started while its session is negotiated), refilled once that connection is settled.
   */
  spare?: OpenVpnSpare;
  /** What the stage checks ask through the tunnel (services/tunnel-check.ts); they run only when the tunnel routes everything. */
  tunnelCheck?: TunnelCheckSettings;
  log?: Logger;
}

/**
 * The consumer side of OpenVPN: starts `openvpn` (while the session is negotiated, when the session
 * asks it to prepare), gives it its config on its input and the credentials in a private file
 * (0600, removed once connected), waits for it to say the tunnel is up, and routes all traffic through the
 * tunnel (`redirect-gateway def1`, set by the client whatever the provider pushes; openvpn keeps a host
 * route to the provider's endpoint via the consumer's own gateway).
 */
export class OpenVpnConsumerService implements ConsumerService {
  readonly type = "openvpn";
  /**
   * openvpn processes started while sessions are negotiated, waiting for their config on a FIFO:
   * interchangeable (nothing of a session is in them yet), taken first come first served.
   */
  readonly #ready: WaitingOpenVpn[] = [];

  constructor(private readonly o: OpenVpnConsumerOptions) {}

  /**
   * An openvpn for the session being negotiated, waiting for its config on a FIFO: the spare (when the daemon keeps
   * one), else one started now (`ip netns exec`, setpriv, openvpn's own start-up). `connect` writes the config there
   * and openvpn starts connecting at once. `discard` stops it.
   */
  prepare(): void {
    try {
      requireNetworkCapabilities("connecting an OpenVPN tunnel", { netns: this.o.netns, why: "to create its tun device and routes" });
      this.#ready.push(this.#waiting());
    } catch {
      // `connect` says why.
    }
  }

  async discard(): Promise<void> {
    await this.#ready.shift()?.process.stop();
    this.o.spare?.refill();
  }

  /** An openvpn waiting for its config, with the names of its files: the spare's, or one started now. */
  #waiting(): WaitingOpenVpn {
    return this.o.spare?.take(this.o.netns) ?? launchWaiting({ runDir: this.o.runDir, netns: this.o.netns, log: this.o.log ?? silentLogger });
  }

  async consumerData(): Promise<unknown> {
    return { client: "myst-openvpn/1" };
  }

  get device(): string {
    return this.o.device ?? "mystc0";
  }

  /** The tun device and the provider's UDP endpoint: what the kill switch lets through. */
  async plan(session: { id: string; serviceConfig: unknown }): Promise<TunnelPlan> {
    const config = checked(session);
    if (isIP(config.remote) === 0)
      throw new TunnelError(
        "ENDPOINT_NOT_IP",
        `the provider's endpoint "${config.remote}" is not an IP address: the kill switch cannot let it through (connect with --no-kill-switch to accept it)`,
      );
    return {
      device: this.device,
      endpoints: [{ address: config.remote, port: config.port, protocol: config.protocol }],
      dns: (config.dns ?? []).filter((a) => isIP(a) !== 0),
      ipv6: config.ipv6 ?? false,
    };
  }

  connect(session: ConnectTarget): Promise<Tunnel> {
    return this.#connect(session);
  }

  /**
   * `connect` with the kill switch armed beside it (`guard`): openvpn is given its config at once, with
   * `management-hold`, so it reads it and opens its management socket while the rules are armed, then holds before it
   * does anything on the network (its link socket, a name lookup, the tun device and routes all come after the hold in
   * openvpn's `init_instance`). The hold is released once the routes are recorded and the rules are in force; when
   * either fails, openvpn is stopped without having sent anything.
   */
  connectBeside(session: ConnectTarget, guard: TunnelGuard): Promise<Tunnel> {
    return this.#connect(session, guard);
  }

  async #connect(session: ConnectTarget, guard?: TunnelGuard): Promise<Tunnel> {
    requireNetworkCapabilities("connecting an OpenVPN tunnel", { netns: this.o.netns, why: "to create its tun device and routes" });
    program("openvpn");
    const config = checked(session);
    const password = Buffer.from(this.o.key.signProtocol(authMessage(session.id))).toString("base64");
    // The openvpn started while the session was negotiated, or one started now.
    const { process, files, launched } = this.#ready.shift() ?? this.#waiting();
    const removeSecrets = () => fs.rmSync(files.auth, { force: true });
    // Up when openvpn says so on its output, the moment it does (stock openvpn's own signal): its
    // management socket, polled until it opens, would add up to a polling period to every connect.
    const up = waitInitialized(process, this.o.connectTimeoutMs ?? 20_000);
    up.catch(() => undefined);
    let rulesFailed: unknown;
    try {
      fs.writeFileSync(files.auth, `${session.id}\n${password}\n`, { mode: 0o600 });
      await launched;
      if (!process.running) throw process.explain("openvpn exited before it was given its config");
      const hold = guard !== undefined;
      await traced(
        "openvpn: config written (once openvpn opened its FIFO)",
        process.configure(clientConfig(config, files, this.device, this.o.routeAll !== false, config.ipv6 === true, hold)),
      );
      if (hold) {
        const rules = Promise.all([guard.routesKept, guard.armed]).catch((err) => {
          rulesFailed = err;
          throw err;
        });
        const [management] = await Promise.all([process.attach(), rules]);
        // `hold off` first: a restart of openvpn's own (a reconnect under persist-tun) does not hold again.
        await traced("openvpn: hold released (the rules in force)", management.commands(["hold off", "hold release"]));
        await up;
      } else await Promise.all([process.attach(), up]);
    } catch (err) {
      await process.stop();
      removeSecrets();
      // The kill switch's own error (its arming refused) is the session's as it is, not openvpn's.
      throw err instanceof TunnelError || err === rulesFailed ? err : process.explain((err as Error).message);
    } finally {
      removeSecrets();
      // The next connection's openvpn, started once this one is settled (not beside it).
      this.o.spare?.refill();
    }
    // State changes (a reconnect to a restarted server) tell the tunnel whether it is up.
    process.management?.command("state on").catch(() => undefined);
    const tunnel = new OpenVpnTunnel(
      process,
      (config.dns ?? []).filter((a) => isIP(a) !== 0),
      config.ipv6 ?? false,
    );
    // The stage checks, as WireGuard's: to the provider's resolver (pushed, on its tunnel address) and the check's
    // target, through the tunnel only when it routes everything.
    tunnel.check = stageChecks(this.o.tunnelCheck, this.o.routeAll !== false ? tunnel.dns.find((a) => isIP(a) === 4) : undefined, this.o.netns);
    return tunnel;
  }
}

/** The provider's words, fenced: the session id becomes part of file names, the config part of a root-run config. */
function checked(session: { id: string; serviceConfig: unknown }): OpenVpnServiceConfig {
  if (!SESSION_ID.test(session.id)) throw new TunnelError("BAD_SESSION_ID", "the provider's session id is not 32 hex characters");
  if (!checkServiceConfig.Check(session.serviceConfig)) {
    throw new TunnelError("BAD_SERVICE_CONFIG", "the provider's OpenVPN service config is malformed");
  }
  // Its resolver at its endpoint would be reached outside the tunnel, in clear text (docs/privacy.md).
  refuseResolversOutsideTunnel(session.serviceConfig.dns ?? [], [{ address: session.serviceConfig.remote }]);
  return session.serviceConfig;
}

class OpenVpnTunnel implements Tunnel {
  /** The stage checks through the tunnel (services/tunnel-check.ts); absent where the tunnel does not route this namespace. */
  check?: (o: { maxBytes: number; timeoutMs: number }) => Promise<TunnelCheck>;
  #down?: (reason: string) => void;
  #stopping = false;
  #stats = { bytesIn: 0, bytesOut: 0 };
  /** The link's counts as last read; they start again at 0 when openvpn reconnects. */
  #link = { received: 0, sent: 0 };
  #meter: NodeJS.Timeout;

  #up = true;

  constructor(
    readonly process: OpenVpnProcess,
    readonly dns: string[],
    readonly ipv6: boolean,
  ) {
    // CONNECTED, or reconnecting to a restarted server (RECONNECTING, WAIT, AUTH, GET_CONFIG …).
    process.management?.on("state", (s: { state: string }) => (this.#up = s.state === "CONNECTED"));
    process.once("exit", (code) => {
      this.#up = false;
      clearInterval(this.#meter);
      if (!this.#stopping) this.#down?.(process.explain(`openvpn exited (${code})`).message);
    });
    // The client's own meter: link bytes from `status`, the same quantity the provider meters
    // (its CLIENT_LIST byte counts are of the encrypted UDP link, overhead included).
    this.#meter = setInterval(() => void this.refresh(), 1000);
    this.#meter.unref();
  }

  async refresh(): Promise<void> {
    const lines = await this.process.management?.command("status", true).catch(() => null);
    if (!lines) return;
    const value = (name: string) => Number(lines.find((l) => l.startsWith(`${name},`))?.split(",")[1] ?? NaN);
    const received = value("TCP/UDP read bytes");
    const sent = value("TCP/UDP write bytes");
    if (!Number.isFinite(received) || !Number.isFinite(sent)) return;
    // A reconnect (the provider's server restarted) starts the link's counts again: keep the total.
    const step = (now: number, before: number) => (now >= before ? now - before : now);
    this.#stats = { bytesIn: this.#stats.bytesIn + step(received, this.#link.received), bytesOut: this.#stats.bytesOut + step(sent, this.#link.sent) };
    this.#link = { received, sent };
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  isUp(): boolean {
    return this.#up && this.process.running;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#meter);
    await this.process.stop();
  }

  onDown(listener: (reason: string) => void): void {
    this.#down = listener;
  }

  stats(): { bytesIn: number; bytesOut: number } {
    return this.#stats;
  }
}

/**
 * Resolves when openvpn prints "Initialization Sequence Completed" (the tunnel is up and routed);
 * rejects when the provider refuses the credentials, openvpn exits, or `timeoutMs` passes.
 * Listening starts before the process does, so no line is missed.
 */
function waitInitialized(process: OpenVpnProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new TunnelError("HANDSHAKE_TIMEOUT", `the tunnel did not come up within ${timeoutMs} ms`)), timeoutMs);
    const onLine = (line: string) => {
      if (line.includes("Initialization Sequence Completed")) done();
      else if (/AUTH_FAILED/.test(line)) done(new TunnelError("AUTH_REFUSED", "the provider refused the session credentials"));
    };
    const onExit = () => done(process.explain("openvpn exited before the tunnel came up"));
    function done(err?: Error) {
      clearTimeout(timer);
      process.off("line", onLine);
      process.off("exit", onExit);
      if (err) reject(err);
      else resolve();
    }
    process.on("line", onLine);
    process.once("exit", onExit);
  });
}

function clientConfig(
  c: OpenVpnServiceConfig,
  files: { auth: string; socket: string },
  device: string,
  routeAll: boolean,
  ipv6: boolean,
  hold: boolean,
): string {
  return [
    "# given by myst to this session's openvpn through a FIFO (never written to disk)",
    "client",
    `dev ${device}`,
    "dev-type tun",
    `proto ${c.protocol}`,
    `remote ${c.remote} ${c.port}`,
    "nobind",
    "remote-cert-tls server",
    "tls-version-min 1.2",
    `data-ciphers ${c.cipher}`,
    `auth-user-pass ${files.auth}`,
    'pull-filter ignore "redirect-gateway"',
    // Not `local`: openvpn must add a host route to the provider via our own gateway, or once the
    // default route points into the tunnel its own packets follow it (the provider is routers
    // away on a real network, never on our link).
    // `ipv6`: the provider carries IPv6, so IPv6 is routed into the tunnel too (::/3, 2000::/4, …).
    ...(routeAll ? [ipv6 ? "redirect-gateway def1 ipv6" : "redirect-gateway def1"] : []),
    `management ${files.socket} unix`,
    // Beside the kill switch's arming: nothing is sent before the node releases it (connectBeside).
    ...(hold ? ["management-hold"] : []),
    "auth-retry none",
    "explicit-exit-notify 1",
    // A server that restarts (crash, supervisor) is reconnected to in place: the tun device and
    // its routes stay while openvpn reconnects, so nothing falls back to our own route meanwhile.
    "persist-tun",
    "connect-retry 1 2",
    "connect-retry-max 5",
    // The provider bills the bytes it sends: datagrams dropped here because the socket buffer
    // overflowed (208 KiB by default) would be paid for and never received (capped by rmem_max).
    "rcvbuf 2097152",
    "verb 3",
    "<ca>",
    c.ca.trim(),
    "</ca>",
    "<tls-crypt>",
    c.tlsCrypt.trim(),
    "</tls-crypt>",
    "",
  ].join("\n");
}
