import { EventEmitter } from "node:events";
import { Confinement, recoverConfinement } from "../../consumer-protection/confined";
import { carriesOwnConnections, controlEndpoints, type ControlEndpoint } from "../../consumer-protection/control-endpoints";
import { ConsumerProtection } from "../../consumer-protection/protection";
import { leftProtection, recoverProtection, type LeftProtection } from "../../consumer-protection/left-protection";
import { connectionStatus, type Connection, type ConnectionStatus } from "../../daemon/consumer-node";
import type { NodeCore } from "../../daemon/core";
import { protectedStatus, type ProtectedStatus } from "../../daemon/protected-status";
import { MystError, isMystError } from "../../errors/MystError";
import { consumerService } from "../../services/catalog";
import type { ConsumerService } from "../../session/service";
import { SessionError, SessionRefusedError } from "../../session/errors";
import type { RefusalCode } from "../../session/messages";
import type { ReconnectStatus } from "../../session/reconnect";
import { Reconnector } from "./reconnect";
import type { ConnectRequest, WantedConnection } from "./request";

/** A connection's status with the reconnect in progress (or the last one). */
export type ConnectionView =
  | (Omit<ProtectedStatus, "state"> & {
      state: ProtectedStatus["state"] | "reconnecting";
      reconnect?: ReconnectStatus;
      confined?: ReturnType<Confinement["describe"]>;
      /** Why the last connect failed: a blocked connection shows why a new connect did not replace the block. */
      lastFailure?: ConnectFailure;
    })
  | { state: "disconnected" | "connecting"; sessionId?: string; endReason?: string; lastFailure?: ConnectFailure }
  /** No myst runs, but one that died while connected left its kill switch (or resolver settings) in force. */
  | { state: "blocked" | "disconnected"; leftBehind: LeftProtection };

/** A proxy connection beside the main one, as the status lists it. */
export interface BesideConnection {
  sessionId: string;
  provider: string;
  listen: string;
  bytesIn: number;
  bytesOut: number;
  promisedWei: string;
}

/**
 * Why a connect failed, as the person who asked is shown it: our code, and when the provider
 * refused, its refusal code (checked against the documented list at the dialog edge) and words.
 */
export interface ConnectFailure {
  at: string;
  code: string;
  refusal?: RefusalCode;
  message: string;
}

function connectFailure(err: unknown): ConnectFailure {
  const at = new Date().toISOString();
  if (err instanceof SessionRefusedError) return { at, code: err.code, refusal: err.refusal, message: err.message };
  return isMystError(err) ? { at, code: err.code, message: err.message } : { at, code: "INTERNAL", message: "internal error (see the node's log)" };
}

/** A connect in progress: `cancelled` names who gave it up (a disconnect, the node's stop); `done` settles when it has ended. */
interface Attempt {
  cancelled?: string;
  done: Promise<void>;
}

/**
 * The node's one connection as a consumer: connect (with kill switch, DNS and IPv6 handling, or
 * confined to a namespace), follow it (a session that ends by itself leaves the kill switch
 * holding, or reconnects), disconnect. Emits "change" when its state changes (the event stream
 * follows it).
 */
export class ConnectionOps extends EventEmitter<{ change: [] }> {
  readonly #core: NodeCore;
  readonly #reconnect: Reconnector;
  #connecting = false;
  /** The connection's kill switch, DNS and IPv6 handling; outlives the session while it blocks. */
  #protection?: ConsumerProtection;
  #lastControl?: ControlEndpoint[];
  /** The confined namespace of a `confine` connection; outlives the session until disconnect. */
  #confinement?: Confinement;
  /** Cleared by disconnect and stop: a session that ends afterwards was ended on purpose. */
  #wanted?: WantedConnection;
  /** Why the last connect failed (the provider's refusal code and words), until one succeeds. */
  #lastFailure?: ConnectFailure;
  /**
   * Settles when the last watched session's end has been taken in (its kill switch blocking, a reconnect started, or
   * its protection lifted): what a connect or disconnect made while it winds down (its tunnel stopping) acts on.
   */
  #settled: Promise<void> = Promise.resolve();
  /** The connect in progress: a disconnect (or the stop) meanwhile cancels it, saying why, and waits for its negotiation to end. */
  #attempt?: Attempt;
  /**
   * Settles when the disconnects and the stop made so far have lifted what they lift: a connect made meanwhile decides
   * whether to take over a block only after that (a block being lifted is not one to take over).
   */
  #ending: Promise<void> = Promise.resolve();

