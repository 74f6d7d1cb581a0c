import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import { silentLogger, type Logger } from "../../log/logger";
import { ManagementClient } from "./management";
import { type RemoteChild, spawner } from "../spawner";
import { inNetns, program, TunnelError } from "../system";
import { parentDeathSignal, recordPid, stopStale, terminate } from "../supervision";

export interface OpenVpnProcessOptions {
  /** The config file; it must say `management <socket> unix`. */
  configFile: string;
  /**
   * `configFile` is made a FIFO (0600) that openvpn opens and waits on until `configure` writes the
   * config into it: openvpn is started before its config is known. (Not its stdin: node gives a
   * child a socket, not a pipe, and openvpn cannot open /dev/stdin on a socket.)
   */
  configFifo?: boolean;
  /** Started by the spawning helper (services/spawner.ts): no fork of the node (a consumer's tunnel, started while a session is negotiated). */
  viaHelper?: boolean;
  managementSocket: string;
  /**
   * Where to record the pid. A pid file left by a node that died names an openvpn that may still
   * run (carrying unbilled traffic, holding the tun device): `start` stops it first.
   */
  pidFile?: string;
  netns?: string;
  log?: Logger;
  /** How long to wait for the management socket. Default 10 s. */
  startTimeoutMs?: number;
}

/**
 * One `openvpn` process and its management connection. Keeps the last lines of its log to
 * explain a failure (port in use, TLS error, auth failure) with an error a person can act on.
 */
export class OpenVpnProcess extends EventEmitter<{ line: [line: string]; exit: [code: number | null] }> {
  child?: ChildProcess | RemoteChild;
  management?: ManagementClient;
  readonly recent: string[] = [];
  #exited?: Promise<number | null>;
  /** `configure` has begun to give it its config (with `configFifo`): until then it holds nothing of a session. */
  #configured = false;
  /** Resolves once openvpn printed that its management socket listens. */
  #listening?: Promise<void>;

