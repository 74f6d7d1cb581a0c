import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { silentLogger, type Logger } from "../../log/logger";
import { parentDeathSignal, stopStale, terminate } from "../supervision";
import { program, TunnelError } from "../system";

/**
 * Debian's coturn (`turnserver`, RFC 8656) as a child of the node: its own config file in the
 * service's directory, the TURN REST-API scheme (`use-auth-secret`: a credential is
 * `expiry:name` and HMAC-SHA1(secret, that) in base64, checked by coturn itself), UDP, TCP and
 * TLS listeners on one port, tracked by its PID (a pid file; never by name).
 *
 * Metering comes from coturn's admin CLI on 127.0.0.1 (`ps`; measured on 4.6.1, see
 * docs/relay.md): each allocation's id, its username and its counters so far
 *   `usage: rp=<n>, rb=<n>, sp=<n>, sb=<n>`
 * (packets and bytes the client sent to the relay, rp/rb, and the relay sent to the client, sp/sb:
 * the TURN transport's bytes, ChannelData and STUN headers included), and the peers it permitted.
 * coturn brings these counters up to date about every 4,096 packets of a session (the moments it
 * also logs a `usage` line), so they lag. Its log is not believed for money: coturn writes a
 * refused username verbatim, newlines included, so anyone can put a line that looks like a usage
 * line into it; the CLI's list holds only allocations coturn authenticated.
 */

export interface CoturnOptions {
  dir: string;
  /** Addresses to listen on (all of this host's when empty). */
  listeningIps?: string[];
  /** The public address coturn puts in XOR-RELAYED-ADDRESS when the host's own is private (`external-ip`). */
  externalIp?: string;
  port: number;
  /** The UDP ports relayed addresses are taken from. */
  minPort: number;
  maxPort: number;
  /** The REST-API shared secret (random per service start). */
  secret: string;
  realm: string;
  /** Let peers on private, carrier-grade and loopback networks be relayed to (tests on one host); default false. */
  allowPrivatePeers?: boolean;
  /**
   * TURN over TLS on the same port as UDP and TCP (coturn tells a TLS client from a plain one by its
   * first bytes), with this certificate and key; none: no TLS (`no-tls`).
   */
  tls?: { certificateFile: string; keyFile: string };
  /** Each session's bandwidth, bytes per second each way (coturn's `max-bps`; the offer's per-session Mbit/s); none: unlimited. */
  maxBps?: number;
  /** The TCP port of coturn's admin CLI on 127.0.0.1, and its password: how a session is cut off. */
  cli?: { port: number; password: string };
  /**
   * Whether the relay gave out this username. coturn logs a refused username verbatim, newlines
   * included, so a log line may be someone's text: lines about a username the relay never issued
   * are ignored.
   */
  issued?: (username: string) => boolean;
  /** A coturn session of a username appeared (a credential used again after its session ended is cut off at once). */
  onSession?: (username: string, coturnSession: string) => void;
  log?: Logger;
}

/** Counters of one username, summed over its allocations as coturn's CLI lists them. */
export interface CoturnUsage {
  /** Bytes the client sent to the relay (rb) and the relay sent to the client (sb). */
  clientIn: number;
  clientOut: number;
  /** coturn's session ids seen for this username (for `cs`, the CLI's cancel-session). */
  sessions: Set<string>;
}

/** One allocation as coturn's CLI `ps` lists it. */
export interface CoturnSession {
  id: string;
  username: string;
  /** Bytes the client sent to the relay (rb) and the relay sent to the client (sb), so far (as of coturn's last update). */
  clientIn: number;
  clientOut: number;
  /** The peer addresses it has permissions for. */
  peers: string[];
  /** How the client reaches coturn ("client protocol UDP", "TCP" or "TLS/TCP"), when listed. */
  transport?: "udp" | "tcp" | "tls";
  /** The client's IPv4 address as coturn's socket has it ("client addr a.b.c.d:port"), when listed. */
  client?: string;
}