  constructor(core: NodeCore) {
    super();
    this.#core = core;
    this.#reconnect = new Reconnector(core, { isWanted: (w) => this.#wanted === w, watch: (c, w) => this.#watch(c, w) });
  }

  /**
   * Whether this connection's tunnel, or its kill switch between sessions, holds the node's own
   * traffic: protection engaged (a tunnel that routes everything) in the node's own namespace.
   */
  holdsOwnTraffic(): boolean {
    const protection = this.#protection;
    return !!protection && protection.state !== "off" && carriesOwnConnections(protection.options.netns);
  }

  async connect(request: ConnectRequest): Promise<ProtectedStatus & { confined?: ReturnType<Confinement["describe"]> }> {
    const { config, log } = this.#core;
    if (this.#connecting) throw new SessionError("ALREADY_CONNECTING", "a connection is being set up");
    if (this.#reconnect.running) throw new SessionError("ALREADY_CONNECTING", "the connection is reconnecting: `myst disconnect` first");
    if (request.reconnect && request.killSwitch === false)
      throw new MystError("BAD_REQUEST", "--reconnect keeps the kill switch between sessions: it cannot be combined with --no-kill-switch");
    if (request.confine && request.reconnect) throw new MystError("BAD_REQUEST", "a confined connection (myst run) does not reconnect: leave out --reconnect");
    const { key, consumer, spares } = this.#core.online();
    const service = consumerService(request.serviceType, {
      key,
      spares,
      dataDir: config.dataDir,
      netns: request.netns,
      log,
      routeAll: !request.confine,
      listen: request.listen,
      tunnelCheck: { name: config.tunnelCheckName, url: config.tunnelCheckUrl },
    });
    if (request.listen !== undefined && service.plan)
      throw new MystError("BAD_REQUEST", `--listen is for a service without a tunnel (a local proxy port); a ${request.serviceType} tunnel routes the machine`);
    const current = consumer.current;
    if (current && current.session.state === "active") {
      // A local proxy port needs no route and no kill switch: it runs beside whatever else is up.
      if (request.listen !== undefined && !request.confine && !request.reconnect) return this.#connectAlongside(request, service);
      throw new SessionError("ALREADY_CONNECTED", `already connected (session ${current.session.id}): disconnect first`);
    }
    if (request.confine && !service.plan)
      throw new MystError("BAD_REQUEST", `a ${request.serviceType} tunnel cannot be confined to a namespace (it declares no tunnel device)`);
    this.#connecting = true;
    this.emit("change");
    const attempt: Attempt = { done: Promise.resolve() };
    const connecting = this.#connectNow(request, service, attempt);
    attempt.done = connecting.then(
      () => undefined,
      () => undefined,
    );
    this.#attempt = attempt;
    try {
      return await connecting;
    } finally {
      // Whatever failed on the way (a lift, a handover), the next connect is not refused.
      this.#connecting = false;
      this.#attempt = undefined;
      this.emit("change");
    }
  }

  async #connectNow(
    request: ConnectRequest,
    service: ConsumerService,
    attempt: Attempt,
  ): Promise<ProtectedStatus & { confined?: ReturnType<Confinement["describe"]> }> {
    const { config, log, metrics } = this.#core;
    const { consumer, guardSpare } = this.#core.online();
    // A disconnect (or the stop) made before this connect lifts first: what it lifts is not a block to take over.
    await this.#ending;
    // A session that ended by itself and is still winding down is taken in first (the status says so meanwhile): its
    // kill switch blocks, or a reconnect runs. The connect then reads the state the status showed.
    await this.#settledEnd();
    if (this.#reconnect.running) throw new SessionError("ALREADY_CONNECTING", "the connection is reconnecting: `myst disconnect` first");
    // The node's own connections go through the tunnel only when it is in the node's namespace:
    // their endpoints, resolved while the resolver still answers.
    const control = service.plan && !request.confine && carriesOwnConnections(request.netns) ? await this.#controlEndpoints() : undefined;
    let connection: Connection;
    // This connection's kill switch blocks (its session ended) and the new one has the kill switch, in the same place:
    // the block stays in force until the new session's rules replace it; a failed connect leaves it blocking. Otherwise
    // (--no-kill-switch, another namespace, confined, a proxy) it is lifted first, as the user chose.
    const last = this.#protection;
    const handOver =
      !!service.plan &&
      !request.confine &&
      request.killSwitch !== false &&
      last?.state === "blocked" &&
      last.options.killSwitch &&
      last.options.netns === request.netns;
    const protection =
      service.plan && !request.confine
        ? new ConsumerProtection({
            killSwitch: request.killSwitch !== false,
            allowLan: !!request.allowLan,
            netns: request.netns,
            control,
            dataDir: config.dataDir,
            spare: guardSpare,
            log,
          })
        : undefined;
    // Handed over at once, with nothing awaited since the check: the block is the new connection's from here.
    if (handOver) {
      last!.handOver(protection!);
      this.#protection = protection;
    } else await last?.lift();
    await this.#confinement?.remove();
    const confinement = request.confine ? new Confinement({ netns: request.netns, dataDir: config.dataDir, log }) : undefined;
    this.#confinement = confinement;
    this.#protection = protection;
    this.#reconnect.status = undefined;
    const cancelled = () => new SessionError("SESSION_ENDED", `${attempt.cancelled} came while this connect negotiated: it was given up`);
    try {
      if (attempt.cancelled) throw cancelled();
      connection = await consumer.connect({
        provider: request.provider,
        filter: request.filter,
        service,
        protection: confinement ?? protection,
        viaRelay: request.viaRelay,
      });
      // `myst disconnect` came while this negotiated: the disconnect wins (it lifts the kill switch once this has failed).
      if (attempt.cancelled) {
        await connection.session.destroy("consumer disconnected");
        throw cancelled();
      }
    } catch (err) {
      metrics.error("connect", (err as MystError).code ?? "INTERNAL");
      this.#lastFailure = connectFailure(err);
      // A candidate whose tunnel came up and then failed its checks left its rules armed: what was in force
      // before the connect comes back (the block it took over, or nothing), and `disconnect` can lift it.
      if (protection?.state === "protecting")
        await protection.abandon().catch((e) => log.error({ err: (e as Error).message }, "undoing a failed connect's kill switch failed"));
      throw err;
    }
    this.#lastFailure = undefined;
    metrics.connected(connection);
    log.info({ sessionId: connection.session.id, provider: connection.session.provider }, "connected");
    const wanted: WantedConnection = { request, service, protection, confinement };
    this.#wanted = wanted;
    this.#watch(connection, wanted);
    return { ...protectedStatus(connectionStatus(connection), protection), ...(confinement ? { confined: confinement.describe() } : {}) };
  }

  /** A connection beside the current one (a proxy on its own port): no protection, no reconnect; it ends at disconnect. */
  async #connectAlongside(request: ConnectRequest, service: ConsumerService): Promise<ProtectedStatus> {
    const { consumer } = this.#core.online();
    let connection: Connection;
    try {
      connection = await consumer.connect({ provider: request.provider, filter: request.filter, service, alongside: true });
    } catch (err) {
      this.#core.metrics.error("connect", (err as MystError).code ?? "INTERNAL");
      throw err;
    }
    this.#core.metrics.connected(connection);
    this.#core.log.info(
      { sessionId: connection.session.id, provider: connection.session.provider, listen: connection.session.tunnel.listen },
      "connected alongside",
    );
    void connection.session.ended.then(() => this.emit("change"));
    this.emit("change");
    return protectedStatus(connectionStatus(connection), undefined);
  }

