import crypto from "node:crypto";
import { peerCodeOf, subjectOf, type Dialog, type Dialogs } from "../dialog/dialogs";
import { silentLogger, type Logger } from "../log/logger";
import { DirectChannelError } from "../nat/direct/channel";
import type { DirectOffer } from "../nat/direct/candidates";
import type { DirectPeering, PreparedChannel } from "../nat/direct/peering";
import { reachableWithoutPunch } from "../nat/direct/peering";
import { shareLan } from "../nat/direct/plan";
import { natsContactOf, parseSignedProposal, type Proposal, type SignedProposal } from "../proposal/proposal";
import { SessionError, SessionRefusedError } from "./errors";
import { SERVICE_AVAILABILITY, SESSION_CONFIRM, SESSION_CREATE, SESSION_DESTROY, SESSION_NOTICE, SESSION_RELAY, check, type Availability } from "./messages";
import type { ConnectStages } from "./stages";
import { connectGuarded } from "./guarded-connect";
import { traced, tracedSync } from "../log/connect-trace";
import type { ConnectOptions } from "./connect-options";
import { type DirectRoute, sameEndpoint, type Tunnel } from "./service";
import { ConsumerSession, type RelayLeg, type SessionPath } from "./consumer-session";
import { announcedAddressesOf, directTunnelRoute, peerSendsFirst, publicAddressesOf, tunnelCannotFollow } from "./offer-addresses";
import { TunnelSprayWatch, tunnelAheadOfChannel, tunnelMaySpray, withChannel } from "./tunnel-ahead";
import { type KillSwitchPassage, passageThrough, type RelayOpener, type RelayToOpen, tcpRelayFor, withGrant, heldHereAfter } from "./relay-opener";
import { prepareOffer } from "./udp-blocked";

export type { RelayOpener } from "./relay-opener";

export type { ConnectOptions };

/** Opens sessions with providers over dialogs. */
export class ConsumerSessions {
  readonly #log: Logger;
  readonly #outageToleranceMs: number;

  readonly #direct?: DirectPeering;
  readonly #knownUdpBlocked?: () => boolean;

  constructor(
    private readonly dialogs: Dialogs,
    /** `knownUdpBlocked`: the node's own reachability says UDP gets nothing back here (udp-blocked.ts). */
    options: { log?: Logger; outageToleranceMs?: number; direct?: DirectPeering; knownUdpBlocked?: () => boolean } = {},
  ) {
    this.#log = options.log ?? silentLogger;
    this.#outageToleranceMs = options.outageToleranceMs ?? 120_000;
    this.#direct = options.direct;
    this.#knownUdpBlocked = options.knownUdpBlocked;
  }

  /**
   * Asks `provider` on its own subject whether it offers `serviceType` now, and why not (a consumer
   * that finds no proposal in discovery). Undefined when it does not answer, or answers out of shape.
   */
  async availability(provider: string, serviceType: string, timeoutMs = 3000): Promise<Availability | undefined> {
    let dialog: Dialog | undefined;
    try {
      dialog = await this.dialogs.open(provider, subjectOf(provider));
      const answer = await dialog.request(SERVICE_AVAILABILITY, { serviceType }, { timeoutMs });
      // The provider's words: its code must be one of the documented refusal codes.
      return check.availabilityResponse.Check(answer) && answer.serviceType === serviceType ? answer : undefined;
    } catch (err) {
      this.#log.debug({ provider, err: (err as Error).message }, "the provider did not say whether it offers the service");
      return undefined;
    } finally {
      dialog?.close();
    }
  }

