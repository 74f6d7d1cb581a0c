import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import { silentLogger, type Logger } from "../../log/logger";
import { parentDeathSignal, recordPid, stopStale, terminate } from "../supervision";
import { inNetns, program, TunnelError } from "../system";
import { answers } from "./device-claim";
import { type RemoteChild, spawner } from "../spawner";
import { uapiSocket, WireGuardUapi } from "./uapi";

/** A network interface name wireguard-go accepts and that can become a socket's file name. */
export const DEVICE_NAME = /^[A-Za-z0-9_-]{1,15}$/;

export interface WireGuardProcessOptions {
  /** The interface to create (and its control socket's name, shared by every namespace: make it unique). */
  device: string;
  /** A pid file: a wireguard-go left by a node that died (holding the interface) is stopped first. */
  pidFile?: string;
  netns?: string;
  log?: Logger;
  /** How long to wait for the control socket. Default 10 s. */
  startTimeoutMs?: number;
  /** Started by the spawning helper (services/spawner.ts): no fork of the node (a consumer's tunnel, started while a session is negotiated). */
  viaHelper?: boolean;
}

/**
 * One userspace `wireguard-go -f <device>` and its control socket, tied to the node's life like
 * openvpn (parent-death signal, pid file, a stale one stopped). The kernel module would need no
 * process; these machines have none, so this is the one implementation (docs/ARCHITECTURE.md).
 */
export class WireGuardProcess extends EventEmitter<{ exit: [code: number | null] }> {
  child?: ChildProcess | RemoteChild;
  readonly recent: string[] = [];
  readonly uapi: WireGuardUapi;

