import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { silentLogger, type Logger } from "../../log/logger";
import type { ConsumerService, Tunnel } from "../../session/service";
import { checkPinnedCertificate, pinnedTls } from "../certificate";
import { TunnelError } from "../system";
import { checkServiceConfig, CONNECTION_WINDOW, CREDENTIAL_HEADER, IDLE_GOAWAY, REFUSAL_HEADER, STREAM_WINDOW, type ProxyServiceConfig } from "./config";
import { LocalProxy, type OpenedStream } from "./local-proxy";
import { connectRelayed } from "../relay/tcp-held";

/** Where the local proxy listens unless `--listen` says. */
export const DEFAULT_LISTEN = "127.0.0.1:1080";

/** `host:port`, `[v6]:port` or a port alone (on 127.0.0.1); a BAD_REQUEST-worthy TunnelError otherwise. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+|localhost)):)?(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[3]);
  const host = m?.[1] ?? m?.[2] ?? "127.0.0.1";
  if (!m || port > 65535 || (host !== "localhost" && !net.isIP(host)))
    throw new TunnelError("BAD_SERVICE_CONFIG", `--listen "${text}" is not host:port (e.g. 127.0.0.1:1080)`);
  return { host, port };
}

/** How often the HTTP/2 connection is pinged, and how long an answer may take before the connection counts as dead. */
const PING_MS = 5000;
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * How long a TCP connection to the provider's relayed address may take (the relay's kernel answers at
 * once; a network that lets out only TCP/443 drops it): past it, RELAY_FAILED, and the session tries
 * the allocation held here (session/relay-opener.ts `heldHereAfter`).
 */
const RELAYED_CONNECT_MS = 4000;

/** The consumer side of the proxy service: no device, no route, no privilege. */
export class ProxyConsumerService implements ConsumerService {
  readonly type = "proxy";
  constructor(private readonly o: { listen?: string; log?: Logger }) {}

  /** A provider nobody can dial is reached through a TCP allocation it holds on a relay this consumer pays. */
  readonly relayedTcp = true;

  async consumerData(): Promise<unknown> {
    return { client: "proxy/1" };
  }

  async connect(session: { id: string; provider: string; serviceConfig: unknown; stream?: () => Promise<net.Socket> }): Promise<Tunnel> {
    const config = session.serviceConfig;
    if (!checkServiceConfig.Check(config)) throw new TunnelError("BAD_SERVICE_CONFIG", "the provider's proxy config is malformed");
    checkPinnedCertificate(config.certificate, config.fingerprint, "the provider's proxy");
    const listen = parseListen(this.o.listen ?? DEFAULT_LISTEN);
    const tunnel = new ProxyTunnel(config, this.o.log ?? silentLogger);
    await tunnel.start(listen, session.stream);
    return tunnel;
  }
}

/**
 * One session's proxy: an HTTP/2 connection to the provider (TLS 1.3, the certificate pinned by
 * its fingerprint) and the local SOCKS5/HTTP port, each local connection one CONNECT stream on it.
 * Counts what crosses the streams (`bytesOut` to the provider, `bytesIn` from it): the same
 * payload the provider meters.
 */
export class ProxyTunnel implements Tunnel {
  readonly dns: string[] = [];
  readonly ipv6 = false;
  #h2?: http2.ClientHttp2Session;
  #local?: LocalProxy;
  #bytesIn = 0;
  /** Streams opened and not closed: each may hold up to its window of bytes the provider counted and we have not. */
  #streams = 0;
  #bytesOut = 0;
  #stopping = false;
  #downListener?: (reason: string) => void;
  #downReason?: string;
  #ping?: NodeJS.Timeout;
  #raw?: net.Socket;
  /** Where the local proxy listens, once started. */
  address?: { host: string; port: number };

  constructor(
    private readonly config: ProxyServiceConfig,
    private readonly log: Logger,
  ) {}

