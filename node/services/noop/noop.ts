import net from "node:net";
import type { ConsumerService, ProviderService, Tunnel, TunnelCheck } from "../../session/service";
import { RunningClock } from "../running-clock";

/**
 * How a noop provider's data path behaves (fleet tests of quality, docs/quality.md): "ok" serves at
 * its rate; the rest are the broken providers a consumer must fall over from ("bad-dns": its data
 * path's resolver answers no name, the noop stand-in for a provider whose DNS is broken).
 */
export type NoopBehaviour = "ok" | "silent-tunnel" | "cut-after-accept" | "slow" | "bad-dns";

export interface NoopDataOptions {
  /** The rate bytes are served at, Mbit/s. */
  mbps: number;
  behaviour?: NoopBehaviour;
  /** "slow" serves at this share of `mbps`. Default 0.1. */
  slowFactor?: number;
}

/** The data endpoint a noop provider names in its service config (loopback only). */
interface NoopDataEndpoint {
  host: string;
  port: number;
}

/**
 * A service that provides nothing: the session machinery's test double, and a protocol probe. With
 * `data`, it also serves a byte stream on 127.0.0.1 for its sessions (a "tunnel" handshake, then bytes
 * at a set rate), so the consumer's stage checks (first byte, throughput) run against something real.
 */
export class NoopProviderService implements ProviderService {
  readonly type = "noop";
  /** How its data path behaves now (tests change it). */
  behaviour: NoopBehaviour;
  #server?: Promise<net.Server>;
  readonly #sockets = new Set<net.Socket>();

  constructor(private readonly options: { data?: NoopDataOptions } = {}) {
    this.behaviour = options.data?.behaviour ?? "ok";
  }
  running = true;
  readonly open = new Map<string, { consumer: string; consumerData: unknown }>();
  readonly closed: { id: string; reason: string }[] = [];
  /** What the meter reports per session; tests set it. */
  readonly meter = new Map<string, { bytesIn: number; bytesOut: number }>();

  usage(sessionId: string): { bytesIn: number; bytesOut: number } | undefined {
    const known = this.open.has(sessionId) || this.closed.some((c) => c.id === sessionId);
    return known ? (this.meter.get(sessionId) ?? { bytesIn: 0, bytesOut: 0 }) : undefined;
  }

  isRunning(): boolean {
    return this.running;
  }

  async openSession(session: { id: string; consumer: string; consumerData: unknown }): Promise<unknown> {
    this.open.set(session.id, { consumer: session.consumer, consumerData: session.consumerData });
    const data = this.options.data ? await this.#dataEndpoint() : undefined;
    return { greeting: `hello ${session.consumer}`, sessionId: session.id, ...(data ? { data } : {}) };
  }

  async closeSession(sessionId: string, reason: string): Promise<void> {
    if (this.open.delete(sessionId)) this.closed.push({ id: sessionId, reason });
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    const server = await this.#server;
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    this.#server = undefined;
  }

  async #dataEndpoint(): Promise<NoopDataEndpoint> {
    this.#server ??= new Promise((resolve, reject) => {
      const server = net.createServer((socket) => this.#serve(socket));
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve(server));
    });
    const address = (await this.#server).address() as net.AddressInfo;
    return { host: "127.0.0.1", port: address.port };
  }

  /**
   * `hello <session id>` → `ok`; `resolve <name>` → `addr 127.0.0.1` (the noop stand-in for DNS through
   * the tunnel); `get <bytes>` → that many bytes at the rate (as the behaviour says).
   */
  #serve(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let input = "";
    let hello = false;
    socket.on("data", (chunk) => {
      input += chunk.toString("latin1");
      if (input.length > 256) return void socket.destroy();
      let nl = input.indexOf("\n");
      while (nl >= 0) {
        const line = input.slice(0, nl);
        input = input.slice(nl + 1);
        nl = input.indexOf("\n");
        const [verb, arg] = line.split(" ");
        if (verb === "hello" && this.open.has(arg ?? "")) {
          if (this.behaviour === "silent-tunnel") continue;
          hello = true;
          socket.write("ok\n");
        } else if (verb === "resolve" && hello && /^[a-z0-9.-]{1,64}$/.test(arg ?? "")) {
          socket.write(this.behaviour === "bad-dns" ? "nxdomain\n" : "addr 127.0.0.1\n");
        } else if (verb === "get" && hello && /^[0-9]{1,9}$/.test(arg ?? "")) {
          if (this.behaviour === "cut-after-accept") return void socket.destroy();
          const factor = this.behaviour === "slow" ? (this.options.data?.slowFactor ?? 0.1) : 1;
          this.#stream(socket, Number(arg), (this.options.data?.mbps ?? 1) * factor);
        } else return void socket.destroy();
      }
    });
  }

  /** Sends `total` bytes at `mbps`, paced every 10 ms. */
  #stream(socket: net.Socket, total: number, mbps: number): void {
    const started = Date.now();
    const chunk = Buffer.alloc(16 * 1024, 0x6e);
    let sent = 0;
    const tick = () => {
      if (socket.destroyed) return;
      const allowed = Math.min(total, Math.floor(((Date.now() - started + 10) * mbps * 1e6) / 8000));
      while (sent < allowed) {
        const n = Math.min(chunk.length, allowed - sent);
        socket.write(n === chunk.length ? chunk : chunk.subarray(0, n));
        sent += n;
      }
      if (sent < total) setTimeout(tick, 10);
    };
    tick();
  }
}