  constructor(readonly options: WireGuardProcessOptions) {
    super();
    if (!DEVICE_NAME.test(options.device)) throw new TunnelError("WIREGUARD_FAILED", `"${options.device}" is not an interface name (1-15 of A-Z a-z 0-9 _ -)`);
    this.uapi = new WireGuardUapi(uapiSocket(options.device));
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    const device = this.options.device;
    const log = this.options.log ?? silentLogger;
    if (this.options.pidFile)
      await stopStale(this.options.pidFile, (argv) => argv.some((a) => a.endsWith("wireguard-go")) && argv.includes(device), log, "a wireguard-go");
    const socket = uapiSocket(device);
    if (await answers(socket))
      throw new TunnelError("DEVICE_IN_USE", `another wireguard-go already serves interface ${device} (${socket}): choose another interface name`);
    const argv = [...parentDeathSignal(), ...inNetns(this.options.netns, [program("wireguard-go", "wireguard-go"), "-f", device])];
    const env = { ...process.env, LOG_LEVEL: process.env.MYST_WIREGUARD_LOG_LEVEL ?? "error" };
    const child = this.options.viaHelper ? spawner.launch(argv, { env }) : spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env });
    this.child = child;
    recordPid(child, this.options.pidFile);
    const onLine = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) {
        if (!line.trim() || /[│┌└]/.test(line)) continue;
        if (!/^DEBUG/.test(line)) {
          this.recent.push(line);
          if (this.recent.length > 30) this.recent.shift();
        }
        log.debug({ wireguard: line }, "wireguard-go");
      }
    };
    child.stdout!.on("data", onLine);
    child.stderr!.on("data", onLine);
    child.once("exit", (code) => {
      if (this.options.pidFile) fs.rmSync(this.options.pidFile, { force: true });
      this.emit("exit", code);
    });
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 10_000);
    // Served by this wireguard-go, not merely answered: another one of the same name in another
    // namespace, started at the same moment, would answer too, and configuring it would hand our
    // keys and peers to someone else's interface. This one then exits ("unix socket in use").
    while (!(await answers(socket)) || !servedBy(child.pid, socket)) {
      if (!this.running) throw this.explain(`wireguard-go exited (${child.exitCode ?? child.signalCode}) while starting`);
      if (Date.now() > deadline) {
        await this.stop();
        throw new TunnelError("WIREGUARD_FAILED", `wireguard-go did not open ${socket} in time`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * Resolves once wireguard-go listens on UDP `port`. Its answer to `listen_port` does not say so:
   * it binds at once only when its device is up, and the device comes up on its own a few ms after
   * start (its TUN status probe; on this kernel even with the link down). Given before that, the
   * answer is errno=0 whatever the port; the bind comes when the device comes up, and if another
   * program holds the port it fails there, only logged ("Unable to update bind"): its device goes
   * back down with no socket and its port forgotten (`get` names none), and the next link up binds
   * a random port. Measured: 8 of 100 starts beside a held port answered errno=0
   * (docs/ARCHITECTURE.md). A socket of its own on the port is not proof alone: it binds IPv6 first
   * and closes that socket when IPv4 fails (a holder with IPv4 only). Its `get` is: `get` takes the
   * lock a bind holds, so it answers after that bind, naming the port only if it held. A port
   * another socket of its namespace holds is PORT_IN_USE; any other failure WIREGUARD_FAILED.
   */
  async listening(port: number, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const exited = () => this.explain(`wireguard-go exited (${this.child?.exitCode ?? this.child?.signalCode}) before it listened on UDP port ${port}`);
    for (;;) {
      if (!this.running) throw exited();
      const ours = udpSocketsOf(this.pid).some((s) => s.port === port && s.ours);
      let named: number | undefined;
      try {
        named = (await this.uapi.get()).listenPort;
      } catch (err) {
        throw this.running ? err : exited();
      }
      if (named === port && ours) return;
      if (named !== port) {
        // Forgotten: the bind failed (while it is to come, the device not up yet, the port is still named).
        if (udpSocketsOf(this.pid).some((s) => s.port === port && !s.ours))
          throw new TunnelError("PORT_IN_USE", `wireguard-go cannot bind UDP port ${port}: another socket holds it`);
        const why = this.recent.findLast((line) => /Unable to update bind/.test(line));
        throw new TunnelError(
          "WIREGUARD_FAILED",
          `wireguard-go did not listen on UDP port ${port} (it names ${named ?? "none"})${why ? `: ${why.trim()}` : ""}`,
        );
      }
      if (Date.now() > deadline) throw new TunnelError("WIREGUARD_FAILED", `wireguard-go did not listen on UDP port ${port} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Stops wireguard-go (TERM, then KILL after 5 s) and waits for it to exit; its interface goes with it. */
  async stop(): Promise<void> {
    if (this.child) await terminate(this.child);
  }

  explain(fallback: string): TunnelError {
    const last = this.recent[this.recent.length - 1]?.trim() ?? "";
    if (/operation not permitted/i.test(last))
      return new TunnelError(
        "CAPABILITY_MISSING",
        `wireguard-go could not create its interface: it needs CAP_NET_ADMIN (ambient, when myst is not root) (${last})`,
      );
    if (/unix socket in use/i.test(last))
      return new TunnelError(
        "DEVICE_IN_USE",
        `another wireguard-go serves ${uapiSocket(this.options.device)} (the interface name ${this.options.device}): choose another`,
      );
    if (/busy|exists/i.test(last)) return new TunnelError("TUN_BUSY", `wireguard-go cannot create ${this.options.device}: it exists already (${last})`);
    return new TunnelError("WIREGUARD_FAILED", `${fallback}${last ? `: ${last}` : ""}`);
  }
}

/**
 * Whether the unix socket listening at `socket` is one of process `pid`'s: its inode, as the
 * process's own namespace lists it (/proc/<pid>/net/unix: "Num RefCount Protocol Flags Type St
 * Inode Path"), is among the process's open files.
 */
function servedBy(pid: number | undefined, socket: string): boolean {
  if (!pid) return false;
  try {
    const inodes = fs
      .readFileSync(`/proc/${pid}/net/unix`, "utf8")
      .split("\n")
      .map((line) => line.trim().split(/\s+/))
      .filter((f) => f[7] === socket)
      .map((f) => `socket:[${f[6]}]`);
    if (inodes.length === 0) return false;
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (inodes.includes(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))) return true;
      } catch {
        // closed meanwhile
      }
    }
    return false;
  } catch {
    return false;
  }
}

/**
 * The UDP sockets (IPv4 and IPv6) of process `pid`'s network namespace, by local port, and whether
 * each is one of its own open files: /proc/<pid>/net/udp{,6} ("sl local_address rem_address st
 * tx:rx tr:when retrnsmt uid timeout inode", the address as hex "ADDR:PORT"). Empty when it is gone.
 */
export function udpSocketsOf(pid: number | undefined): { port: number; ours: boolean }[] {
  if (!pid) return [];
  const sockets = new Map<string, number>();
  for (const table of ["udp", "udp6"]) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${table}`, "utf8");
    } catch {
      continue; // gone, or no IPv6 here
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      const port = f[1]?.split(":")[1];
      if (port && f[9]) sockets.set(`socket:[${f[9]}]`, Number.parseInt(port, 16));
    }
  }
  const own = new Set<string>();
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        own.add(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        // closed meanwhile (a control-socket connection)
      }
    }
  } catch {
    return [];
  }
  return [...sockets].map(([inode, port]) => ({ port, ours: own.has(inode) }));
}