  constructor(readonly options: OpenVpnProcessOptions) {
    super();
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts openvpn and connects to its management interface (once openvpn has read its config). */
  async start(): Promise<ManagementClient> {
    await this.launch();
    return this.attach();
  }

  /**
   * Starts the openvpn process only. With `configFifo` it then waits for its config
   * (`configure`): started while a session is negotiated, it has paid its start-up by then.
   */
  async launch(): Promise<void> {
    if (this.options.pidFile) {
      const config = this.options.configFile;
      await stopStale(
        this.options.pidFile,
        (argv) => argv.some((a) => a.endsWith("openvpn")) && argv.includes(config),
        this.options.log ?? silentLogger,
        "an openvpn",
      );
    }
    fs.rmSync(this.options.managementSocket, { force: true });
    // Tied to our life: when this node dies (even by SIGKILL) the kernel sends openvpn SIGTERM
    // (setpriv's parent-death signal survives the exec of sh, of `ip netns exec` and of openvpn).
    const openvpn = inNetns(this.options.netns, [program("openvpn"), "--config", this.options.configFile]);
    let argv = [...parentDeathSignal(), ...openvpn];
    if (this.options.configFifo) {
      fs.rmSync(this.options.configFile, { force: true });
      // The FIFO is made by the same start, then openvpn is exec'd: one spawn, not a mkfifo and a spawn one after the
      // other (about 5 ms on the connect path: docs/connect-path.md, session 11). coreutils' mkfifo (essential on every
      // Debian-like system), through sh: no program of its own to look up. `configure` waits until openvpn opens it.
      argv = [...parentDeathSignal(), program("sh"), "-c", 'mkfifo -m 600 -- "$0" && exec "$@"', this.options.configFile, ...openvpn];
    }
    const child = this.options.viaHelper ? spawner.launch(argv) : spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    recordPid(child, this.options.pidFile);
    const log = this.options.log ?? silentLogger;
    // Whole lines only: a chunk may end inside one (what waits for a line must see it whole).
    const lines = () => {
      let rest = "";
      return (chunk: Buffer) => {
        const parts = (rest + chunk.toString()).split("\n");
        rest = parts.pop() ?? "";
        for (const line of parts) {
          if (!line.trim()) continue;
          this.recent.push(line);
          if (this.recent.length > 60) this.recent.shift();
          log.debug({ openvpn: line }, "openvpn");
          this.emit("line", line);
        }
      };
    };
    this.#listening = new Promise((resolve) => {
      const onLine = (line: string) => {
        if (!line.includes("MANAGEMENT: unix domain socket listening")) return;
        this.off("line", onLine);
        resolve();
      };
      this.on("line", onLine);
    });
    child.stdout!.on("data", lines());
    child.stderr!.on("data", lines());
    this.#exited = new Promise((resolve) =>
      child.once("exit", (code) => {
        if (this.options.pidFile) fs.rmSync(this.options.pidFile, { force: true });
        this.management?.close();
        this.emit("exit", code);
        resolve(code);
      }),
    );
  }

  /**
   * Writes the config into the FIFO an openvpn started with `configFifo` waits on (it reads it to
   * the end, then starts), and removes the FIFO. Never blocks the event loop: until the FIFO is made (ENOENT) and
   * openvpn opens it (ENXIO), opening it to write fails and is tried again every millisecond while openvpn runs.
   */
  async configure(config: string, timeoutMs = 10_000): Promise<void> {
    if (!this.options.configFifo) throw new TunnelError("OPENVPN_FAILED", "this openvpn was not started to wait for its config");
    let fd: number | undefined;
    // Until the start has made the FIFO (ENOENT) and openvpn has opened it (ENXIO), a writer's open fails.
    for (const deadline = Date.now() + timeoutMs; fd === undefined; ) {
      try {
        fd = fs.openSync(this.options.configFile, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== "ENXIO" && code !== "ENOENT") || !this.running || Date.now() > deadline)
          throw this.explain(`openvpn is not waiting for its config (${(err as Error).message})`);
        await new Promise((r) => setTimeout(r, 1));
      }
    }
    this.#configured = true;
    try {
      // Only ever into the FIFO: the config is never written to a file (the run directory is private; this holds all the same).
      if (!fs.fstatSync(fd).isFIFO()) throw new TunnelError("OPENVPN_FAILED", `${this.options.configFile} is not the FIFO openvpn waits on`);
      const bytes = Buffer.from(config);
      // A pipe takes 64 KiB at once; a client config is a few KiB. Written in a loop all the same.
      for (let at = 0; at < bytes.length; ) {
        try {
          at += fs.writeSync(fd, bytes, at);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
        }
      }
    } finally {
      fs.closeSync(fd);
      fs.rmSync(this.options.configFile, { force: true });
    }
  }

  /** Connects to the management interface of the started openvpn, or fails with why it exited. */
  async attach(): Promise<ManagementClient> {
    const management = new ManagementClient();
    const exitedEarly = this.#exited!.then((code) => {
      throw this.explain(`openvpn exited (${code}) while starting`);
    });
    await Promise.race([
      management.connect(this.options.managementSocket, this.options.startTimeoutMs ?? 10_000, { listening: this.#listening, gone: this.#exited }),
      exitedEarly,
    ]);
    exitedEarly.catch(() => undefined);
    this.management = management;
    return management;
  }

  /**
   * Stops openvpn and waits for it to exit, so its port is free again: TERM, then KILL after 5 s. One still waiting
   * for its config is killed at once: it holds nothing yet (no tun device, socket or peer), and blocked in the FIFO's
   * open it ignores TERM, which cost every discarded or spare openvpn the 5 s.
   *
   * A client given its config (`configure`) is stopped as soon as its exit notification (`explicit-exit-notify`) has
   * gone out, not a second later. On TERM openvpn queues the notification (the EXIT control message, or OCC_EXIT on
   * the data channel with an older server), writes it in the next step of its event loop, and then waits for its
   * once-a-second timer to exit (1.0–1.2 s measured); it sends the notification only once meanwhile (its control
   * channel's first retransmission is 2 s away), so that wait adds nothing the provider receives. A second TERM, once
   * the notification is out, ends the wait: it exits at once, tearing down as on any exit (routes, tun device). The
   * signals go through the management interface, which openvpn reads once per loop step, before the datagram that
   * step writes, and acts on after it: the first starts the notification; `pid`, sent once that is answered, is read
   * a step later (the step that writes the notification, or the one after when a packet of the tunnel's was waiting
   * first); the second TERM, sent once `pid` is answered, later still. Without its management interface, or when it
   * does not answer within `answerMs`, TERM and KILL as above.
   */
  async stop(answerMs = 2000): Promise<void> {
    const management = this.management;
    if (this.running && management && this.#configured) {
      let timer: NodeJS.Timeout | undefined;
      const signals = (async () => {
        for (const command of ["signal SIGTERM", "pid", "signal SIGTERM"]) await management.command(command);
      })();
      await Promise.race([signals, new Promise((resolve) => (timer = setTimeout(resolve, answerMs)))]).catch(() => {
        // The interface closed: openvpn is exiting already (waited for below).
      });
      clearTimeout(timer);
      signals.catch(() => undefined);
    }
    if (this.child) await terminate(this.child, this.options.configFifo && !this.#configured ? 0 : 5000);
    fs.rmSync(this.options.managementSocket, { force: true });
    if (this.options.configFifo) fs.rmSync(this.options.configFile, { force: true });
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** An error from what openvpn logged. */
  explain(fallback: string): TunnelError {
    const log = this.recent.join("\n");
    // Not its notes: "Note: --cipher is not set … fallback …" is printed by every start.
    const last = this.recent.filter((l) => /error|fail|cannot|denied/i.test(l) && !/\bNote:/.test(l)).pop() ?? this.recent[this.recent.length - 1] ?? "";
    if (/Address already in use/.test(log)) return new TunnelError("PORT_IN_USE", `openvpn cannot bind its port: address already in use (${last.trim()})`);
    if (/AUTH_FAILED|auth-failure/i.test(log)) return new TunnelError("AUTH_REFUSED", "the provider refused the session credentials");
    if (/TUNSETIFF.*(Device or resource busy|errno=16)/i.test(log)) {
      return new TunnelError(
        "TUN_BUSY",
        `openvpn cannot open its tun device: another process holds it (an openvpn left by a crashed node? see \`ip -d link\` and the service's openvpn.pid) (${last.trim()})`,
      );
    }
    if (/Operation not permitted|Cannot open TUN|ERROR: Cannot ioctl TUNSETIFF/i.test(log)) {
      return new TunnelError(
        "CAPABILITY_MISSING",
        `openvpn could not create its tun device: it needs CAP_NET_ADMIN (ambient, when myst is not root) (${last.trim()})`,
      );
    }
    if (/TLS handshake failed|TLS key negotiation failed/i.test(log))
      return new TunnelError("HANDSHAKE_TIMEOUT", "the TLS handshake with the provider did not complete");
    return new TunnelError("OPENVPN_FAILED", `${fallback}${last ? `: ${last.trim()}` : ""}`);
  }
}
