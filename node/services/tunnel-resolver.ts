import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { silentLogger, type Logger } from "../log/logger";
import { inNetns, program, TunnelError } from "./system";
import { stopStale, Supervisor, terminate, unprivilegedTiedToParent } from "./supervision";

export interface TunnelResolverOptions {
  /** The provider's tunnel address: the resolver answers there only (never on the uplink). */
  listen: string;
  netns?: string;
  /** Refuse answers that point into private ranges (the provider's LAN block applied to names). Default true. */
  blockPrivate?: boolean;
  /** Drop AAAA answers: the tunnel carries no IPv6, so IPv6 addresses would only fail. Default false. */
  filterIpv6?: boolean;
  log?: Logger;
  /** How long dnsmasq may take to start. Default 10 s. */
  startTimeoutMs?: number;
  /**
   * Where to record dnsmasq's pid: one a node that died left running (still answering, and holding
   * the tunnel address's port 53, so a new one cannot bind it) is stopped at the next start. Only
   * needed where setpriv is missing: otherwise dnsmasq dies with the node (see `#argv`).
   */
  pidFile?: string;
}

/**
 * The resolver a provider serves its consumers through the tunnel: Debian's dnsmasq, listening on
 * the tunnel address only, forwarding to the provider's own upstream (its /etc/resolv.conf, as
 * `ip netns exec` shows it in a namespace). Supervised like openvpn (parent-death signal, pid file), but run
 * as user nobody from the start (`#argv`): restarted with backoff when
 * it exits while the service runs. The provider's LAN block holds for names too: answers into
 * private ranges are dropped (`--stop-dns-rebind`), reverse lookups of private ranges are not
 * forwarded (`--bogus-priv`), and the provider's own /etc/hosts is not served (`--no-hosts`).
 * Tunnel-agnostic: any tunnel adapter whose server has an address can run one.
 */
export class TunnelResolver {
  #child?: ChildProcess;
  readonly recent: string[] = [];
  readonly #log: Logger;
  readonly #supervisor: Supervisor;

  constructor(private readonly o: TunnelResolverOptions) {
    this.#log = o.log ?? silentLogger;
    this.#supervisor = new Supervisor({ what: "the tunnel resolver (dnsmasq)", log: this.#log, relaunch: () => this.#launch() });
  }

  /** Each restart after an exit, for tests and status. */
  get restarts(): readonly number[] {
    return this.#supervisor.restarts;
  }

  get address(): string {
    return this.o.listen;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return !!this.#child && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  async start(): Promise<void> {
    this.#supervisor.start();
    const listen = `--listen-address=${this.o.listen}`;
    if (this.o.pidFile)
      await stopStale(this.o.pidFile, (argv) => argv.some((a) => a.endsWith("dnsmasq")) && argv.includes(listen), this.#log, "a tunnel resolver (dnsmasq)");
    await this.#launch();
  }

  async stop(): Promise<void> {
    await this.#supervisor.stop();
    if (this.#child) await terminate(this.#child);
  }

  /**
   * dnsmasq started as root drops to user nobody by itself, and that change of user clears a
   * parent-death signal set before it: it outlived a SIGKILLed node (measured). So setpriv makes it
   * nobody first, with the capabilities dnsmasq itself would keep for `--bind-dynamic` (bind port
   * 53, follow the interface's addresses), and sets the parent-death signal after the change:
   * privileges stay dropped and dnsmasq goes when the node goes, however it goes.
   */
  #argv(): string[] {
    return [
      ...inNetns(this.o.netns, [
        ...unprivilegedTiedToParent(["net_bind_service", "net_admin", "net_raw"]),
        program("dnsmasq", "dnsmasq-base"),
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--pid-file=",
        "--log-facility=-",
        `--listen-address=${this.o.listen}`,
        // Binds the address when the tunnel device has it, also when openvpn (re)creates it later.
        "--bind-dynamic",
        "--no-hosts",
        "--domain-needed",
        "--bogus-priv",
        ...(this.o.blockPrivate === false ? [] : ["--stop-dns-rebind"]),
        ...(this.o.filterIpv6 ? ["--filter-AAAA"] : []),
        "--cache-size=1000",
      ]),
    ];
  }

  async #launch(): Promise<void> {
    const argv = this.#argv();
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    this.#child = child;
    if (this.o.pidFile && child.pid) fs.writeFileSync(this.o.pidFile, `${child.pid}\n`, { mode: 0o600 });
    let up = false;
    let started!: () => void;
    const ready = new Promise<void>((resolve) => (started = resolve));
    child.stderr!.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) {
        if (!line.trim()) continue;
        this.recent.push(line);
        if (this.recent.length > 30) this.recent.shift();
        this.#log.debug({ dnsmasq: line }, "dnsmasq");
        if (/started, version/.test(line)) started();
      }
    });
    const exited = new Promise<never>((_resolve, reject) =>
      child.once("exit", (code) => {
        if (this.o.pidFile && child === this.#child) fs.rmSync(this.o.pidFile, { force: true });
        reject(new TunnelError("RESOLVER_FAILED", `dnsmasq exited (${code}) while starting: ${this.recent.slice(-1)[0] ?? "no output"}`));
        // Supervised once it is up; one that dies while starting is this launch's failure.
        if (up && child === this.#child) this.#supervisor.exited(code, this.recent);
      }),
    );
    exited.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_r, reject) => {
      timer = setTimeout(() => reject(new TunnelError("RESOLVER_FAILED", "dnsmasq did not start in time")), this.o.startTimeoutMs ?? 10_000);
    });
    try {
      await Promise.race([ready, exited, timeout]);
      up = true;
    } catch (err) {
      // One that did not come up in time is not left running beside the next try.
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}
