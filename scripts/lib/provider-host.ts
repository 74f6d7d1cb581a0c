// A provider service run as an unprivileged user with only the capabilities its type declares, in a
// process of its own inside the provider's namespace: what `myst daemon` under the systemd unit is
// (docs/running-without-root.md), for the e2e suites that drive a provider service in-process.
// The parent (the test) keeps the sessions, dialogs and payments; this child holds the service,
// answers its port (node/session/service.ts) over JSON lines on stdin/stdout, and asks the parent
// for consumers' public keys (the chain's registry is the parent's).
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import type { PublicKeyDirectory } from "../../node/identity/protocol-signature";
import { type ServiceSpec, serviceCapabilities } from "../../node/services/catalog";
import type { DirectRoute, ProviderService } from "../../node/session/service";
import { type UnprivilegedUser, unprivilegedUser } from "./myst-cli";
import { within } from "./until";

type Usage = { bytesIn: number; bytesOut: number; downMs?: number };
/** What the child reports after every answer and every `meterMs`: what the port's synchronous reads answer from. */
interface HostState {
  running: boolean;
  pid?: number;
  restarts: number[];
  sessions: Record<string, { usage?: Usage; connected: boolean }>;
}
interface HostInfo {
  type: string;
  /** A WireGuard service's public key (what its sessions' configs name). */
  publicKey?: string;
  ipv6?: boolean;
  reach?: "public-or-mapped";
  listenPort?: { port: number; protocol: "udp" | "tcp" };
  tunnelPort?: number;
}
type FromHost =
  | { event: "ready"; info: HostInfo; state: HostState }
  | { event: "failed"; error: { code?: string; message: string } }
  | { event: "state"; state: HostState }
  | { id: number; ok: boolean; result?: unknown; error?: { code?: string; message: string }; state: HostState }
  | { ask: number; publicKeyOf: string };

