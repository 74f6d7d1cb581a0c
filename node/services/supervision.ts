import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { AbortError, retry } from "../lifecycle/retry";
import type { Logger } from "../log/logger";
import { type Capability, heldCapabilities } from "./capabilities";
import { program } from "./system";

/**
 * What every supervised tunnel process (openvpn, wireguard-go, dnsmasq) shares: tied to the node's
 * life by a parent-death signal, recorded in a pid file, and a process a dead node left behind
 * stopped before a new one starts.
 */

/** `setpriv --pdeathsig TERM` where util-linux has it; nothing otherwise (the pid file still cleans up). */
export function parentDeathSignal(): string[] {
  try {
    return [program("setpriv", "util-linux"), "--pdeathsig", "TERM"];
  } catch {
    return [];
  }
}

/**
 * `setpriv` that makes the program user nobody with only `capabilities` (ambient, so they survive
 * the exec) and then sets its parent-death signal. For a program that would drop to nobody itself
 * (dnsmasq): the kernel clears the parent-death signal on a change of user, so a signal set before
 * the drop does not survive it, and the program outlives a SIGKILLed node. Here nothing changes
 * credentials after the signal is set. A node that is not root is its own unprivileged user
 * already: then only the capabilities (those it holds) and the signal. Run it inside `ip netns exec`, right
 * before the program. Empty when util-linux's setpriv is missing (the pid file still cleans up).
 */
