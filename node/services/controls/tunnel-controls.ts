import type { Logger } from "../../log/logger";
import { EgressPolicy, type EgressSettings } from "./egress";
import { TrafficShaper } from "./shaping";

export interface TunnelControlsOptions {
  netns?: string;
  /** The tunnel interface on the provider. */
  device: string;
  /** The tunnel carries IPv6 (egress rules for it too). */
  ipv6?: boolean;
  /** Each session's limit, Mbit/s each direction (the offer's bandwidth); 0 or absent: none. */
  sessionMbps?: number;
  serviceMbps?: number;
  egress?: EgressSettings;
  log?: Logger;
}

/**
 * What a tunnel adapter calls to enforce the provider's controls on its interface: bandwidth
 * limits (tc) and the egress policy (iptables). The adapter applies it once its interface exists,
 * tells it each session's consumer addresses when the consumer connects and when it leaves, and
 * removes it when the service stops. The same for every tunnel type.
 */
export class TunnelControls {
  readonly shaper: TrafficShaper;
  readonly egress: EgressPolicy;

  constructor(readonly options: TunnelControlsOptions) {
    this.shaper = new TrafficShaper({
      netns: options.netns,
      device: options.device,
      sessionMbps: options.sessionMbps,
      serviceMbps: options.serviceMbps,
      log: options.log,
    });
    this.egress = new EgressPolicy({ netns: options.netns, device: options.device, ipv6: options.ipv6, settings: options.egress });
  }

  async apply(): Promise<void> {
    await this.egress.apply();
    await this.shaper.apply();
  }

  async sessionUp(sessionId: string, addresses: string[]): Promise<void> {
    await this.shaper.addSession(sessionId, addresses);
  }

  async sessionDown(sessionId: string): Promise<void> {
    await this.shaper.removeSession(sessionId);
  }

  async remove(): Promise<void> {
    await this.shaper.remove();
    await this.egress.remove();
  }
}