export class NoopConsumerService implements ConsumerService {
  readonly type = "noop";
  /** Make `connect` fail, to exercise `session.confirm {ok: false}`. */
  failConnect?: string;
  readonly tunnels: NoopTunnel[] = [];

  async consumerData(): Promise<unknown> {
    return { client: "noop/1" };
  }

  async connect(session: { id: string; provider: string; serviceConfig: unknown }): Promise<Tunnel> {
    if (this.failConnect) throw new Error(this.failConnect);
    const endpoint = dataEndpointOf(session.serviceConfig);
    const socket = endpoint ? await handshake(endpoint, session.id) : undefined;
    const tunnel = new NoopTunnel(session.serviceConfig, socket);
    this.tunnels.push(tunnel);
    return tunnel;
  }
}

/** The data endpoint of a noop service config: loopback only (a peer's words never pick where we connect). */
function dataEndpointOf(config: unknown): NoopDataEndpoint | undefined {
  const d = (config as { data?: { host?: unknown; port?: unknown } } | null)?.data;
  if (!d) return undefined;
  if (d.host !== "127.0.0.1" || typeof d.port !== "number" || !Number.isInteger(d.port) || d.port < 1 || d.port > 65535)
    throw new Error("the provider's noop data endpoint is not a loopback port");
  return { host: d.host, port: d.port };
}

/** The noop "tunnel handshake": `hello <session id>` answered by `ok` within 3 s. */
function handshake(endpoint: NoopDataEndpoint, sessionId: string, timeoutMs = 3000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(endpoint.port, endpoint.host);
    const fail = (why: string) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail(`the provider's data path did not answer the handshake in ${timeoutMs} ms`), timeoutMs);
    socket.once("error", (err) => fail(`the provider's data path: ${err.message}`));
    socket.once("close", () => fail("the provider's data path closed during the handshake"));
    socket.once("data", (d) => {
      if (d.toString("latin1") !== "ok\n") return fail("the provider's data path answered the handshake with something else");
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on("error", () => socket.destroy());
      resolve(socket);
    });
    socket.write(`hello ${sessionId}\n`);
  });
}

export class NoopTunnel implements Tunnel {
  stopped = false;
  /** What the consumer's meter says; tests set it. */
  bytes = { bytesIn: 0, bytesOut: 0 };
  #down?: (reason: string) => void;
  /** The stage checks, only with a data path (without one there is nothing to check). */
  readonly check?: (o: { maxBytes: number; timeoutMs: number }) => Promise<TunnelCheck>;
  constructor(
    readonly serviceConfig: unknown,
    /** The provider's data path, when it serves one. */
    private readonly socket?: net.Socket,
  ) {
    if (socket) this.check = (o) => this.#check(socket, o);
  }
  async stop(): Promise<void> {
    this.stopped = true;
    this.socket?.destroy();
  }

  /**
   * A name resolved on the data path, then the first byte and throughput of `get <maxBytes>`, timed on
   * this process's running time (services/running-clock.ts): its own stalls are not the provider's.
   */
  async #check(socket: net.Socket, o: { maxBytes: number; timeoutMs: number }): Promise<TunnelCheck> {
    const clock = new RunningClock().start();
    try {
      const dns = await this.#resolve(socket, Math.min(o.timeoutMs, 2000), clock);
      if (!dns) return { dns, firstByteMs: null, bytes: 0, ms: 0 };
      return { dns, ...(await this.#fetch(socket, o, clock)) };
    } finally {
      clock.stop();
    }
  }

  /** `resolve probe.myst` answered by an address within `timeoutMs` of running time. */
  #resolve(socket: net.Socket, timeoutMs: number, clock: RunningClock): Promise<boolean> {
    return new Promise((resolve) => {
      let line = "";
      const done = (ok: boolean) => {
        cancel();
        socket.removeListener("data", onData);
        socket.removeListener("close", onClose);
        resolve(ok);
      };
      const onData = (d: Buffer) => {
        line += d.toString("latin1");
        const nl = line.indexOf("\n");
        if (nl >= 0) done(line.slice(0, nl).startsWith("addr "));
        else if (line.length > 64) done(false);
      };
      const onClose = () => done(false);
      const cancel = clock.after(timeoutMs, () => done(false));
      socket.on("data", onData);
      socket.once("close", onClose);
      socket.write("resolve probe.myst\n");
    });
  }

  #fetch(socket: net.Socket, o: { maxBytes: number; timeoutMs: number }, clock: RunningClock): Promise<Omit<TunnelCheck, "dns">> {
    return new Promise((resolve) => {
      const t0 = Date.now();
      let first: number | null = null;
      let firstByteMs: number | null = null;
      let bytes = 0;
      const done = () => {
        cancel();
        socket.removeListener("data", onData);
        socket.removeListener("close", done);
        this.bytes.bytesIn += bytes;
        // At least 1 ms: bytes that all arrived during a stall of ours were delivered faster than we can tell.
        resolve({ firstByteMs, bytes, ms: first === null ? 0 : Math.max(1, clock.running(first)) });
      };
      const onData = (d: Buffer) => {
        if (first === null) {
          first = Date.now();
          firstByteMs = clock.running(t0, first);
        }
        bytes += d.length;
        if (bytes >= o.maxBytes) done();
      };
      const cancel = clock.after(o.timeoutMs, done);
      socket.on("data", onData);
      socket.once("close", done);
      socket.write(`get ${o.maxBytes}\n`);
    });
  }
  onDown(listener: (reason: string) => void): void {
    this.#down = listener;
  }
  /** Simulates the tunnel dying. */
  fail(reason: string): void {
    this.#down?.(reason);
  }
  stats() {
    return this.bytes;
  }
}