/** The error a call into the host failed with: its code (CAPABILITY_MISSING, AUTH_REFUSED…) kept. */
export class HostedProviderError extends Error {
  constructor(
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** setpriv's name of a capability: CAP_NET_ADMIN → net_admin. */
export const setprivName = (capability: string) => capability.replace(/^CAP_/, "").toLowerCase();

export interface HostedProviderOptions {
  /** The namespace that stands for the provider's machine: the service runs inside it, so its spec names no netns. */
  netns: string;
  /** A checked spec (checkServiceSpec), without a netns. */
  spec: ServiceSpec;
  /** Where the user's tun node is made (root makes it: mknod). */
  dir: string;
  /** The user's uid and gid. Default 64990. */
  uid?: number;
  /** A capability (CAP_…) the spec declares that the user is not given: its start must fail with CAPABILITY_MISSING. */
  without?: string;
  directory: PublicKeyDirectory;
  meterMs?: number;
  /** Each session's bandwidth limit, Mbit/s (the offer's bandwidth: the controls' tc classes). */
  bandwidthMbps?: number;
  /** E2E_LOG-style file for the service's log (debug). */
  logFile?: string;
}

/**
 * A provider service in its own process as `user` (see the top of this file): a ProviderService
 * whose synchronous reads (usage, isConnected, pid, restarts, isRunning) answer from the state the
 * child last reported (after every call, and every `meterMs`).
 */
export class HostedProvider implements ProviderService {
  type = "";
  publicKey?: string;
  ipv6?: boolean;
  reach?: "public-or-mapped";
  listenPort?: { port: number; protocol: "udp" | "tcp" };
  tunnelPort?: number;
  readonly dataDir: string;
  /** Who it runs as, holding exactly the capabilities the spec declares (less `without`). */
  readonly user: UnprivilegedUser;
  #child?: ChildProcess;
  #state: HostState = { running: false, restarts: [], sessions: {} };
  /** Sessions closed through this port: not connected from the moment it is asked, whatever the child last said. */
  readonly #closed = new Set<string>();
  #next = 0;
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #output = "";

  constructor(private readonly o: HostedProviderOptions) {
    const declared = [...new Set(serviceCapabilities(o.spec).map((n) => n.capability))].filter((c) => c !== o.without);
    this.user = unprivilegedUser(o.dir, declared.map(setprivName), o.uid ?? 64_990);
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-provider-host-"));
    fs.chownSync(this.dataDir, this.user.uid, this.user.gid);
    if (o.logFile) {
      // Written by the user: made here, handed over.
      fs.writeFileSync(o.logFile, "", { flag: "a" });
      fs.chownSync(o.logFile, this.user.uid, this.user.gid);
    }
  }

  /** Starts the child and the service in it; rejects with the service's own error (CAPABILITY_MISSING…). */
  async start(): Promise<void> {
    const caps = ["-all", ...this.user.capabilities.map((c) => `+${c}`)].join(",");
    // As scripts/lib/myst-cli.ts runs `myst` as a user: a tun node it may open and a /run/wireguard of
    // its own in the mount namespace `ip netns exec` makes, then setpriv to the user with only `caps`.
    const script = [
      "tun=$1 uid=$2 gid=$3 caps=$4; shift 4",
      'mount --bind "$tun" /dev/net/tun',
      "mkdir -p /run/wireguard",
      'mount -t tmpfs -o "mode=0755,uid=$uid,gid=$gid" myst-wireguard /run/wireguard',
      'exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps="$caps" --ambient-caps="$caps" --bounding-set="$caps" --pdeathsig=TERM -- "$@"',
    ].join(" && ");
    const node = [process.execPath, "-r", "ts-node/register/transpile-only", __filename];
    const argv = [
      "netns",
      "exec",
      this.o.netns,
      "/bin/sh",
      "-c",
      script,
      "myst-provider-host",
      this.user.tun,
      String(this.user.uid),
      String(this.user.gid),
      caps,
      ...node,
    ];
    const config = { spec: this.o.spec, dataDir: this.dataDir, meterMs: this.o.meterMs, bandwidthMbps: this.o.bandwidthMbps, logFile: this.o.logFile };
    const child = spawn("/usr/sbin/ip", argv, {
      cwd: path.resolve(__dirname, "..", ".."),
      env: { PATH: process.env.PATH, HOME: this.dataDir, TS_NODE_TRANSPILE_ONLY: "1", MYST_PROVIDER_HOST: JSON.stringify(config) },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.#child = child;
    child.stdin!.on("error", () => undefined);
    child.stderr!.on("data", (d) => (this.#output = (this.#output + d).slice(-4000)));
    const ready = new Promise<void>((resolve, reject) => {
      child.once("exit", (code) => {
        const err = new HostedProviderError(undefined, `the provider host exited (${code}): ${this.#output.trim()}`);
        reject(err);
        for (const w of this.#waiting.values()) w.reject(err);
        this.#waiting.clear();
        this.#state = { ...this.#state, running: false };
      });
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        const m = JSON.parse(line) as FromHost;
        if ("ask" in m) {
          void this.o.directory.publicKeyOf(m.publicKeyOf).then(
            (key) => this.#send({ answer: m.ask, key: key ? Buffer.from(key).toString("hex") : null }),
            () => this.#send({ answer: m.ask, key: null }),
          );
          return;
        }
        if ("state" in m) this.#state = m.state;
        if ("event" in m) {
          if (m.event === "ready") {
            Object.assign(this, m.info);
            resolve();
          } else if (m.event === "failed") reject(new HostedProviderError(m.error.code, m.error.message));
          return;
        }
        const w = this.#waiting.get(m.id);
        this.#waiting.delete(m.id);
        if (m.ok) w?.resolve(m.result);
        else w?.reject(new HostedProviderError(m.error?.code, m.error?.message ?? "failed"));
      });
    });
    // Bounded, with what the host said last (its log's info lines when it has no log file): a start
    // that hung once in CI left the test's hook to time out with no word of where.
    try {
      await within(ready, "the provider host's start", READY_MS);
    } catch (err) {
      await this.#end();
      if (err instanceof HostedProviderError) throw err;
      throw new HostedProviderError(undefined, `${(err as Error).message}; its last output: ${this.#output.trim() || "(none)"}`);
    }
  }

  #send(message: Record<string, unknown>): void {
    this.#child?.stdin?.write(`${JSON.stringify(message)}\n`);
  }

  #call(op: string, ...args: unknown[]): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      if (!this.#child || this.#child.exitCode !== null) return reject(new HostedProviderError(undefined, "the provider host is not running"));
      this.#waiting.set(id, { resolve, reject });
      this.#send({ id, op, args });
    });
  }

  /** The host process (the service's node), for tests that look at its credentials. */
  get hostPid(): number | undefined {
    return this.#child?.pid;
  }

  get pid(): number | undefined {
    return this.#state.pid;
  }

  get restarts(): readonly number[] {
    return this.#state.restarts;
  }

  isRunning(): boolean {
    return this.#state.running;
  }

  openSession(session: { id: string; consumer: string; consumerData: unknown }): Promise<unknown> {
    this.#closed.delete(session.id);
    return this.#call("openSession", session);
  }

  async closeSession(sessionId: string, reason: string, options?: { byConsumer?: boolean }): Promise<void> {
    this.#closed.add(sessionId);
    await this.#call("closeSession", sessionId, reason, options ?? {});
  }

  usage(sessionId: string): Usage | undefined {
    return this.#state.sessions[sessionId]?.usage;
  }

  isConnected(sessionId: string): boolean {
    return !this.#closed.has(sessionId) && this.#state.sessions[sessionId]?.connected === true;
  }

  /** Reads the meters now (a tunnel's `meter()`), and the state with them. */
  async meter(): Promise<void> {
    await this.#call("meter");
  }

  async directRoute(sessionId: string, route: DirectRoute): Promise<void> {
    await this.#call("directRoute", sessionId, route);
  }

  /** Stops the service (its processes, firewall rules), then the host; removes its data dir. */
  async stop(): Promise<void> {
    await this.#call("stop").catch(() => undefined);
    await this.#end();
  }

  async #end(): Promise<void> {
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.stdin?.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** How long the host may take to start its service (ts-node's compile of the node included). */
const READY_MS = 60_000;

/** Starts a provider service as `o.user` in `o.netns` (see HostedProvider). */
export async function startHostedProvider(o: HostedProviderOptions): Promise<HostedProvider> {
  const provider = new HostedProvider(o);
  await provider.start();
  return provider;
}

/** The child: the service, its port over stdin/stdout. */
async function host(): Promise<void> {
  const { startProviderService } = await import("../../node/services/catalog");
  const config = JSON.parse(process.env.MYST_PROVIDER_HOST ?? "{}") as {
    spec: ServiceSpec;
    dataDir: string;
    meterMs?: number;
    bandwidthMbps?: number;
    logFile?: string;
  };
  const send = (m: FromHost) => process.stdout.write(`${JSON.stringify(m)}\n`);
  const asked = new Map<number, (key: Uint8Array | null) => void>();
  let nextAsk = 0;
  const directory: PublicKeyDirectory = {
    publicKeyOf: (identity) =>
      new Promise((resolve) => {
        const n = nextAsk++;
        asked.set(n, resolve);
        send({ ask: n, publicKeyOf: identity });
      }),
  };
  // Without a log file, the info lines go to stderr: the parent keeps their end for its errors.
  const log = require("pino")({ level: config.logFile ? "debug" : "info" }, require("pino").destination({ dest: config.logFile ?? 2, sync: true }));
  const errorOf = (err: unknown) => ({ code: (err as { code?: string }).code, message: (err as Error).message ?? String(err) });
  let service: (ProviderService & { stop?(): Promise<void>; meter?(): Promise<void>; pid?: number; restarts?: readonly number[] }) | undefined;
  const sessions = new Set<string>();
  const state = (): HostState => ({
    running: service?.isRunning() ?? false,
    pid: service?.pid,
    restarts: [...(service?.restarts ?? [])],
    sessions: Object.fromEntries([...sessions].map((id) => [id, { usage: service?.usage?.(id), connected: service?.isConnected?.(id) ?? false }])),
  });
  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    const m = JSON.parse(line) as { id: number; op: string; args: unknown[] } | { answer: number; key: string | null };
    if ("answer" in m) {
      asked.get(m.answer)?.(m.key ? Uint8Array.from(Buffer.from(m.key, "hex")) : null);
      asked.delete(m.answer);
      return;
    }
    const s = service;
    const ops: Record<string, () => Promise<unknown>> = {
      openSession: async () => {
        const session = m.args[0] as { id: string; consumer: string; consumerData: unknown };
        sessions.add(session.id);
        return s?.openSession(session);
      },
      closeSession: () => s!.closeSession(m.args[0] as string, m.args[1] as string, m.args[2] as { byConsumer?: boolean }),
      meter: async () => s?.meter?.(),
      directRoute: async () => s?.directRoute?.(m.args[0] as string, m.args[1] as DirectRoute),
      stop: async () => s?.stop?.(),
    };
    const op = ops[m.op];
    (op ? op() : Promise.reject(new Error(`no such operation: ${m.op}`))).then(
      (result) => send({ id: m.id, ok: true, result, state: state() }),
      (err) => send({ id: m.id, ok: false, error: errorOf(err), state: state() }),
    );
  });
  // The parent is gone (its end of stdin closed): stop what the service holds, then go.
  process.stdin.once("end", () => void (service?.stop?.() ?? Promise.resolve()).finally(() => process.exit(0)));
  try {
    service = await startProviderService(config.spec, {
      dataDir: config.dataDir,
      directory,
      log,
      meterMs: config.meterMs,
      bandwidthMbps: config.bandwidthMbps,
    });
  } catch (err) {
    send({ event: "failed", error: errorOf(err) });
    process.exit(1);
  }
  const publicKey = (service as { publicKey?: unknown }).publicKey;
  const info: HostInfo = {
    type: service.type,
    ...(typeof publicKey === "string" ? { publicKey } : {}),
    ipv6: service.ipv6,
    reach: service.reach,
    listenPort: service.listenPort,
    tunnelPort: service.tunnelPort,
  };
  send({ event: "ready", info, state: state() });
  setInterval(() => send({ event: "state", state: state() }), config.meterMs ?? 1000).unref();
}

if (require.main === module) {
  host().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
