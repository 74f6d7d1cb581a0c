import type { Logger } from "../log/logger";
import type { DirectOffer } from "../nat/direct/candidates";
import type { DirectChannel, DirectPath } from "../nat/direct/channel";
import type { ProviderService } from "./service";

/** How long the provider's probing sockets wait for the consumer's tunnel spray once the channel met (it lasts about 2.4 s). */
const TUNNEL_PUNCH_MS = 5000;

/** What the provider's offer says about its tunnel: mapped by its router, and whether it can meet a consumer's tunnel from a probe. */
export function tunnelOffer(offer: DirectOffer, service: ProviderService, routerMaps?: (port: number, protocol: "udp" | "tcp") => boolean): DirectOffer {
  const listen = service.listenPort;
  const mapped = !!listen && !!routerMaps?.(listen.port, listen.protocol);
  return { ...offer, ...(mapped ? { tunnelMapped: true as const } : {}), ...(service.punchRoute ? { tunnelMeets: true as const } : {}) };
}

/**
 * Tells the tunnel where the consumer's tunnel is, so its own packets go there (each time the
 * consumer moves). When our router maps per destination (we are the hard side), the tunnel first
 * takes the route of the probing socket the consumer's tunnel spray reached: wireguard-go must not
 * send to the consumer before it (its first packet would fix the host's translation of that flow to
 * its own port, whose mapping the router never made). That spray is the tunnels' own meeting: the
 * tunnel is pointed at the consumer as soon as it lands, not when the channel's own search (another
 * socket of the consumer's, another mapping of our router's) is nominated, so the connect waits for
 * one birthday search, not for both (docs/direct-channel.md, "The tunnels meet first").
 */
export function followDirectPath(o: {
  sessionId: string;
  ended: () => boolean;
  /**
   * The consumer has chosen a relay (`session.relay`): the direct path no longer moves the tunnel.
   * Told later, it took the tunnel away from the relay the consumer's forwarder listens on.
   */
  relayed: () => boolean;
  service: ProviderService;
  channel: DirectChannel;
  consumerTunnelPort?: number;
  log: Logger;
}): void {
  const { sessionId, service, channel, consumerTunnelPort, log } = o;
  if (!consumerTunnelPort || !service.directRoute) return;
  const hard = channel.plan.kind === "hard-side" && !!service.punchRoute;
  // The route's table is made while the search runs: when it meets, the route is one transaction.
  if (hard)
    service.preparePunchRoute?.(sessionId).catch((err) => log.warn({ err: (err as Error).message, sessionId }, "the punch route could not be prepared"));
  let told = "";
  const tell = (kind: DirectPath["kind"], tunnel: { address: string; port: number }) => {
    // The consumer may have moved (a router's mapping lost and punched again): tell the tunnel each time.
    if (o.ended() || o.relayed() || tunnel.address === told) return;
    told = tunnel.address;
    service.directRoute!(sessionId, { kind, address: tunnel.address, tunnelPort: tunnel.port }).catch((err) =>
      log.warn({ err: (err as Error).message, sessionId }, "the tunnel could not take the direct route"),
    );
  };
  /** Where the consumer's tunnel is, as the punch saw it (its router's port); undefined: as the path says; null: no way. */
  const routed: Promise<{ address: string; port: number } | null | undefined> = hard
    ? channel
        .tunnelPunch(TUNNEL_PUNCH_MS)
        .then(async (punch) => {
          await service.punchRoute!(sessionId, punch);
          log.info({ sessionId, punch }, "the tunnel sends to the consumer from the probe that met its tunnel");
          const tunnel = { address: punch.address, port: punch.port };
          // Not on a shared LAN: there the channel's local path (below) is the tunnel's.
          if (!channel.plan.sharedLan && channel.path?.kind !== "local") tell("punched", tunnel);
          return tunnel;
        })
        .catch((err) => {
          log.info({ sessionId, reason: (err as Error).message }, "the consumer's tunnel did not reach a probing socket");
          return null;
        })
    : Promise.resolve(undefined);
  channel.on("up", (path) => {
    // A consumer on our LAN needs no route of ours (no router between us).
    void (path.kind === "local" ? Promise.resolve(undefined) : routed).then((punched) => {
      if (punched !== null) tell(path.kind, punched ?? { address: path.address, port: consumerTunnelPort });
    });
  });
}
