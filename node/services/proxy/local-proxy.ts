import net from "node:net";
import type { Duplex } from "node:stream";
import { silentLogger, type Logger } from "../../log/logger";
import { TunnelError } from "../system";

/** How the provider answered a CONNECT stream. */
export type OpenedStream = { ok: true; stream: Duplex } | { ok: false; status: number; refusal?: string };

/** Counts what crosses the streams: received from the provider, sent to it. */
export interface StreamMeter {
  received(bytes: number): void;
  sent(bytes: number): void;
}

/** What the local proxy asks of the connection to the provider: a stream to `host:port` (the name resolved there). */
export type OpenStream = (host: string, port: number) => Promise<OpenedStream>;

const HEAD_LIMIT = 16 * 1024;

/**
 * The high-water mark of each app's connection to the local port (both ways; Node's default is 16
 * KiB). At 16 KiB the stream piped into it paused after every piece (a TLS record), so writeInBatches
 * had one piece to send per turn of the event loop: profiled on loopback, one 16 KiB writev and one
 * turn per piece. At 256 KiB one writev carries about 250 KiB (docs/proxy.md "Measured", s9).
 */
const APP_SOCKET_BUFFER = 256 * 1024;

/**
 * The consumer's local proxy: one TCP port that speaks SOCKS5 (RFC 1928: no authentication,
 * CONNECT, IPv4, IPv6 and domain names, which are passed on unresolved) and HTTP (CONNECT, and
 * plain requests with an absolute URI, sent on with `Connection: close`), told apart by the first
 * byte. Each accepted connection becomes one stream to the provider; this side never resolves a
 * proxied name. It binds where it is told (127.0.0.1 by default): anyone who can reach the port
 * spends this node's money.
 */
export class LocalProxy {
  readonly #server: net.Server;
  readonly #log: Logger;
  readonly #sockets = new Set<net.Socket>();

  readonly #meter?: StreamMeter;

  constructor(
    private readonly open: OpenStream,
    o: { log?: Logger; meter?: StreamMeter } = {},
  ) {
    this.#log = o.log ?? silentLogger;
    this.#meter = o.meter;
    this.#server = net.createServer({ highWaterMark: APP_SOCKET_BUFFER }, (socket) => this.#accept(socket));
  }

  /** Listens on `host:port`; a port in use is PORT_IN_USE. Resolves to the address it took. */
  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          err.code === "EADDRINUSE" || err.code === "EACCES" || err.code === "EADDRNOTAVAIL"
            ? new TunnelError("PORT_IN_USE", `cannot listen on ${host}:${port} (${err.code}): choose another --listen`, { cause: err })
            : err,
        ),
      );
      this.#server.listen(port, host, () => resolve());
    });
    const a = this.#server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.setNoDelay(true);
    socket.once("readable", () => {
      const first = socket.read(1) as Buffer | null;
      if (!first) return void socket.destroy();
      socket.unshift(first);
      const handle = first[0] === 0x05 ? this.#socks(socket) : this.#http(socket);
      handle.catch((err) => {
        this.#log.debug({ err: (err as Error).message }, "local proxy connection failed");
        socket.destroy();
      });
    });
  }

  async #socks(socket: net.Socket): Promise<void> {
    const reader = new Reader(socket);
    const [version, count] = await reader.bytes(2);
    const methods = await reader.bytes(count);
    if (version !== 5) return void socket.destroy();
    if (!methods.includes(0x00)) return void socket.end(Buffer.from([5, 0xff]));
    socket.write(Buffer.from([5, 0]));
    const [, command, , type] = await reader.bytes(4);
    let host: string;
    if (type === 1) host = [...(await reader.bytes(4))].join(".");
    else if (type === 4) {
      const b = await reader.bytes(16);
      host = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16)).join(":");
    } else if (type === 3) host = (await reader.bytes((await reader.bytes(1))[0])).toString("latin1");
    else return void socket.end(socksReply(8));
    const port = (await reader.bytes(2)).readUInt16BE(0);
    if (command !== 1) return void socket.end(socksReply(7));
    const opened = await this.open(host, port);
    if (!opened.ok) return void socket.end(socksReply(socksCode(opened)));
    socket.write(socksReply(0));
    splice(socket, reader.rest(), opened.stream, this.#meter);
  }

  async #http(socket: net.Socket): Promise<void> {
    const reader = new Reader(socket);
    const head = await reader.until(Buffer.from("\r\n\r\n"), HEAD_LIMIT);
    const text = head.toString("latin1");
    const [requestLine, ...headerLines] = text.slice(0, -4).split("\r\n");
    const [method, target, version] = requestLine.split(" ");
    const answer = (status: string) => socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    if (!method || !target || !/^HTTP\/1\.[01]$/.test(version ?? "")) return void answer("400 Bad Request");
    if (method === "CONNECT") {
      const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(target);
      if (!m) return void answer("400 Bad Request");
      const opened = await this.open(m[1] ?? m[2], Number(m[3]));
      if (!opened.ok) return void answer(httpStatus(opened));
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      return splice(socket, reader.rest(), opened.stream, this.#meter);
    }
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      return void answer("400 Bad Request");
    }
    if (url.protocol !== "http:") return void answer("400 Bad Request");
    const opened = await this.open(url.hostname.replace(/^\[|\]$/g, ""), Number(url.port || 80));
    if (!opened.ok) return void answer(httpStatus(opened));
    // The request goes on in origin form, without what was meant for the proxy, one per connection.
    const headers = headerLines.filter((h) => !/^(proxy-[a-z-]*|connection|keep-alive)\s*:/i.test(h));
    const rewritten = `${method} ${url.pathname}${url.search} ${version}\r\n${[...headers, "Connection: close"].join("\r\n")}\r\n\r\n`;
    splice(socket, Buffer.concat([Buffer.from(rewritten, "latin1"), reader.rest()]), opened.stream, this.#meter);
  }
}

