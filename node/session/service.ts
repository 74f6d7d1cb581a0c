/**
 * The service-specific part of a session, as ports: the session machinery negotiates, the
 * service provides. OpenVPN is one adapter (services/openvpn), a no-op test service another
 * (services/noop); a WireGuard adapter would be a third, without touching session/.
 */

/** What the provider side of a service does for sessions. */
export interface ProviderService {
  readonly type: string;
  isRunning(): boolean;
  /** Reserves what the session needs; returns the service config the consumer connects with. */
  openSession(session: { id: string; consumer: string; consumerData: unknown }): Promise<unknown>;
  /**
   * Releases the session: cut the consumer off, free its resources. Idempotent. `byConsumer`: the
   * consumer ended it and is leaving by itself (it is still cut off if it does not).
   */
  closeSession(sessionId: string, reason: string, options?: { byConsumer?: boolean }): Promise<void>;
  /**
   * Bytes the session's consumer moved so far, as the provider meters them (what it invoices).
   * After `closeSession` it keeps answering with the final counts (history, metrics read them).
   * `downMs`: time the service could not carry the session (its server restarting), not billed.
   */
  usage?(sessionId: string): { bytesIn: number; bytesOut: number; downMs?: number } | undefined;
  /** Stops the service and releases what it holds (processes, firewall rules). */
  stop?(): Promise<void>;
  /** Whether the session's consumer is connected to the service now (its tunnel is up). */
  isConnected?(sessionId: string): boolean;
}

/** A consumer's running connection to a provider. */
export interface Tunnel {
  /** Tears the connection down and restores what it changed. Idempotent. */
  stop(): Promise<void>;
  /** Called once if the tunnel goes down by itself. */
  onDown(listener: (reason: string) => void): void;
  /** Bytes through the tunnel so far, as the consumer measures them. */
  stats(): { bytesIn: number; bytesOut: number };
  /** Reads the meter now (stats() may lag by a polling period). */
  refresh?(): Promise<void>;
  /** Whether the tunnel is up and talking to the provider now (false while it reconnects). */
  isUp?(): boolean;
}

/** What the consumer side of a service does. */
export interface ConsumerService {
  readonly type: string;
  /** Sent in `session.create`: whatever the provider's side of this service needs to know. */
  consumerData(): Promise<unknown>;
  /** Brings the connection up with the provider's service config; rejects when it cannot. */
  connect(session: { id: string; provider: string; serviceConfig: unknown }): Promise<Tunnel>;
}