export function unprivilegedTiedToParent(capabilities: string[]): string[] {
  let setpriv: string;
  try {
    setpriv = program("setpriv", "util-linux");
  } catch {
    return [];
  }
  const held = heldCapabilities();
  if (held.uid !== 0) {
    // The node runs as its own unprivileged user already (docs/running-without-root.md): it cannot
    // change user, and needs not. The program keeps only those of `capabilities` the node passes on.
    const kept = capabilities.filter((c) => held.children.has(`CAP_${c.toUpperCase()}` as Capability));
    const only = ["-all", ...kept.map((c) => `+${c}`)].join(",");
    return [setpriv, `--inh-caps=${only}`, `--ambient-caps=${only}`, "--pdeathsig", "TERM"];
  }
  const { uid, gid } = nobody();
  const caps = capabilities.map((c) => `+${c}`).join(",");
  return [setpriv, `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", `--inh-caps=${caps}`, `--ambient-caps=${caps}`, "--pdeathsig", "TERM"];
}

/** User nobody's ids from /etc/passwd (65534 where it does not say). */
function nobody(): { uid: number; gid: number } {
  try {
    const line = fs
      .readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.startsWith("nobody:"));
    const [, , uid, gid] = line?.split(":") ?? [];
    if (/^\d+$/.test(uid ?? "") && /^\d+$/.test(gid ?? "")) return { uid: Number(uid), gid: Number(gid) };
  } catch {
    // no passwd file: the usual ids
  }
  return { uid: 65534, gid: 65534 };
}

/** Stops a process we started: TERM, then KILL if it lingers `graceMs`; resolves once it exited. */
export async function terminate(
  child: Pick<ChildProcess, "exitCode" | "signalCode" | "kill"> & { once(event: "exit", listener: () => void): unknown },
  graceMs = 5000,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Writes `child`'s pid to `pidFile` (mode 600) once it has one, so a later start can stop it (stopStale). */
export function recordPid(
  child: { pid?: number; exitCode: number | null; once(event: "spawn", listener: () => void): unknown },
  pidFile: string | undefined,
): void {
  if (!pidFile) return;
  const record = () => child.pid && child.exitCode === null && fs.writeFileSync(pidFile, `${child.pid}\n`, { mode: 0o600 });
  if (child.pid) record();
  else child.once("spawn", record);
}

/**
 * Stops the process a pid file names, if it is still ours (`isOurs` looks at its argv). A pid the
 * kernel gave to another program since is left alone.
 */
export async function stopStale(pidFile: string, isOurs: (argv: string[]) => boolean, log: Logger, what: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile, "utf8").trim());
  } catch {
    return;
  }
  fs.rmSync(pidFile, { force: true });
  const ours = () => {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      const state = /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
      return state !== "Z" && isOurs(argv);
    } catch {
      return false;
    }
  };
  if (!Number.isSafeInteger(pid) || pid <= 1 || !ours()) return;
  log.warn({ pid, pidFile }, `stopping ${what} left running by a node that died`);
  process.kill(pid, "SIGTERM");
  // Gone means reaped or a zombie: an exiting process loses its argv before it closes its files,
  // so "no longer ours" would come too early, while it still holds its ports.
  const gone = () => {
    try {
      return /^State:\s+[ZX]/m.test(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    } catch {
      return true;
    }
  };
  const deadline = Date.now() + 5000;
  while (!gone()) {
    if (Date.now() > deadline) {
      process.kill(pid, "SIGKILL");
      await new Promise((r) => setTimeout(r, 100));
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface SupervisorOptions {
  /** The process, for the log: "openvpn", "wireguard-go", "the tunnel resolver (dnsmasq)". */
  what: string;
  log: Logger;
  /** What the service does at once when its process is gone (carry the sessions' counters over…). */
  down?: () => void;
  /** Starts the process again, and whatever the service rebuilds with it; throws if it did not come up. */
  relaunch: () => Promise<void>;
}

/**
 * Restarts a supervised process that exits while its service runs: at once (clients are waiting),
 * then, while it keeps failing, after 250 ms doubling to 5 s, until it runs again or the service
 * stops. One restart at a time: a process that came up and exited before its restart finished
 * (the service was still rebuilding around it) is restarted once that restart is done.
 */
export class Supervisor {
  /** When each restart succeeded (ms since the epoch), for tests and status. */
  readonly restarts: number[] = [];
  #stop = new AbortController();
  #restarting?: Promise<void>;
  #exitedAgain?: { code: number | null; recent: string[] };

  constructor(private readonly o: SupervisorOptions) {}

  /** The service starts: from now on an exit is restarted. */
  start(): void {
    this.#stop = new AbortController();
  }

  /**
   * The service stops: nothing is restarted any more, and a restart under way gives up. Resolves
   * once a relaunch in progress has finished, so that the service then stops the process it made.
   */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#restarting;
  }

  get stopping(): boolean {
    return this.#stop.signal.aborted;
  }

  /**
   * The supervised process exited (`recent`: its last lines of output, for the log). Tell it only of
   * a process that came up: one that fails while starting is its `relaunch`'s failure.
   */
  exited(code: number | null, recent: string[]): void {
    if (this.stopping) return;
    if (this.#restarting) {
      this.#exitedAgain = { code, recent };
      return;
    }
    const { signal } = this.#stop;
    this.o.log.error({ code, log: recent.slice(-5) }, `${this.o.what} exited; restarting`);
    try {
      this.o.down?.();
    } catch (err) {
      this.o.log.error({ err: (err as Error).message }, `${this.o.what}: carrying its sessions over failed`);
    }
    this.#restarting = retry(
      async () => {
        if (signal.aborted) throw new AbortError("the service stopped");
        await this.o.relaunch();
      },
      {
        attempts: Number.POSITIVE_INFINITY,
        baseMs: 250,
        maxMs: 5000,
        signal,
        onFailure: (err, attempt) => this.o.log.error({ attempt, err: (err as Error).message }, `restarting ${this.o.what} failed; retrying`),
      },
    )
      .then(() => {
        this.restarts.push(Date.now());
        this.o.log.info({}, `${this.o.what} restarted`);
      })
      // Only a stop ends the retrying: nothing to report.
      .catch(() => undefined)
      .finally(() => {
        this.#restarting = undefined;
        const again = this.#exitedAgain;
        this.#exitedAgain = undefined;
        if (again) this.exited(again.code, again.recent);
      });
  }
}

/**
 * What a node changes outside itself that no process holds (firewall chains, an IFB interface)
 * outlives the node: one killed outright (SIGKILL, OOM) would leave it until its next start. So
 * `arm` starts a small `sh` that waits on a pipe only this node holds (libuv opens it close-on-exec)
 * and then runs the undoing commands: at the node's death, however it dies, the kernel closes
 * the pipe, `read` sees its end, and the shell undoes the change and exits. A clean removal
 * `disarm`s it first (SIGKILL: it does nothing then) and undoes the change itself.
 */
export class UndoOnDeath {
  #shell?: ChildProcess;

  /** From now on `commands` (argv each; failures ignored) run when this node dies. */
  arm(commands: string[][]): void {
    this.#kill();
    const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
    // Signals meant for the node's process group or service (Ctrl-C, `kill -- -pgid`, a service
    // manager's TERM) do not stop it: it runs in a session of its own and ignores them, so it is
    // there to undo when the node dies of them. Only SIGKILL of the shell itself (disarm, or a
    // whole cgroup killed) stops it; the node's next start undoes what is left then.
    const script = ["trap '' HUP INT TERM", "while read -r _; do :; done", ...commands.map((argv) => `${argv.map(quote).join(" ")} 2>/dev/null`)].join("\n");
    const shell = spawn(program("sh", "dash"), ["-c", script], { stdio: ["pipe", "ignore", "ignore"], detached: true });
    shell.on("error", () => undefined);
    shell.stdin!.on("error", () => undefined);
    // It must not keep this node's event loop alive.
    shell.unref();
    (shell.stdin as unknown as { unref?: () => void }).unref?.();
    this.#shell = shell;
  }

  /** The change is undone by its owner: the shell goes without running anything. Resolves once it exited. */
  async disarm(): Promise<void> {
    const shell = this.#kill();
    if (shell) await new Promise((resolve) => shell.once("exit", resolve));
  }

  #kill(): ChildProcess | undefined {
    const shell = this.#shell;
    this.#shell = undefined;
    if (!shell || shell.exitCode !== null || shell.signalCode !== null) return undefined;
    shell.kill("SIGKILL");
    return shell;
  }
}