/** How long an app's connection whose stream has ended and gone may go on sending before it is closed. */
const TAIL_LINGER_MS = 2_000;

/** Joins the local connection and its stream both ways (`first`: what was read past the handshake). */
function splice(socket: net.Socket, first: Buffer, stream: Duplex, meter?: StreamMeter): void {
  if (first.length) {
    meter?.sent(first.length);
    stream.write(first);
  }
  if (meter) {
    socket.on("data", (chunk: Buffer) => meter.sent(chunk.length));
    stream.on("data", (chunk: Buffer) => meter.received(chunk.length));
  }
  // A stream cut off before its end cuts the socket off. One whose data all came (its end read) and that
  // then closed or was reset by the provider leaves the socket to finish writing what it holds (its end
  // follows the tail), and is then closed: what the app still sends has nowhere to go, so it is read and
  // dropped (uncounted) rather than the socket left open, half-closed, until the app closes it. It is
  // closed when the app ends its side, or TAIL_LINGER_MS after: a close with bytes unread or still on
  // their way in is a reset, which can throw away the tail the app has not yet received.
  const streamGone = () => {
    if (!stream.readableEnded) return void socket.destroy();
    socket.unpipe(stream);
    socket.removeAllListeners("data");
    socket.on("data", () => undefined).resume();
    socket.end();
    const linger = setTimeout(() => socket.destroy(), TAIL_LINGER_MS).unref();
    socket.once("close", () => clearTimeout(linger));
  };
  stream.on("error", streamGone);
  stream.once("close", streamGone);
  socket.once("close", () => stream.destroy());
  socket.pipe(stream);
  writeInBatches(stream, socket);
  stream.pipe(socket);
}

/**
 * Holds `to`'s writes of one turn of the event loop and sends them in one system call: the stream
 * gives its data in pieces of at most a TLS record (16 KiB), and a write of each cost the consumer more
 * CPU than TLS and HTTP/2 together (its profile: 43 % in the socket's writeBuffer). Measured on
 * loopback (2 GB, 3 runs each, 2026-12-07): the consumer's CPU 1.25-1.31 → 1.0-1.09 ns per byte, one
 * stream 4.6-5.2 → 5.5-5.9 Gbit/s. Flushed by `setImmediate` (a `nextTick` batches nothing: each
 * piece comes in its own callback). `end()` flushes what is held. A turn holds as much as the
 * socket's mark lets the stream give (APP_SOCKET_BUFFER).
 */
function writeInBatches(from: Duplex, to: net.Socket): void {
  let held = false;
  const flush = () => {
    held = false;
    to.uncork();
  };
  from.on("data", () => {
    if (held) return;
    held = true;
    to.cork();
    setImmediate(flush);
  });
}

function socksReply(code: number): Buffer {
  return Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
}

/** RFC 1928 §6: 2 not allowed by ruleset, 4 host unreachable, 5 connection refused, 1 general failure. */
function socksCode(r: { status: number; refusal?: string }): number {
  if (r.status === 403) return 2;
  if (r.status === 502) return r.refusal === "ECONNREFUSED" ? 5 : 4;
  return 1;
}

function httpStatus(r: { status: number; refusal?: string }): string {
  if (r.status === 429) return `429 Too Many Requests (${r.refusal ?? "the provider's limit for this session"})`;
  if (r.status === 403) return `403 Forbidden (${r.refusal ?? "refused by the provider"})`;
  if (r.status === 502) return `502 Bad Gateway (${r.refusal ?? "unreachable"})`;
  return `502 Bad Gateway (provider answered ${r.status}${r.refusal ? `: ${r.refusal}` : ""})`;
}

/** Reads exact counts or up to a marker from a socket in paused mode, keeping what it read past them. */
class Reader {
  #buffer = Buffer.alloc(0);
  constructor(private readonly socket: net.Socket) {}

  async bytes(n: number): Promise<Buffer> {
    while (this.#buffer.length < n) await this.#more();
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  async until(marker: Buffer, limit: number): Promise<Buffer> {
    for (;;) {
      const at = this.#buffer.indexOf(marker);
      if (at >= 0) return this.bytes(at + marker.length);
      if (this.#buffer.length > limit) throw new Error("request head too large");
      await this.#more();
    }
  }

  rest(): Buffer {
    const out = this.#buffer;
    this.#buffer = Buffer.alloc(0);
    return out;
  }

  #more(): Promise<void> {
    return new Promise((resolve, reject) => {
      const chunk = this.socket.read() as Buffer | null;
      if (chunk) {
        this.#buffer = Buffer.concat([this.#buffer, chunk]);
        return resolve();
      }
      const cleanup = () => {
        this.socket.off("readable", onReadable);
        this.socket.off("end", onEnd);
        this.socket.off("close", onEnd);
      };
      const onReadable = () => {
        cleanup();
        resolve(this.#more());
      };
      const onEnd = () => {
        cleanup();
        reject(new Error("connection closed during the handshake"));
      };
      this.socket.once("readable", onReadable);
      this.socket.once("end", onEnd);
      this.socket.once("close", onEnd);
    });
  }
}