/**
 * coturn 4.6.1's `ps` listing: "    1) id=<id>, user <u>:" then indented lines ("client protocol TLS/TCP, relay protocol UDP",
 * "client addr 127.0.0.1:40706, server addr 127.0.0.2:34789", "usage: rp=…, rb=…, sp=…, sb=…"), "peers:" and one address a line.
 */
export function parsePs(text: string): CoturnSession[] {
  const out: CoturnSession[] = [];
  let current: CoturnSession | undefined;
  let inPeers = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const head = /^\d+\) id=(\d+), user <([^<>]*)>:$/.exec(line);
    if (head) {
      current = { id: head[1], username: head[2], clientIn: 0, clientOut: 0, peers: [] };
      out.push(current);
      inPeers = false;
      continue;
    }
    if (!current) continue;
    const protocol = /^client protocol ([A-Z/]+), relay protocol/.exec(line)?.[1];
    if (protocol) {
      const transport = protocol.startsWith("TLS") ? "tls" : protocol === "TCP" ? "tcp" : protocol === "UDP" ? "udp" : undefined;
      if (transport) current.transport = transport;
      continue;
    }
    const client = /^client addr (\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}):\d+, server addr /.exec(line)?.[1];
    if (client) {
      current.client = client;
      continue;
    }
    const usage = /^usage: rp=\d+, rb=(\d+), sp=\d+, sb=(\d+)$/.exec(line);
    if (usage) {
      current.clientIn = Number(usage[1]);
      current.clientOut = Number(usage[2]);
      inPeers = false;
    } else if (line === "peers:") inPeers = true;
    else if (inPeers && /^[0-9a-fA-F.:]+$/.test(line)) current.peers.push(line);
    else inPeers = false;
  }
  return out;
}

// coturn's own lines (4.6.1, simple-log): "0: : session <id>: new, realm=<r>, username=<u>, …"
// and "0: : session <id>: realm <r> user <u>: incoming packet …" (only to cut an ended session's credential off sooner).
const SESSION_USER = /^\d+: : session (\d+): (?:new, realm=<[^<>]*>, username=<([^<>]*)>|realm <[^<>]*> user <([^<>]*)>:)/;
// While it starts: the addresses it listens on (each listening-ip, or every address it found without
// one), and each listener it opened: "0: : Listener address to use: <ip>", "0: : IPv4. UDP listener
// opened on: <ip>:<port>", "0: : IPv4. TCP listener opened on : <ip>:<port>" ("TLS/TCP" with TLS).
const LISTENER_ADDRESS = /^\d+: : Listener address to use: (\S+)$/;
const LISTENER = /^\d+: : IPv[46]\. (UDP|TCP|TLS\/TCP) listener opened on ?: (\S+)$/;

/** Private, carrier-grade, link-local and loopback ranges a relay refuses to relay to by default. */
const DENIED_PEERS = [
  "0.0.0.0-0.255.255.255",
  "10.0.0.0-10.255.255.255",
  "100.64.0.0-100.127.255.255",
  "127.0.0.0-127.255.255.255",
  "169.254.0.0-169.254.255.255",
  "172.16.0.0-172.31.255.255",
  "192.168.0.0-192.168.255.255",
];

export class CoturnProcess extends EventEmitter<{ exit: [code: number | null] }> {
  child?: ChildProcess;
  readonly recent: string[] = [];
  readonly usage = new Map<string, CoturnUsage>();
  /** Each allocation's counters as the CLI last listed them (kept after it ends: what it carried stays counted). */
  readonly counted = new Map<string, { username: string; clientIn: number; clientOut: number }>();
  /** The username each coturn session was first seen with: a later line naming it for another is not believed. */
  readonly #owner = new Map<string, string>();
  /**
   * While it starts (after that, log lines can be a client's text: a refused username is logged
   * verbatim): the addresses coturn said it listens on, and its listeners opened, `UDP <ip>:<port>`
   * and `TCP <ip>:<port>`.
   */
  #starting = false;
  readonly #listenerAddresses = new Set<string>();
  readonly #listeners = new Set<string>();

