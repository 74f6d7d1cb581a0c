import type { Confinement } from "../../consumer-protection/confined";
import type { ConsumerProtection } from "../../consumer-protection/protection";
import type { ProposalFilter } from "../../proposal/filter";
import type { ConsumerService } from "../../session/service";
import type { Address } from "../../values/address";

/** A connect, as the route hands it over: typed, parsed once at the edge. */
export interface ConnectRequest {
  provider?: Address;
  serviceType: string;
  /** What to look for in discovery (the service type comes from the service); its price limits also go to the provider. */
  filter: ProposalFilter;
  netns?: string;
  /** Default true: traffic stays blocked when the tunnel drops, until disconnect. */
  killSwitch?: boolean;
  allowLan?: boolean;
  /**
   * When the session ends by itself, negotiate a new one (the same provider first, then the next
   * that matches the same filters) while the kill switch holds; bounded (session/reconnect.ts).
   */
  reconnect?: boolean;
  /**
   * Confined apps: the tunnel carries only a fresh network namespace's traffic (its name is in the
   * status, `confined.netns`); the consumer's own routes, resolver and firewall stay as they are.
   */
  confine?: boolean;
  /**
   * Where a service without a tunnel (the proxy) opens its local proxy port (`host:port`). While
   * another connection is up, such a connection runs alongside it (several, each on its own port).
   */
  listen?: string;
  /** Through a relay even when a direct path may exist (docs/relay.md): for networks whose direct paths are unreliable, and to measure. */
  viaRelay?: boolean;
}

/** The connection the user asked for, until they disconnect: what a reconnect renews. */
export interface WantedConnection {
  request: ConnectRequest;
  service: ConsumerService;
  protection?: ConsumerProtection;
  confinement?: Confinement;
}