  /** `stream`: the provider's connection through a TCP allocation this host holds (it dialled back), instead of one opened here. */
  async start(listen: { host: string; port: number }, stream?: () => Promise<net.Socket>): Promise<void> {
    const { address, port, certificate, fingerprint } = this.config;
    const pinned = pinnedTls(certificate, fingerprint, "the proxy's");
    // Through a relay: our own TCP socket under the TLS, whose counters are the bytes the relay carries (its meter).
    const raw = this.config.relayed ? await (stream ? stream() : connectRelayed(address, port, RELAYED_CONNECT_MS, "the relayed address")) : undefined;
    this.#raw = raw;
    const h2 = http2.connect(`https://${net.isIPv6(address) ? `[${address}]` : address}:${port}`, {
      ...pinned,
      minVersion: "TLSv1.3",
      settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
      ...(raw ? { createConnection: () => tls.connect({ socket: raw, ALPNProtocols: ["h2"], minVersion: "TLSv1.3", ...pinned }) } : {}),
    });
    this.#h2 = h2;
    h2.on("error", (err) => this.#down(`the connection to the provider's proxy failed: ${err.message}`));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new TunnelError("HANDSHAKE_TIMEOUT", `the provider's proxy at ${address}:${port} did not answer`)),
          CONNECT_TIMEOUT_MS,
        );
        h2.once("connect", () => {
          clearTimeout(timer);
          resolve();
        });
        h2.once("error", (err) => {
          clearTimeout(timer);
          reject(new TunnelError("HANDSHAKE_TIMEOUT", `cannot reach the provider's proxy at ${address}:${port}: ${err.message}`, { cause: err }));
        });
      });
      h2.setLocalWindowSize(CONNECTION_WINDOW);
      h2.once("close", () => this.#down("the provider closed the proxy connection"));
      h2.once("goaway", (_code, _last, data?: Buffer) =>
        this.#down(
          data?.toString() === IDLE_GOAWAY
            ? "the provider closed the proxy connection: no stream was open for longer than it keeps an idle session"
            : "the provider ended the proxy connection",
        ),
      );
      this.#local = new LocalProxy((host, p) => this.#open(host, p), {
        log: this.log,
        meter: { received: (n) => (this.#bytesIn += n), sent: (n) => (this.#bytesOut += n) },
      });
      this.address = await this.#local.listen(listen.host, listen.port);
    } catch (err) {
      h2.destroy();
      throw err;
    }
    this.#ping = setInterval(() => this.#checkAlive(), PING_MS);
    this.#ping.unref();
    this.log.info({ listen: this.address, provider: `${address}:${port}` }, "proxy listening (SOCKS5 and HTTP)");
  }

  #checkAlive(): void {
    const h2 = this.#h2;
    if (!h2 || h2.destroyed) return;
    const timer = setTimeout(() => this.#down("the provider's proxy stopped answering"), PING_MS);
    timer.unref();
    const sent = h2.ping((err) => {
      clearTimeout(timer);
      if (err) this.#down(`the provider's proxy stopped answering: ${err.message}`);
    });
    if (!sent) clearTimeout(timer);
  }

  #open(host: string, port: number): Promise<OpenedStream> {
    const h2 = this.#h2;
    if (!h2 || h2.destroyed || h2.closed) return Promise.resolve({ ok: false, status: 503 });
    const authority = `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
    return new Promise((resolve) => {
      let req: http2.ClientHttp2Stream;
      try {
        req = h2.request({ ":method": "CONNECT", ":authority": authority, [CREDENTIAL_HEADER]: `Bearer ${this.config.credential}` });
      } catch {
        return resolve({ ok: false, status: 503 });
      }
      this.#streams++;
      req.once("close", () => this.#streams--);
      req.once("response", (headers) => {
        const status = Number(headers[":status"]);
        if (status === 200) return resolve({ ok: true, stream: req });
        const refusal = headers[REFUSAL_HEADER];
        if (status === 429) this.log.warn({ refusal }, "the provider refused a stream: this session is at its limit");
        resolve({ ok: false, status, ...(typeof refusal === "string" ? { refusal: refusal.slice(0, 64) } : {}) });
        req.close();
      });
      req.once("error", () => resolve({ ok: false, status: 502 }));
      req.once("close", () => resolve({ ok: false, status: 502 }));
    });
  }

  #down(reason: string): void {
    if (this.#stopping || this.#downReason) return;
    this.#downReason = reason;
    this.log.warn({ reason }, "proxy connection down");
    this.#downListener?.(reason);
  }

  get listen(): string | undefined {
    return this.address ? `${net.isIPv6(this.address.host) ? `[${this.address.host}]` : this.address.host}:${this.address.port}` : undefined;
  }

  isUp(): boolean {
    return !!this.#h2 && !this.#h2.destroyed && !this.#h2.closed && !this.#downReason;
  }

  onDown(listener: (reason: string) => void): void {
    this.#downListener = listener;
    if (this.#downReason) listener(this.#downReason);
  }

  stats(): { bytesIn: number; bytesOut: number } {
    return { bytesIn: this.#bytesIn, bytesOut: this.#bytesOut };
  }

  /**
   * The provider meters a stream's bytes as it writes them into the stream; ours count them as they
   * arrive. Between the two: up to a stream's window each, the connection's window in all (16 and 64
   * MiB). A 4 MiB download on loopback had the provider invoice it while a part was still on its way,
   * and this side ended the session as overcharged (stop 39's CI).
   */
  inFlightBytes(): number {
    return Math.min(CONNECTION_WINDOW, STREAM_WINDOW * this.#streams);
  }

  /** Through a relay: the connection's bytes on the wire (TLS records and all), what the relay carries. Undefined on the direct path. */
  wireBytes(): { bytesIn: number; bytesOut: number } | undefined {
    return this.#raw ? { bytesIn: this.#raw.bytesRead, bytesOut: this.#raw.bytesWritten } : undefined;
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#ping);
    await this.#local?.close();
    this.#h2?.destroy();
    this.#raw?.destroy();
  }
}