  constructor(readonly o: CoturnOptions) {
    super();
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  get configFile(): string {
    return path.join(this.o.dir, "turnserver.conf");
  }

  get pidFile(): string {
    return path.join(this.o.dir, "turnserver.pid");
  }

  /** The config file coturn reads: every setting explicit, the secret inside (0600). */
  config(): string {
    const o = this.o;
    return [
      ...(o.listeningIps ?? []).flatMap((ip) => [`listening-ip=${ip}`, `relay-ip=${ip}`]),
      ...(o.externalIp ? [`external-ip=${o.externalIp}`] : []),
      `listening-port=${o.port}`,
      `min-port=${o.minPort}`,
      `max-port=${o.maxPort}`,
      "use-auth-secret",
      `static-auth-secret=${o.secret}`,
      `realm=${o.realm}`,
      "fingerprint",
      // TLS on the listening port itself (a second listener there; coturn takes TLS on either): nothing on 5349.
      ...(o.tls ? [`tls-listening-port=${o.port}`, `cert=${o.tls.certificateFile}`, `pkey=${o.tls.keyFile}`, "no-tlsv1", "no-tlsv1_1"] : ["no-tls"]),
      "no-dtls",
      "no-multicast-peers",
      // One relay thread: with several, an RFC 6062 data connection (ConnectionBind) that lands on another
      // thread than its allocation's is spliced but never counted (measured on 4.6.1: in 8 of 21 runs of
      // the loopback proxy test coturn counted 536 bytes for 12-96 MB spliced; 0 of 13 runs with one thread).
      // A session lives on one thread anyway; one thread caps the relay's sum over many sessions (docs/relay.md).
      "relay-threads=1",
      // TCP allocations (RFC 6062) stay on: a proxy provider nobody can dial holds one for its consumer
      // (docs/proxy.md). coturn cannot refuse Connect alone; an allocation that reaches a peer its session
      // did not name (a Connect to anyone else included) is cut off by the relay's peer policy (provider.ts).
      ...(o.allowPrivatePeers ? ["allow-loopback-peers"] : DENIED_PEERS.map((r) => `denied-peer-ip=${r}`)),
      // Never to itself: a permission for its own address would relay into its own listeners (TURN to TURN loops, its CLI's neighbours).
      ...[...new Set([...(o.listeningIps ?? []), ...(o.externalIp ? [o.externalIp] : [])])].map((ip) => `denied-peer-ip=${ip}`),
      ...(o.maxBps ? [`max-bps=${Math.floor(o.maxBps)}`] : []),
      ...(o.cli ? ["cli-ip=127.0.0.1", `cli-port=${o.cli.port}`, `cli-password=${o.cli.password}`] : ["no-cli"]),
      "simple-log",
      "log-file=stdout",
      "verbose",
      `pidfile=${path.join(o.dir, "turnserver-own.pid")}`,
      `db=${path.join(o.dir, "turndb.sqlite")}`,
      "",
    ].join("\n");
  }

  async start(timeoutMs = 10_000): Promise<void> {
    const log = this.o.log ?? silentLogger;
    fs.mkdirSync(this.o.dir, { recursive: true, mode: 0o700 });
    const conf = this.configFile;
    await stopStale(this.pidFile, (argv) => argv.some((a) => a.endsWith("turnserver")) && argv.includes(conf), log, "a turnserver");
    fs.writeFileSync(conf, this.config(), { mode: 0o600 });
    // The mode above applies only to a new file: one left from an earlier start keeps its own.
    fs.chmodSync(this.o.dir, 0o700);
    fs.chmodSync(conf, 0o600);
    // What an earlier run of this process said about its listeners is not this run's.
    this.#listenerAddresses.clear();
    this.#listeners.clear();
    this.#starting = true;
    try {
      await this.#spawn(timeoutMs, log);
    } finally {
      this.#starting = false;
    }
  }

  async #spawn(timeoutMs: number, log: Logger): Promise<void> {
    // Tied to our life: a SIGKILLed node takes coturn with it (the parent-death signal survives the exec).
    const argv = [...parentDeathSignal(), program("turnserver", "coturn"), "-c", this.configFile];
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    if (child.pid) fs.writeFileSync(this.pidFile, `${child.pid}\n`, { mode: 0o600 });
    let partial = "";
    const onData = (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) this.read(line);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    const exited = new Promise<number | null>((resolve) =>
      child.once("exit", (code) => {
        fs.rmSync(this.pidFile, { force: true });
        this.emit("exit", code);
        resolve(code);
      }),
    );
    // Up when its UDP and TCP listeners on every address are open, as it logs them (coturn opens UDP
    // after TCP, and retries a port another socket holds every second: it was once taken for up, its
    // TCP port answering, while its UDP listener was not open yet), and its TCP port answers.
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) {
        const code = await exited;
        throw this.explain(`turnserver exited (${code}) while starting`);
      }
      if (this.#listening() && (await tcpOpen(this.o.listeningIps?.[0] ?? "127.0.0.1", this.o.port))) break;
      if (Date.now() > deadline) {
        await this.stop();
        throw this.explain(`turnserver did not listen on UDP and TCP port ${this.o.port} within ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    log.info({ pid: child.pid, port: this.o.port }, "coturn relay listening");
  }

  /** Takes one line of coturn's output: kept for error messages; a session's first line tells its username (never a count). */
  read(line: string): void {
    if (!line.trim()) return;
    this.recent.push(line);
    this.o.log?.trace({ coturn: line }, "coturn");
    if (this.recent.length > 60) this.recent.shift();
    if (this.#starting) {
      const address = LISTENER_ADDRESS.exec(line)?.[1];
      if (address) this.#listenerAddresses.add(address);
      const listener = LISTENER.exec(line);
      if (listener) this.#listeners.add(`${listener[1] === "UDP" ? "UDP" : "TCP"} ${listener[2]}`);
    }
    const s = SESSION_USER.exec(line);
    const user = s?.[2] ?? s?.[3];
    if (s && user?.includes(":")) this.#claim(s[1], user);
  }

  /** Whether coturn has opened its UDP and TCP listeners on the port on each address it listens on (those configured, or those it found). */
  #listening(): boolean {
    const addresses = this.o.listeningIps?.length ? this.o.listeningIps : [...this.#listenerAddresses];
    return addresses.length > 0 && addresses.every((ip) => this.#listeners.has(`UDP ${ip}:${this.o.port}`) && this.#listeners.has(`TCP ${ip}:${this.o.port}`));
  }

  /** Whether `session` is `username`'s (the first to name it, and a username the relay issued). */
  #claim(session: string, username: string): boolean {
    if (this.o.issued && !this.o.issued(username)) return false;
    const owner = this.#owner.get(session);
    if (owner !== undefined) return owner === username;
    this.#owner.set(session, username);
    this.#of(username).sessions.add(session);
    this.o.onSession?.(username, session);
    return true;
  }

  #of(username: string): CoturnUsage {
    let u = this.usage.get(username);
    if (!u) {
      u = { clientIn: 0, clientOut: 0, sessions: new Set() };
      this.usage.set(username, u);
    }
    return u;
  }

  /**
   * Reads every allocation's counters from coturn's CLI (`ps`): the relay's meter. The list is
   * coturn's own memory, so a session's username there is the one it authenticated (it overrides
   * any log line), and its counters only grow. Returns the allocations listed (their peers too).
   */
  async poll(): Promise<CoturnSession[]> {
    const cli = this.o.cli;
    if (!cli || !this.running) return [];
    const listed = parsePs(await cliCommands(cli, ["ps"]));
    const changed = new Set<string>();
    for (const a of listed) {
      if (this.o.issued && !this.o.issued(a.username)) continue;
      const before = this.counted.get(a.id);
      if (before && before.username !== a.username) this.#of(before.username).sessions.delete(a.id);
      if (!before || before.username !== a.username) {
        this.#owner.set(a.id, a.username);
        if (!this.#of(a.username).sessions.has(a.id)) {
          this.#of(a.username).sessions.add(a.id);
          this.o.onSession?.(a.username, a.id);
        }
      }
      this.counted.set(a.id, {
        username: a.username,
        clientIn: Math.max(a.clientIn, before?.username === a.username ? before.clientIn : 0),
        clientOut: Math.max(a.clientOut, before?.username === a.username ? before.clientOut : 0),
      });
      changed.add(a.username);
      if (before) changed.add(before.username);
    }
    for (const username of changed) {
      const u = this.#of(username);
      u.clientIn = 0;
      u.clientOut = 0;
      for (const c of this.counted.values())
        if (c.username === username) {
          u.clientIn += c.clientIn;
          u.clientOut += c.clientOut;
        }
    }
    return listed;
  }

  /** Drops every record of these usernames (the relay forgets a session once its credentials can no longer allocate). */
  forget(usernames: readonly string[]): void {
    const gone = new Set(usernames);
    for (const u of gone) this.usage.delete(u);
    for (const [id, c] of this.counted) if (gone.has(c.username)) this.counted.delete(id);
    for (const [id, u] of this.#owner) if (gone.has(u)) this.#owner.delete(id);
  }

  /** How many records it holds: usernames, allocations counted, coturn sessions' owners. */
  get tracked(): { usage: number; counted: number; owners: number } {
    return { usage: this.usage.size, counted: this.counted.size, owners: this.#owner.size };
  }

  /**
   * Ends coturn's sessions of a username at once, through its admin CLI on 127.0.0.1 (`cs <id>`):
   * the REST-API credential cannot be revoked, and an allocation outlives its credential's expiry
   * (measured: coturn checks the expiry only when it first derives the key). Resolves once coturn's
   * own listing no longer shows them (its relay threads end a session after the CLI has answered),
   * or after 3 s.
   */
  async cancel(username: string, only?: string[]): Promise<number> {
    const cli = this.o.cli;
    const sessions = only ?? [...(this.usage.get(username)?.sessions ?? [])];
    if (!cli || sessions.length === 0) return 0;
    await cliCommands(
      cli,
      sessions.map((id) => `cs ${id}`),
    );
    for (const deadline = Date.now() + 3000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50)))
      if (!parsePs(await cliCommands(cli, ["ps"])).some((a) => sessions.includes(a.id))) break;
    return sessions.length;
  }

  async stop(): Promise<void> {
    if (this.child) await terminate(this.child, 3000);
    fs.rmSync(this.pidFile, { force: true });
  }

  explain(fallback: string): TunnelError {
    const text = this.recent.join("\n");
    const last = this.recent.filter((l) => /error|cannot|fail/i.test(l)).pop() ?? this.recent[this.recent.length - 1] ?? "";
    if (/Address already in use|Cannot bind/i.test(text)) return new TunnelError("PORT_IN_USE", `coturn cannot bind port ${this.o.port}: ${last.trim()}`);
    return new TunnelError("RELAY_FAILED", `${fallback}${last ? `: ${last.trim()}` : ""}`);
  }
}

function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Logs into coturn's telnet-style CLI with its password and runs the commands, one a line. */
export function cliCommands(cli: { port: number; password: string }, commands: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port: cli.port });
    let out = "";
    let seen = 0;
    let loggedIn = false;
    const queue = [...commands, "quit"];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new TunnelError("COMMAND_FAILED", "coturn's CLI did not answer"));
    }, 3000);
    s.on("data", (chunk) => {
      out += chunk.toString();
      if (!loggedIn) {
        if (!/password/i.test(out)) return;
        loggedIn = true;
        s.write(`${cli.password}\r\n`);
        out = "";
        return;
      }
      // One command a prompt: coturn's CLI reads one line at a time.
      if (/>\s*$/.test(out.slice(seen)) && queue.length > 0) {
        seen = out.length;
        s.write(`${queue.shift()}\r\n`);
      }
    });
    s.on("error", (err) => {
      clearTimeout(timer);
      // coturn answers "quit" by resetting the connection: all the output is in by then.
      if (queue.length === 0) resolve(out);
      else reject(new TunnelError("COMMAND_FAILED", `coturn's CLI: ${err.message}`));
    });
    s.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}