  /**
   * Joins the session through a relay: opens the paid relay (the opener picks it), lets the
   * provider's public addresses in, and tells the provider, inside the signed dialog, where to send.
   */
  async #relayed(
    open: RelayOpener,
    o: {
      sessionId: string;
      dialog: Dialog;
      proposal: Proposal;
      signedProposal: SignedProposal;
      peerOffer?: DirectOffer;
      serviceConfig: unknown;
      udpBlocked: boolean;
      timeoutMs: number;
      passage?: KillSwitchPassage;
      /** Relays not to use (one that just died). */
      avoid?: string[];
      stages?: ConnectStages;
      /** A relay already being opened (while the provider was asked): used instead of opening one. */
      opened?: Promise<RelayLeg>;
      tunnelPort?: number;
    },
  ): Promise<RelayLeg> {
    const addresses = o.peerOffer ? publicAddressesOf(o.peerOffer) : [];
    if (addresses.length === 0) {
      await o.opened?.then((leg) => leg.close("the provider named no public address a relay could let in")).catch(() => undefined);
      throw new SessionError("NO_RELAY", "the provider named no public address a relay could let in");
    }
    const leg = await this.#legFor(addresses, open, o);
    try {
      await leg.permit(addresses);
      o.stages?.mark("relay permission");
      await o.dialog.request(
        SESSION_RELAY,
        {
          sessionId: o.sessionId,
          address: leg.relayed.address,
          port: leg.relayed.port,
          relay: leg.provider,
          transport: leg.transport,
          relayProposal: leg.proposal,
        },
        { timeoutMs: o.timeoutMs },
      );
      o.stages?.mark("session.relay answered");
    } catch (err) {
      await leg.close("the provider could not be told the relayed address").catch(() => undefined);
      throw err;
    }
    this.#log.info({ sessionId: o.sessionId, relay: leg.provider, relayed: leg.relayed, via: leg.outside }, "relayed");
    return leg;
  }

  /** The relay leg for these provider addresses: the one opened early when it was told them all, else a new one. */
  async #legFor(addresses: string[], open: RelayOpener, o: Omit<RelayToOpen, "peers"> & { opened?: Promise<RelayLeg> }): Promise<RelayLeg> {
    const early = await o.opened;
    if (early && addresses.every((a) => early.peers.includes(a))) return early;
    await early?.close("the provider's answer names addresses the relay was not told").catch(() => undefined);
    return this.#openRelay(open, { ...o, peers: addresses });
  }

  #openRelay(open: RelayOpener, o: RelayToOpen): Promise<RelayLeg> {
    return open({
      udpBlocked: o.udpBlocked,
      peers: o.peers,
      providerProposal: o.signedProposal,
      providerCountry: o.proposal.location.country,
      avoid: [o.proposal.provider, ...(o.avoid ?? [])],
      passage: o.passage,
      stages: o.stages,
      tunnelPort: o.tunnelPort,
    });
  }

  async connect(options: ConnectOptions): Promise<ConsumerSession> {
    return this.#connect(options).catch((err) => heldHereAfter(err, options, (o) => this.#connect(o)));
  }

  async #connect(options: ConnectOptions): Promise<ConsumerSession> {
    const started = Date.now();
    const timeoutMs = options.timeoutMs ?? 10_000;
    const { proposal } = parseSignedProposal(options.proposal);
    if (proposal.serviceType !== options.service.type) {
      throw new SessionError("SERVICE_MISMATCH", `the proposal is for ${proposal.serviceType}, not ${options.service.type}`);
    }
    const contact = natsContactOf(proposal);
    if (!contact) throw new SessionError("NO_CONTACT", "the proposal has no nats/v1 contact");
    // A tunnel that cannot punch (OpenVPN) to a provider reachable only by punching fails at once, saying why (a proxy goes through a relay).
    const tcpRelay = await tcpRelayFor(options, proposal);

    const stages = options.stages;
    // What the tunnel and the kill switch need is made while the provider is asked (WireGuard's
    // device and process, the guard table disarmed): the tunnel phase then only configures them.
    // Undone when the session does not come to use them. The guard table needs nothing of the
    // session, so it is sent first: its install (the longest of these) runs beside the dialog's opening too.
    const protection = options.service.plan ? options.protection : undefined;
    try {
      if (protection?.prepare) tracedSync("kill switch: prepare (its synchronous part)", () => protection.prepare!());
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, "the kill switch could not be prepared; it is built when the tunnel is planned");
    }
    let dialog: Dialog | undefined;
    let consumerData: unknown;
    try {
      dialog = await traced("dialog opened", this.dialogs.open(proposal.provider, contact.subject));
      stages?.mark("dialog open");
      consumerData = withGrant(await traced("service: consumerData", options.service.consumerData()), tcpRelay);
    } catch (err) {
      // Nothing of the session was used: the prepared kill switch, the paid TCP relay leg and the dialog go.
      dialog?.close();
      await Promise.all([protection?.discard?.(), tcpRelay?.close("the session did not come up")]).catch((e) =>
        this.#log.error({ err: (e as Error).message }, "undoing what was prepared for the session failed"),
      );
      throw err;
    }
    let response: unknown;
    const correlationId = crypto.randomBytes(8).toString("hex");
    // A kill switch holds already (a reconnect): a relay's TURN server is let through it alone, and
    // no STUN or punch goes out (it would not pass; the relay is taken at once where a punch was needed).
    const holding = protection?.holds?.() === true;
    options.service.prepare?.(consumerData, { spray: !tcpRelay && !holding && options.direct !== false && tunnelMaySpray(proposal) });
    const passage = passageThrough(protection);
    /** A relay opened while the provider is asked (when one will be needed anyway), until the session takes it. */
    let early: Promise<RelayLeg> | undefined;
    const dropEarly = async (): Promise<void> => {
      const leg = early;
      early = undefined;
      await leg?.then((l) => l.close("the session did not come to use the relay")).catch(() => undefined);
    };
    const discardPrepared = () =>
      Promise.all([options.service.discard?.(consumerData), protection?.discard?.(), dropEarly(), tcpRelay?.close("the session did not come up")]).catch(
        (err) => this.#log.error({ err: (err as Error).message }, "undoing what was prepared for the tunnel failed"),
      );
    let prepared: PreparedChannel | undefined;
    // UDP blocked here (our STUN probes got nothing back, now or in the node's last measurement): no
    // direct path can exist; with a relay, TURN over TLS at once.
    let udpBlocked = false;
    try {
      if (options.direct !== false && !tcpRelay)
        ({ prepared, udpBlocked } = await prepareOffer(
          this.#direct,
          this.#knownUdpBlocked?.() === true,
          options.service.tunnelPortFor?.(consumerData),
          holding,
        ));
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, "no direct channel for this session (the broker carries it)");
    }
    stages?.mark("direct offer (STUN) made");
    // A relay will be needed whatever the provider answers: found, negotiated and allocated while the
    // provider is asked (measured: 80 ms of a relayed connect, in series before).
    const announced = announcedAddressesOf(proposal);
    if (options.relay && options.service.tunnelPortFor && (udpBlocked || options.viaRelay) && announced.length > 0) {
      early = this.#openRelay(options.relay, {
        proposal,
        signedProposal: options.proposal,
        udpBlocked,
        stages,
        tunnelPort: options.service.tunnelPortFor(consumerData),
        peers: announced,
        passage,
      });
      early.catch(() => undefined);
    }
    try {
      response = await dialog.request(
        SESSION_CREATE,
        {
          proposal: options.proposal,
          correlationId,
          consumerData,
          ...(options.maxPrice ? { maxPrice: options.maxPrice } : {}),
          ...(prepared ? { direct: prepared.offer } : {}),
        },
        { timeoutMs },
      );
    } catch (err) {
      prepared?.discard();
      dialog.close();
      await discardPrepared();
      if (peerCodeOf(err) === "SENDER_UNREGISTERED") throw new SessionRefusedError("CONSUMER_UNREGISTERED", (err as Error).message);
      throw err;
    }
    if (!check.createResponse.Check(response) || "refused" in response || !response.accepted.direct) prepared?.discard();
    if (!check.createResponse.Check(response)) {
      dialog.close();
      await discardPrepared();
      const first = check.createResponse.Errors(response).First();
      throw new SessionError(
        "BAD_RESPONSE",
        `the provider's answer to session.create is malformed (${first ? `${first.path || "/"}: ${first.message}` : "schema"})`,
      );
    }
    if ("refused" in response) {
      dialog.close();
      await discardPrepared();
      throw new SessionRefusedError(response.refused.code, response.refused.message);
    }
    const { sessionId, serviceConfig, keepaliveMs } = response.accepted;
    const accepted = Date.now();
    stages?.mark("provider accepted", accepted);

    // The direct channel: punched now, in parallel with the provider's probes. When the provider
    // can be reached only by punching, the tunnel waits for the path (and fails fast without one);
    // otherwise the channel comes up beside the tunnel and takes the session's messages when it can.
    const peerOffer = response.accepted.direct;
    // No spray while a kill switch holds (a reconnect): it would refuse every probe.
    const sprayer = !holding && peerOffer?.tunnelMeets ? options.service.sprayFromTunnel?.bind(options.service, consumerData) : undefined;
    const spray = sprayer ? new TunnelSprayWatch(sprayer) : undefined;
    const channel = prepared && peerOffer ? prepared.open(sessionId, "consumer", peerOffer, { sprayFromTunnel: spray?.send }) : undefined;
    // The provider's tunnel will send first: ours knows its key before any probe leaves (so before its handshake can come).
    if (channel && peerSendsFirst(peerOffer!)) await options.service.expectPeer?.(consumerData, serviceConfig);
    const punching = channel?.connect();
    let route: DirectRoute | undefined;
    let tunnelPath: SessionPath["tunnel"] = tcpRelay ? "relayed" : "public";
    // The provider's router keeps its tunnel's port mapped: the tunnel goes there, no punch — unless
    // both nodes share a LAN (a router seldom loops its own public address back inside).
    const viaMappedTunnel = peerOffer?.tunnelMapped === true && !(prepared && shareLan(prepared.offer, peerOffer));
    let channelPath: { address: string; port: number } | undefined;
    let relay: RelayLeg | undefined = tcpRelay;
    /** What every relay of this session is opened with (the first, and one that replaces a dead one). */
    const relaying = { sessionId, dialog, proposal, signedProposal: options.proposal, peerOffer, serviceConfig, udpBlocked, timeoutMs };
    // The relay's forwarder answers only the tunnel's own socket: its port when it is sure (a tunnel that
    // followed a hard-side punch took the probe's port; then the first local socket to send is taken for it).
    let tunnelPort: number | undefined;
    const viaRelay = async (why: string): Promise<void> => {
      tunnelPort = route?.localPort === undefined ? options.service.tunnelPortFor?.(consumerData) : undefined;
      try {
        stages?.mark(`direct path given up (${why.slice(0, 60)})`);
        const opened = early;
        early = undefined;
        relay = await this.#relayed(options.relay!, {
          ...relaying,
          passage,
          stages,
          opened,
          tunnelPort,
        });
      } catch (err) {
        channel?.close();
        const reason = `${why}; ${(err as Error).message}`;
        await dialog.request(SESSION_CONFIRM, { sessionId, ok: false, reason: reason.slice(0, 500) }, { timeoutMs }).catch(() => undefined);
        dialog.close();
        await discardPrepared();
        throw new SessionError("NO_RELAY", `cannot reach the provider directly (${why}), and no relay joined us: ${(err as Error).message}`, { cause: err });
      }
      channel?.close();
      route = { kind: "relayed", address: relay.local.address, tunnelPort: relay.local.port, outside: relay.outside };
      tunnelPath = "relayed";
    };
    const relayable = !!options.relay && !!peerOffer && !!options.service.tunnelPortFor;
    if (options.viaRelay && !relayable) {
      channel?.close();
      const why = options.service.tunnelPortFor
        ? "the provider sent no direct offer (its public addresses)"
        : `a ${proposal.serviceType} tunnel cannot be relayed`;
      await dialog.request(SESSION_CONFIRM, { sessionId, ok: false, reason: why }, { timeoutMs }).catch(() => undefined);
      dialog.close();
      await discardPrepared();
      throw new SessionError("NO_RELAY", `cannot go through a relay: ${why}`);
    }
    const punchNeeded = !!peerOffer && !viaMappedTunnel && !reachableWithoutPunch(peerOffer) && peerOffer.mapping !== "unknown";
    const relayNow = relayable && (udpBlocked || options.viaRelay || (holding && punchNeeded));
    if (!relayNow) await dropEarly();
    if (relayNow) {
      await viaRelay(udpBlocked ? "UDP gets nothing back here" : holding ? "the kill switch holds: no punch passes it" : "asked to go through a relay");
    } else if (peerOffer && punching && punchNeeded && (route = tunnelAheadOfChannel(channel!.plan, peerOffer, prepared?.offer, !!spray))) {
      // The tunnels meet by their own search (ours answers the provider's first handshake), the channel beside it:
      // the tunnel comes up during the search (kill switch, routes) and its handshake wait is the meeting,
      // ended at once when the meeting cannot come (the spray failed or missed: `TunnelSprayWatch`).
      tunnelPath = "punched";
      spray?.watch();
      punching.then(
        () => stages?.mark("direct path met"),
        (err) => this.#log.info({ sessionId, reason: (err as Error).message }, "no direct channel; the broker carries the session"),
      );
    } else if (peerOffer && punching && punchNeeded) {
      try {
        const path = await punching;
        stages?.mark("direct path met");
        // The channel met (a birthday search); the tunnel follows only when it met too (offer-addresses.ts).
        // When it cannot, a relay's case, said at once.
        const cannot = path.kind === "local" ? undefined : tunnelCannotFollow(peerOffer, prepared?.offer, !!spray);
        if (cannot) throw new DirectChannelError("NO_DIRECT_PATH", cannot);
        tunnelPath = path.kind === "local" ? "local" : "punched";
        channelPath = path;
        if (peerOffer.tunnelPort && channel?.plan.kind === "hard-side" && path.kind !== "local") {
          // Our router maps per destination: the tunnel takes the socket the provider's tunnel port reached.
          const punch = await channel.tunnelPunch(3000);
          route = { kind: "punched", address: punch.address, tunnelPort: punch.port, localPort: punch.localPort };
        } else if (peerOffer.tunnelPort) route = directTunnelRoute(path, peerOffer, peerOffer.tunnelPort);
      } catch (err) {
        const reason = err instanceof DirectChannelError ? err.message : String(err);
        if (relayable) await viaRelay(reason);
        else {
          channel?.close();
          await dialog.request(SESSION_CONFIRM, { sessionId, ok: false, reason: reason.slice(0, 500) }, { timeoutMs }).catch(() => undefined);
          dialog.close();
          await discardPrepared();
          throw new SessionError("NO_DIRECT_PATH", `cannot reach the provider directly: ${reason}`, { cause: err });
        }
      }
    } else {
      if (viaMappedTunnel || peerOffer?.candidates.some((c) => c.kind === "mapped")) tunnelPath = "mapped";
      punching?.catch((err) => this.#log.info({ sessionId, reason: (err as Error).message }, "no direct channel; the broker carries the session"));
    }

    let tunnel: Tunnel | undefined;
    const bringUp = async (): Promise<void> => {
      const giveUp = relay ? undefined : spray?.signal; // the tunnels cannot meet: the handshake wait ends at once
      const target = { id: sessionId, provider: proposal.provider, serviceConfig, ...(route ? { route } : {}), stream: relay?.stream, giveUp };
      const planned = protection ? await options.service.plan!(target) : undefined;
      // The kill switch lets the direct channel's packets out too: to each of the provider's candidates.
      const searching = !channelPath && route?.peerSendsFirst && prepared ? { address: route.address, localPort: prepared.socket.address().port } : undefined;
      const plan = planned && peerOffer && channel && !relay ? withChannel(planned, peerOffer, { path: channelPath, searching }) : planned;
      const onEngaged = () => stages?.mark("kill switch engaged");
      tunnel = await traced("tunnel connected", connectGuarded(options.service, target, plan && protection ? { protection, plan } : undefined, onEngaged));
      if (plan) await traced("kill switch: tunnelUp", protection!.tunnelUp({ device: plan.device, dns: tunnel.dns ?? [], ipv6: tunnel.ipv6 ?? false }));
    };
    try {
      try {
        await bringUp();
      } catch (err) {
        // The channel met but the tunnel could not follow it (a router that maps the provider's one
        // tunnel port per destination): the same session through a relay.
        if (tunnelPath !== "punched" || !relayable || relay) throw err;
        await tunnel?.stop().catch(() => undefined);
        tunnel = undefined;
        await viaRelay(`the tunnel did not come up on the punched path: ${(err as Error).message}`);
        await bringUp();
      }
    } catch (err) {
      const failed = tunnel as Tunnel | undefined;
      await failed?.stop().catch(() => undefined);
      await (relay as RelayLeg | undefined)?.close("the relayed tunnel did not come up").catch(() => undefined);
      await discardPrepared();
      await protection?.abandon().catch((e) => this.#log.error({ err: (e as Error).message }, "undoing the kill switch failed"));
      if (err instanceof SessionError && err.code === "NO_RELAY") throw err;
      const reason = err instanceof Error ? err.message : String(err);
      await dialog.request(SESSION_CONFIRM, { sessionId, ok: false, reason: reason.slice(0, 500) }, { timeoutMs }).catch(() => undefined);
      dialog.close();
      channel?.close();
      throw new SessionError("TUNNEL_FAILED", `could not bring the ${proposal.serviceType} tunnel up: ${reason}`, { cause: err });
    }
    if (!tunnel) throw new SessionError("TUNNEL_FAILED", "the tunnel did not come up");
    spray?.met();
    // The relay is credited only for what the session's WireGuard authenticated (a forging relay's frames are not).
    relay?.capBy(tunnel);
    const tunnelUp = Date.now();
    stages?.mark("tunnel up (handshake)", tunnelUp);
    try {
      await traced("session.confirm answered", dialog.request(SESSION_CONFIRM, { sessionId, ok: true, path: tunnelPath }, { timeoutMs }));
      stages?.mark("confirmed");
    } catch (err) {
      await tunnel.stop().catch(() => undefined);
      await relay?.close("the session was not confirmed").catch(() => undefined);
      await protection?.abandon().catch(() => undefined);
      dialog.close();
      channel?.close();
      throw err;
    }
    const session = new ConsumerSession(
      sessionId,
      proposal.provider,
      proposal,
      dialog,
      tunnel,
      serviceConfig,
      {
        started,
        accepted,
        tunnelUp,
        confirmed: Date.now(),
      },
      this.#log,
      relay ? undefined : channel,
      tunnelPath,
      relay,
    );
    // From now on the session's messages (keepalives, invoices, promises, the end) take the
    // direct channel whenever it is up, and the broker when it is not.
    if (channel && !relay) dialog.useTransport(channel);
    // The relay died: WireGuard's liveness probe notices the silence and ends the session (moving to another relay is not done yet).
    relay?.onDown((reason) => this.#log.warn({ sessionId, reason }, "the session's relay went down"));
    dialog.on(SESSION_NOTICE, (body) => {
      if (!check.notice.Check(body) || body.sessionId !== sessionId) return;
      session.notice = { reason: body.reason, endsAt: Date.now() + body.endsInMs };
      this.#log.warn({ sessionId, reason: body.reason, endsInMs: body.endsInMs }, "the provider will end the session");
    });
    dialog.on(SESSION_DESTROY, (body) => {
      const b = body as { sessionId?: string; reason?: string };
      if (b?.sessionId === sessionId) void session.finish(`provider ended it: ${String(b.reason ?? "no reason").slice(0, 200)}`);
    });
    // A relayed tunnel that goes silent (its relay died, or stopped relaying): the same session
    // through another relay, the tunnel keeping its keys; only when none joins us does it end.
    const up = tunnel;
    const onDown = async (reason: string): Promise<void> => {
      const old = session.relay;
      if (session.state === "ended") return;
      if (old && up.reroute && options.relay) {
        try {
          const leg = await this.#relayed(options.relay, {
            ...relaying,
            avoid: [old.provider],
            tunnelPort,
            // The next relay is reached outside the tunnel (which the dead one carried): exactly its
            // TURN server is let through the kill switch, one change to the rules, nothing else opened.
            passage: passageThrough(protection, async (address) => up.exempt?.(address)),
          });
          leg.capBy(up, up.stats());
          await up.reroute({ kind: "relayed", address: leg.local.address, tunnelPort: leg.local.port, outside: leg.outside }).catch(async (err) => {
            await leg.close("the tunnel could not move to it").catch(() => undefined);
            throw err;
          });
          // The dead relay's server leaves the session's rules once the tunnel has left it (its allocation's own admission goes as it closes).
          if (!sameEndpoint(old.outside, leg.outside)) await protection?.retire?.([old.outside]);
          session.relay = leg;
          session.emit("path", session.path);
          this.#log.warn({ sessionId, from: old.provider, to: leg.provider, reason }, "the relay went silent: moved to another relay");
          up.onDown((r) => void onDown(r));
          void old.close("the consumer moved to another relay");
          return;
        } catch (err) {
          this.#log.warn({ sessionId, err: (err as Error).message }, "no other relay took the session");
        }
      }
      void session.destroy(`tunnel down: ${reason}`);
    };
    tunnel.onDown((reason) => void onDown(reason));
    session.keepAlive(keepaliveMs, { connected: () => this.dialogs.connected, outageToleranceMs: this.#outageToleranceMs });
    this.#log.info({ sessionId, provider: proposal.provider }, "session active");
    return session;
  }
}
