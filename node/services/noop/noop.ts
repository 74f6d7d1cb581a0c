import type { ConsumerService, ProviderService, Tunnel } from "../../session/service";

/** A service that provides nothing: the session machinery's test double, and a protocol probe. */
export class NoopProviderService implements ProviderService {
  readonly type = "noop";
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
    return { greeting: `hello ${session.consumer}`, sessionId: session.id };
  }

  async closeSession(sessionId: string, reason: string): Promise<void> {
    if (this.open.delete(sessionId)) this.closed.push({ id: sessionId, reason });
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
    const tunnel = new NoopTunnel(session.serviceConfig);
    this.tunnels.push(tunnel);
    return tunnel;
  }
}

export class NoopTunnel implements Tunnel {
  stopped = false;
  /** What the consumer's meter says; tests set it. */
  bytes = { bytesIn: 0, bytesOut: 0 };
  #down?: (reason: string) => void;
  constructor(readonly serviceConfig: unknown) {}
  async stop(): Promise<void> {
    this.stopped = true;
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