  /**
   * The node's control endpoints, resolved now; when the names cannot be resolved (a kill switch
   * still holding from the last session lets no DNS out but to its dead provider), the ones this
   * node resolved last time.
   */
  async #controlEndpoints(): Promise<ControlEndpoint[]> {
    try {
      this.#lastControl = await controlEndpoints(this.#core.config);
    } catch (err) {
      if (!this.#lastControl) throw err;
      this.#core.log.warn({ err: (err as Error).message }, "control endpoints not resolved: using the addresses resolved for the last connection");
    }
    return this.#lastControl;
  }

  /**
   * A session that ends by itself (not by disconnect or stop) leaves the kill switch holding (state
   * "blocked") until disconnect; with `reconnect`, a new session is negotiated meanwhile.
   */
  #watch(connection: Connection, wanted: WantedConnection): void {
    this.#settled = connection.session.ended
      .then(async (reason) => {
        this.emit("change");
        if (this.#wanted !== wanted) return;
        if (wanted.confinement) return wanted.confinement.tunnelDown();
        if (!wanted.request.reconnect) return wanted.protection?.tunnelDown();
        this.#reconnect.start(connection, wanted, reason);
      })
      .catch((err) => this.#core.log.error({ err: (err as Error).message }, "taking in the session's end failed"));
  }

  /** Settles once the current session's end, if it ended, has been taken in (`#watch`); at once while it is up. */
  #settledEnd(): Promise<void> {
    const c = this.#core.maybeOnline?.consumer.current;
    return c && c.session.state !== "active" ? this.#settled : Promise.resolve();
  }

