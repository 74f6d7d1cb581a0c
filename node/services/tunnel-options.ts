import type { Logger } from "../log/logger";
import type { TunnelControls } from "./controls/tunnel-controls";

/** What every tunnel adapter's provider side is configured with (each adds its own settings). */
export interface TunnelServiceOptions {
  /** Where the service keeps its keys, config, pid files and sockets (`<data-dir>/services/<type>`). */
  dir: string;
  /** The address consumers send their tunnel packets to. */
  publicAddress: string;
  /** UDP port (each adapter has its default). */
  port?: number;
  /** Tunnel subnet, /24 (each adapter has its default). */
  subnet?: string;
  /** Internet-facing interface for NAT. Default: the default route's. */
  uplink?: string;
  blockPrivate?: boolean;
  allowPrivate?: string[];
  /** Run the tunnel server and its firewall in this network namespace (tests and the demo). */
  netns?: string;
  /** How often to read byte counts. Default 1 s. */
  meterMs?: number;
  /** Carry consumers' IPv6 (tunnel addresses from the adapter's /64, NAT66 out of the uplink). Default false. */
  ipv6?: boolean;
  /** Bandwidth limits and egress policy on the tunnel device (node/services/controls). */
  controls?: (device: string) => TunnelControls;
  log?: Logger;
}