  /** Whatever session ends from now on was ended on purpose; a reconnect in progress stops (its attempt finishes first). */
  async #cancelReconnect(): Promise<void> {
    this.#wanted = undefined;
    await this.#reconnect.cancel();
  }

  disconnect(sessionId?: string): Promise<ProtectedStatus | { state: "disconnected"; recovered: string[] }> {
    return this.#ends(() => this.#disconnectNow(sessionId));
  }

  /** Runs a disconnect or the stop; a connect made meanwhile waits for it (and the ones before it) to end (`#ending`). */
  #ends<T>(end: () => Promise<T>): Promise<T> {
    const ending = end();
    const before = this.#ending;
    const settles = () => undefined;
    this.#ending = Promise.all([before, ending.then(settles, settles)]).then(settles);
    return ending;
  }

  async #disconnectNow(sessionId?: string): Promise<ProtectedStatus | { state: "disconnected"; recovered: string[] }> {
    const { config, log } = this.#core;
    const online = this.#core.maybeOnline;
    // One of the connections beside the current one, by its session (`myst run --proxy` ends its own).
    const beside = sessionId ? [...(online?.consumer.alongside ?? [])].find((c) => c.session.id === sessionId) : undefined;
    if (beside) {
      await beside.session.destroy("consumer disconnected");
      this.emit("change");
      return protectedStatus(connectionStatus(beside), undefined);
    }
    // A connect negotiating now loses to this disconnect: it is cancelled (before anything is awaited: a connect made
    // after this disconnect is not given up, it waits for it), and its end awaited (the kill switch it took over keeps
    // blocking meanwhile); a session winding down is taken in first (its kill switch then blocks).
    const attempt = this.#attempt;
    if (attempt) attempt.cancelled ??= "`myst disconnect`";
    // Every connection beside the current one ends with it.
    const besides = [...(online?.consumer.alongside ?? [])];
    await Promise.all(besides.map((c) => c.session.destroy("consumer disconnected")));
    if (!online) {
      // No node held a connection: a myst that died while connected may have left its kill switch in force.
      const recovered = [await recoverProtection(config.dataDir, log), await recoverConfinement(config.dataDir, log)];
      const done = recovered.filter((m): m is string => !!m);
      if (done.length === 0) throw new SessionError("NOT_CONNECTED", "not connected (no node runs for this data dir)");
      return { state: "disconnected", recovered: done };
    }
    await attempt?.done;
    await this.#settledEnd();
    try {
      const wasReconnecting = this.#reconnect.running !== undefined;
      await this.#cancelReconnect();
      this.#reconnect.status = undefined;
      const c = online.consumer.current;
      if (c && c.session.state !== "active" && this.#confinement?.active) {
        await this.#confinement.remove();
        return { ...protectedStatus(connectionStatus(c), this.#protection), state: "disconnected" };
      }
      const protection = this.#protection;
      if (c && c.session.state !== "active" && protection && (protection.state === "blocked" || wasReconnecting || attempt)) {
        await protection.lift();
        // A connect it gave up answers as documented (docs/api.md): not the session before it, nor the one it was granted.
        return attempt ? { state: "disconnected", recovered: [] } : protectedStatus(connectionStatus(c), protection);
      }
      if (c?.session.state !== "active") {
        // The connect it cancelled was the first: nothing of it is left in force.
        if (attempt) return { state: "disconnected", recovered: [] };
        const last = besides.at(-1);
        if (last) return protectedStatus(connectionStatus(last), undefined);
        throw new SessionError("NOT_CONNECTED", "not connected");
      }
      await c.session.tunnel.refresh?.().catch(() => undefined);
      await c.session.destroy("consumer disconnected");
      await protection?.lift();
      await this.#confinement?.remove();
      log.info({ sessionId: c.session.id }, "disconnected");
      return protectedStatus(connectionStatus(c), protection);
    } finally {
      this.emit("change");
    }
  }

  /** The consumer side stops: no reconnect, the session ended, the kill switch and confinement lifted. */
  stopBuying(): Promise<void> {
    return this.#ends(() => this.#stopBuyingNow());
  }

  async #stopBuyingNow(): Promise<void> {
    const { log } = this.#core;
    // A connect negotiating now is given up, as by a disconnect: what it would arm is lifted after it, not before.
    const attempt = this.#attempt;
    if (attempt) attempt.cancelled ??= "the node's stop";
    await this.#cancelReconnect();
    await this.#core.online().consumer.stop();
    await attempt?.done;
    await this.#protection?.lift().catch((err) => log.error({ err: (err as Error).message }, "lifting the kill switch failed"));
    await this.#confinement?.remove().catch((err) => log.error({ err: (err as Error).message }, "removing the confined namespace failed"));
  }

  /** The connection now: state, session, provider, bytes, duration, protection, reconnect, why the last connect failed. */
  status(): ConnectionView & { beside?: BesideConnection[] } {
    const view = this.#status();
    const beside = [...(this.#core.maybeOnline?.consumer.alongside ?? [])].filter((c) => c.session.state === "active");
    if (beside.length === 0) return view;
    return {
      ...view,
      beside: beside.map((c) => {
        const { sessionId, provider, listen, bytesIn, bytesOut, promisedWei } = connectionStatus(c);
        return { sessionId, provider, listen: listen ?? "", bytesIn, bytesOut, promisedWei };
      }),
    };
  }

  #status(): ConnectionView {
    const online = this.#core.maybeOnline;
    if (!online) {
      // An offline node (no myst running here): what a myst that died while connected left in force.
      const left = leftProtection(this.#core.config.dataDir);
      return left ? { state: left.killSwitch ? "blocked" : "disconnected", leftBehind: left } : { state: "disconnected" };
    }
    const c = online.consumer.current;
    const failed = this.#lastFailure ? { lastFailure: this.#lastFailure } : {};
    const reconnect = this.#reconnect.status;
    const now = (state?: "reconnecting" | "blocked", withReconnect = true) => ({
      ...protectedStatus(connectionStatus(c!), this.#protection),
      ...(state ? { state } : {}),
      ...(reconnect && withReconnect ? { reconnect: { ...reconnect } } : {}),
      ...(this.#confinement?.active ? { confined: this.#confinement.describe() } : {}),
      ...failed,
    });
    if (c && this.#reconnect.running) return now("reconnecting");
    // The session ended by itself and is still winding down (its tunnel stopping) before the node
    // takes it in (#watch): what follows is a reconnect or the kill switch holding, not a disconnect;
    // a connect or disconnect made meanwhile waits for it (#settledEnd). A reconnect starts whatever an
    // earlier one of this connection left in the status: not shown, it is not this one.
    const wanted = this.#wanted;
    if (c && c.session.state !== "active" && wanted?.protection && this.#protection?.state === "protecting") {
      if (wanted.request.reconnect) return now("reconnecting", false);
      if (wanted.request.killSwitch !== false) return now("blocked");
    }
    if (c && (c.session.state === "active" || this.#protection?.state === "blocked")) return now();
    // A confined connection whose session ended: its namespace stays, without a route, until disconnect.
    if (c && this.#confinement?.active) return now("blocked");
    if (this.#connecting) return { state: "connecting" };
    // The last connection's end, for whoever follows it (a foreground `myst connect`).
    return c
      ? { state: "disconnected", sessionId: c.session.id, ...(c.session.endReason ? { endReason: c.session.endReason } : {}), ...failed }
      : { state: "disconnected", ...failed };
  }

  /** The live connection's numbers; the last one's after it ended. */
  async statistics(): Promise<
    Pick<ConnectionStatus, "state" | "sessionId" | "bytesIn" | "bytesOut" | "durationSeconds" | "promisedWei" | "invoices" | "phasesMs">
  > {
    const c = this.#core.maybeOnline?.consumer.current;
    if (!c) throw new SessionError("NOT_CONNECTED", "no connection yet");
    if (c.session.state === "active") await c.session.tunnel.refresh?.().catch(() => undefined);
    const { state, sessionId, bytesIn, bytesOut, durationSeconds, promisedWei, invoices, phasesMs } = connectionStatus(c);
    return { state, sessionId, bytesIn, bytesOut, durationSeconds, promisedWei, invoices, phasesMs };
  }
}
