import crypto from "node:crypto";
import type dgram from "node:dgram";
import { EventEmitter } from "node:events";
import { silentLogger, type Logger } from "../../log/logger";
import { CANDIDATE_PRIORITY, orderCandidates, usableCandidates } from "./candidates";
import { searchCandidates, sprayTargets, tunnelSprayDatagrams } from "./birthday";
import { ChannelSockets } from "./channel-sockets";
import { decodeAddress, encodeAddress, FRAME_KIND, FRAME_KIND_OF, type FrameKind, MAX_FRAME_BYTES } from "./channel-codec";
import {
  type ChannelState,
  channelDefaults,
  DirectChannelError,
  type DirectChannelOptions,
  type DirectPath,
  kindRank,
  type Pair,
  type TunnelPunch,
} from "./channel-types";
import { type DirectionKey, openPacket, type PacketDropReason, PacketType, ReplayWindow, sealPacket } from "./packet";
import { bestPossibleRank, planPunch, type PunchPlan } from "./plan";
export { type FrameKind, MAX_FRAME_BYTES } from "./channel-codec";
export { DirectChannelError } from "./channel-types";
export type { ChannelState, DirectChannelErrorCode, DirectChannelOptions, DirectPath, TunnelPunch } from "./channel-types";

/**
 * A direct UDP channel between the two nodes of a session. `connect()` runs the connectivity
 * checks: both sides probe every candidate pair at once (the hole punch: each side's outgoing
 * probe opens its own router for the other's), best kind first; the consumer nominates the best
 * pair that answered. When one side's router maps ports per destination and the other's does
 * not, the hard side probes from many sockets and the easy side sprays a bounded set of random
 * ports (a birthday search, as Tailscale does). Every datagram is sealed (packet.ts): a forged,
 * altered, replayed or oversized one is dropped and counted. Once up, the channel carries the
 * session's dialog frames, keeps the routers' mappings open with keepalives, notices a lost path
 * and probes again until the peer answers (from wherever its router now maps it).
 */
export class DirectChannel extends EventEmitter<{
  up: [path: DirectPath];
  lost: [reason: string];
  dropped: [drop: { reason: PacketDropReason | "not-nominated"; from: string }];
  "tunnel-punched": [punch: TunnelPunch];
  frame: [frame: { kind: FrameKind; corr: number; bytes: Buffer }];
}> {
  readonly #o: Required<Omit<DirectChannelOptions, "log">> & { log: Logger };
  readonly #send: DirectionKey;
  readonly #receive: DirectionKey;
  readonly #window = new ReplayWindow();
  readonly #tunnelWindow = new ReplayWindow();
  #tunnelPunch?: { socket: dgram.Socket; punch: TunnelPunch };
  #tunnelWait = true;
  readonly plan: PunchPlan;
  #seq = 0n;
  #state: ChannelState = "idle";
  #pair?: Pair;
  path?: DirectPath;
  readonly #sockets: ChannelSockets;
  readonly #txids = new Map<string, Pair>();
  /** Sources of the peer's probes we answered with a check of our own (RFC 8445's triggered checks). */
  readonly #triggered = new Set<string>();
  readonly #valid: { pair: Pair; seenAs?: { address: string; port: number }; at: number }[] = [];
  #lastSent = 0;
  #lastHeard = 0;
  #timers: NodeJS.Timeout[] = [];
  #startedAt = 0;
  /** Datagrams handed to a socket and not yet sent: `close` waits for them. */
  #inFlight = 0;
  #drained?: () => void;
  /** Counts of what was dropped, by reason (tests and status read them). */
  readonly drops: Partial<Record<PacketDropReason | "not-nominated", number>> = {};

  constructor(options: DirectChannelOptions) {
    super();
    this.#o = { ...channelDefaults(options), ...options, log: options.log ?? silentLogger };
    const consumer = options.role === "consumer";
    this.#send = consumer ? options.keys.consumerToProvider : options.keys.providerToConsumer;
    this.#receive = consumer ? options.keys.providerToConsumer : options.keys.consumerToProvider;
    this.plan = planPunch(options.own, {
      mapping: options.peer.mapping,
      candidates: usableCandidates(options.peer.candidates, { allowLoopback: options.allowLoopback }),
    });
    // The hard side's probing sockets, bound now (the session's answer is still on its way): bound with
    // the checks, a round's first probe left only 15-130 ms after they began (loopback, load 3).
    const probing = this.plan.kind === "hard-side" ? this.#o.hardSockets : 0;
    this.#sockets = new ChannelSockets(options.socket, probing, (s) => this.#listen(s));
  }

  get state(): ChannelState {
    return this.#state;
  }

  /** Whether dialog frames can go over the channel now. */
  get up(): boolean {
    return this.#state === "up";
  }

  /** The largest dialog envelope a frame carries (a larger one goes over the broker). */
  readonly maxMessageBytes = MAX_FRAME_BYTES;

  /** The local port of the socket the path uses. */
  get localPort(): number | undefined {
    return this.#pair?.socket.address().port;
  }

  /**
   * Runs the checks; resolves with the path once the pair is chosen, or rejects with
   * `NO_DIRECT_PATH` and the reason in words — at once when the plan says no pair can work, else
   * after `deadlineMs`.
   */
  connect(): Promise<DirectPath> {
    if (this.#state !== "idle") throw new DirectChannelError("CHANNEL_CLOSED", `the direct channel is ${this.#state}`);
    if (this.plan.kind === "impossible") {
      this.#state = "failed";
      return Promise.reject(new DirectChannelError("NO_DIRECT_PATH", this.plan.reason));
    }
    this.#state = "checking";
    this.#startedAt = Date.now();
    return new Promise<DirectPath>((resolve, reject) => {
      const done = (err?: Error) => {
        this.off("up", onUp);
        clearTimeout(deadline);
        if (err) reject(err);
      };
      const onUp = (path: DirectPath) => {
        done();
        resolve(path);
      };
      this.once("up", onUp);
      const deadline = setTimeout(() => {
        if (this.#state !== "checking") return;
        this.#state = "failed";
        this.#stopTimers();
        // A failed channel hears nothing more (#onDatagram): its probing sockets go now, not when the session ends
        // (review L3); its own stays its owner's to close, and a tunnel's winner not yet taken stays for the tunnel.
        this.#sockets.keepOnly([this.#o.socket, this.#tunnelPunch?.socket]);
        done(new DirectChannelError("NO_DIRECT_PATH", this.#failureReason()));
      }, this.#o.deadlineMs);
      this.#startChecks();
    });
  }

  /** Sends one dialog frame; false when the channel is not up or the frame does not fit (use the broker). */
  sendFrame(kind: FrameKind, corr: number, bytes: Uint8Array): boolean {
    if (!this.up || !this.#pair || bytes.length > MAX_FRAME_BYTES) return false;
    const payload = Buffer.alloc(5 + bytes.length);
    payload[0] = FRAME_KIND[kind];
    payload.writeUInt32BE(corr >>> 0, 1);
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).copy(payload, 5);
    this.#sendTo(this.#pair, PacketType.data, payload);
    return true;
  }

  /** Stops the channel; its sockets close once what was already sent has left (a last `session.destroy`). */
  close(): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#stopTimers();
    const sockets = this.#sockets.takeAll();
    const closeAll = () => {
      for (const s of sockets) {
        try {
          s.close();
        } catch {
          // already closed
        }
      }
    };
    if (this.#inFlight === 0) closeAll();
    else this.#drained = closeAll;
  }

  /**
   * Hands the path's socket over (WireGuard takes its port next): the channel stops using it and
   * closes it; the routers' mappings for its port stay as long as packets keep flowing from it.
   */
  releaseSocket(): void {
    this.close();
  }

  #startChecks(): void {
    const pairs: Pair[] = [];
    for (const c of orderCandidates(this.plan.peerCandidates)) pairs.push({ socket: this.#o.socket, address: c.address, port: c.port, kind: c.kind });
    // Our router maps each destination to a new port: many sockets, each probing the peer's internet
    // candidates, give many mappings for the peer's spray to find. The peer's tunnel port on the same
    // address (the mapping our tunnel will use) first: the connect waits for the tunnels' meeting.
    const [probing, targets, tunnelPort] = [this.#sockets.probing, searchCandidates(this.plan), this.#o.peerTunnelPort];
    if (tunnelPort) for (const socket of probing) for (const c of targets) pairs.push({ socket, address: c.address, port: tunnelPort, kind: "punched" });
    for (const socket of probing) for (const c of targets) pairs.push({ socket, address: c.address, port: c.port, kind: "punched" });
    // In batches: a probe is sealed and queued in one go, and leaves only when the loop yields (sealing
    // 512 took 8-19 ms), so the first mappings open while the rest are sealed.
    const round = async (first = false) => {
      for (const [i, p] of pairs.entries()) {
        // A search that failed (or a channel closed) while a round runs: the rest of it is not sealed (review L4).
        if (this.#state === "failed" || this.#state === "closed") return;
        this.#probe(p);
        if (i % 64 === 63) await new Promise(setImmediate);
      }
      if (first && probing.length) this.#o.log.info({ probes: pairs.length, ms: Date.now() - this.#startedAt }, "the probing sockets' first round handed over");
    };
    void round(true);
    this.#every(this.#o.probeEveryMs * (this.plan.kind === "hard-side" ? 4 : 1), () => void round());
    if (this.plan.kind === "easy-side") {
      this.#spray();
      this.#sprayTunnel();
    }
  }

  /** The easy side's birthday search for the tunnel: sealed probes from the tunnel's own port, bounded. */
  #sprayTunnel(): void {
    const targets = sprayTargets(this.plan, this.#o.sprayPorts);
    if (!targets) return;
    const key = this.#o.role === "provider" ? this.#o.keys.providerTunnelToConsumer : this.#o.keys.consumerTunnelToProvider;
    const { addresses, ports } = targets;
    this.#o.log.info({ datagrams: ports.length * addresses.length, addresses }, "probing from the tunnel's port");
    this.#o.sprayFromTunnel(tunnelSprayDatagrams(key, targets)).then(
      (count) => count && this.#o.log.info(count, "probes from the tunnel's port sent"),
      (err) => this.#o.log.warn({ err: (err as Error).message }, "could not probe from the tunnel's port"),
    );
  }

  /**
   * Resolves with the socket the peer's tunnel port reached (hard-NAT probing), taken out of the
   * channel and closed so our tunnel can listen on its port; rejects after `timeoutMs`.
   */
  tunnelPunch(timeoutMs: number): Promise<TunnelPunch> {
    const take = (won: { socket: dgram.Socket; punch: TunnelPunch }): TunnelPunch => {
      // The winner closes (its port goes to the tunnel; the routers keep its mappings), and with it
      // every other socket the search opened, once the channel is up (while it checks, they probe on).
      if (this.#pair) this.#sockets.keepOnly([this.#pair.socket === won.socket ? undefined : this.#pair.socket]);
      else this.#sockets.closeOne(won.socket);
      return won.punch;
    };
    if (this.#tunnelPunch) return Promise.resolve(take(this.#tunnelPunch));
    return new Promise<TunnelPunch>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("tunnel-punched", onPunch);
        this.#tunnelWait = false;
        if (this.#pair) this.#closeOtherSockets(this.#pair.socket);
        reject(
          new DirectChannelError("NO_DIRECT_PATH", `the provider's tunnel port did not reach any of our ${this.#o.hardSockets} sockets within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      const onPunch = () => {
        clearTimeout(timer);
        resolve(take(this.#tunnelPunch!));
      };
      this.once("tunnel-punched", onPunch);
    });
  }

  /** The easy side's half of the birthday search: probes to random ports of the peer's internet addresses, bounded. */
  #spray(): void {
    const targets = sprayTargets(this.plan, this.#o.sprayPorts);
    if (!targets) return;
    const { addresses, ports } = targets;
    const perTick = Math.ceil(ports.length / Math.max(1, Math.floor((this.#o.deadlineMs * 0.8) / 10)));
    let i = 0;
    const tick = () => {
      if (this.#state !== "checking" || i >= ports.length) return;
      for (const end = Math.min(ports.length, i + perTick); i < end; i++)
        for (const address of addresses) this.#probe({ socket: this.#o.socket, address, port: ports[i], kind: "punched" });
    };
    tick();
    this.#every(10, tick);
  }

  #probe(pair: Pair, nominate = false): void {
    const txid = crypto.randomBytes(8);
    this.#txids.set(txid.toString("hex"), pair);
    if (this.#txids.size > 20_000) this.#txids.delete(this.#txids.keys().next().value!);
    this.#sendTo(pair, PacketType.probe, Buffer.concat([txid, Buffer.of(nominate ? 1 : 0)]));
  }

  #sendTo(pair: Pair, type: PacketType, payload: Buffer): void {
    if (this.#state === "closed") return;
    const datagram = sealPacket(this.#send, type, this.#seq++, payload);
    this.#lastSent = Date.now();
    this.#inFlight++;
    const sent = () => --this.#inFlight === 0 && this.#drained?.();
    try {
      pair.socket.send(datagram, pair.port, pair.address, sent);
    } catch {
      sent(); // a socket handed to the tunnel while the checks still name it
    }
  }

  #listen(socket: dgram.Socket): void {
    socket.on("message", (msg, rinfo) => this.#onDatagram(socket, msg, rinfo));
    socket.on("error", (err) => this.#o.log.debug({ err: err.message }, "direct channel socket error"));
  }

  #drop(reason: PacketDropReason | "not-nominated", from: string): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
    this.emit("dropped", { reason, from });
  }

  #onDatagram(socket: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.#state === "closed" || this.#state === "failed") return;
    const from = `${rinfo.address}:${rinfo.port}`;
    const opened = openPacket(this.#receive, msg);
    if ("drop" in opened && opened.drop === "unknown-receiver") return this.#onTunnelProbe(socket, msg, rinfo);
    if ("drop" in opened) return this.#drop(opened.drop, from);
    if (!this.#window.accept(opened.seq)) return this.#drop("replayed", from);
    this.#lastHeard = Date.now();
    const source: Pair = { socket, address: rinfo.address, port: rinfo.port, kind: this.#kindOf(rinfo.address, rinfo.port) };
    switch (opened.type) {
      case PacketType.probe:
        return this.#onProbe(source, opened.payload);
      case PacketType.probeAck:
        return this.#onAck(source, opened.payload);
      case PacketType.keepalive:
        return this.#heard(source);
      case PacketType.data:
        this.#heard(source);
        if (this.#state !== "up" || opened.payload.length < 5) return;
        return void this.emit("frame", {
          kind: FRAME_KIND_OF.get(opened.payload[0]) ?? "notify",
          corr: opened.payload.readUInt32BE(1),
          bytes: opened.payload.subarray(5),
        });
    }
  }

  /**
   * A probe from the peer's tunnel port: the socket it reached is the one our tunnel takes over (a
   * consumer: its port; a provider: its port becomes our tunnel's source toward the consumer).
   */
  #onTunnelProbe(socket: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const from = `${rinfo.address}:${rinfo.port}`;
    const keys = this.#o.keys;
    const opened = openPacket(this.#o.role === "consumer" ? keys.providerTunnelToConsumer : keys.consumerTunnelToProvider, msg);
    if ("drop" in opened) return this.#drop(opened.drop, from);
    if (!this.#tunnelWindow.accept(opened.seq)) return this.#drop("replayed", from);
    if (opened.type !== PacketType.probe || this.#tunnelPunch || socket === this.#o.socket) return;
    this.#tunnelPunch = { socket, punch: { localPort: socket.address().port, address: rinfo.address, port: rinfo.port } };
    this.#o.log.info({ tunnelPunch: this.#tunnelPunch.punch, probe: Number(opened.seq) }, "the peer's tunnel port reached us");
    this.emit("tunnel-punched", this.#tunnelPunch.punch);
  }

  #onProbe(source: Pair, payload: Buffer): void {
    if (payload.length < 9) return;
    const nominate = payload[8] === 1;
    // The answer says where the probe came from: the prober learns what its router made of it.
    this.#sendTo(source, PacketType.probeAck, Buffer.concat([payload.subarray(0, 9), encodeAddress(source.address, source.port)]));
    // A triggered check (RFC 8445 §7.3.1.4): the peer reached us from an address it never named (its
    // router maps per destination, so STUN saw another port); our own probe back there passes its
    // router as an answer, and its acknowledgement makes the pair one we can nominate.
    const from = `${source.address}:${source.port}`;
    if (this.#o.role === "consumer" && this.#state === "checking" && !this.#triggered.has(from) && this.#triggered.size < 64) {
      this.#triggered.add(from);
      this.#probe(source);
    }
    if (this.#o.role === "provider" && nominate) this.#choose(source, undefined);
    else if (this.#state === "up" || this.#state === "lost") this.#heard(source);
  }

  #onAck(source: Pair, payload: Buffer): void {
    if (payload.length < 15) return;
    const pair = this.#txids.get(payload.subarray(0, 8).toString("hex"));
    if (!pair) return;
    const seenAs = decodeAddress(payload.subarray(9, 15));
    if (this.#state === "checking") {
      // Valid: our socket that probed, toward the address and port the (sealed) answer came from, not the one it probed (review
      // L5): a router that maps per destination answers from another port than the one probed, and only that one reaches back.
      const kind: DirectPath["kind"] = pair.kind === "punched" || pair.socket !== this.#o.socket ? "punched" : pair.kind;
      const valid = { pair: { ...pair, address: source.address, port: source.port, kind }, seenAs, at: Date.now() };
      if (this.#o.role === "consumer") {
        if (payload[8] === 1) return this.#choose(valid.pair, seenAs);
        this.#valid.push(valid);
        if (this.#valid.length === 1) this.#nominateSoon();
      }
      return;
    }
    this.#heard(source);
  }

  /**
   * The consumer nominates the best pair that answered: at once when no better kind can still answer,
   * else a moment after the first (`nominateAfterMs`: a better one may still answer).
   */
  #nominateSoon(): void {
    const best = () => [...this.#valid].sort((a, b) => CANDIDATE_PRIORITY[kindRank(b.pair.kind)] - CANDIDATE_PRIORITY[kindRank(a.pair.kind)])[0];
    const nominate = () => {
      if (this.#state !== "checking") return;
      this.#probe(best().pair, true);
    };
    const firstIsBest = CANDIDATE_PRIORITY[kindRank(this.#valid[0].pair.kind)] >= bestPossibleRank(this.plan);
    setTimeout(
      () => {
        nominate();
        this.#every(this.#o.probeEveryMs, nominate);
      },
      firstIsBest ? 0 : this.#o.nominateAfterMs,
    ).unref();
  }

  #choose(pair: Pair, seenAs: { address: string; port: number } | undefined): void {
    if (this.#state !== "checking" && this.#state !== "lost") {
      // Nominated again (our acknowledgement was lost): follow the peer's choice.
      if (this.#state === "up" && this.#pair) this.#pair = { ...pair, kind: this.#pair.kind };
      return;
    }
    this.#stopTimers();
    this.#pair = pair;
    this.#state = "up";
    this.path = { kind: pair.kind, address: pair.address, port: pair.port, ...(seenAs ? { seenAs } : {}), tookMs: Date.now() - this.#startedAt };
    this.#closeOtherSockets(pair.socket);
    this.#o.log.info({ path: this.path }, "direct channel up");
    this.#maintain();
    this.emit("up", this.path);
  }

  /** Whether the hard sockets wait for the peer's tunnel port (hard-NAT probing for the tunnel). */
  get #awaitingTunnel(): boolean {
    return this.#tunnelWait && this.plan.kind === "hard-side" && !!this.#o.peerTunnelPort && !this.#tunnelPunch;
  }

  #closeOtherSockets(keep: dgram.Socket): void {
    // Our sockets stay open for the provider's tunnel spray until `tunnelPunch` takes the winner.
    if (!this.#awaitingTunnel) this.#sockets.keepOnly([keep, this.#tunnelPunch?.socket]);
  }

  /** An authentic packet on the chosen socket: the peer is alive there (and may have moved: roaming, as WireGuard does). */
  #heard(source: Pair): void {
    if (!this.#pair || source.socket !== this.#pair.socket) return;
    if (source.address !== this.#pair.address || source.port !== this.#pair.port) {
      this.#o.log.info({ from: `${this.#pair.address}:${this.#pair.port}`, to: `${source.address}:${source.port}` }, "the peer moved");
      this.#pair = { ...this.#pair, address: source.address, port: source.port };
    }
    if (this.#state === "lost") {
      this.#state = "up";
      this.#o.log.info({ path: this.path }, "direct channel back");
      this.emit("up", this.path!);
    }
  }

  /** Keepalives, and when the peer goes silent: lost, and probes to its candidates and last address until it answers. */
  #maintain(): void {
    this.#every(Math.max(50, Math.floor(this.#o.keepaliveMs / 5)), () => {
      const now = Date.now();
      if (!this.#pair) return;
      if (this.#state === "up" && now - this.#lastHeard > this.#o.lostAfterMs) {
        this.#state = "lost";
        const reason = `nothing heard from the peer for ${Math.round((now - this.#lastHeard) / 1000)} s`;
        this.#o.log.warn({ reason }, "direct channel lost; probing again");
        this.emit("lost", reason);
      }
      if (this.#state === "lost") {
        // Re-punch: our probes open our router again; the peer's open its own.
        if (now - this.#lastSent >= 200) {
          this.#probe(this.#pair);
          for (const c of this.plan.peerCandidates) this.#probe({ ...this.#pair, address: c.address, port: c.port, kind: c.kind });
        }
      } else if (now - this.#lastSent >= this.#o.keepaliveMs) this.#sendTo(this.#pair, PacketType.keepalive, Buffer.alloc(0));
    });
  }

  #kindOf(address: string, port: number): DirectPath["kind"] {
    return this.plan.peerCandidates.find((c) => c.address === address && c.port === port)?.kind ?? "punched";
  }

  #failureReason(): string {
    const kinds = [...new Set(this.plan.peerCandidates.map((c) => c.kind))].join(", ") || "none";
    const peer = this.#o.role === "consumer" ? "provider" : "consumer";
    const answered = this.#valid.length > 0 ? "; one answered but the nomination did not get through" : "";
    return `no direct path: none of the ${peer}'s candidates (${kinds}) answered within ${(this.#o.deadlineMs / 1000).toFixed(1)} s${answered} (${this.plan.reason})`;
  }

  #every(ms: number, f: () => void): void {
    const t = setInterval(f, ms);
    t.unref();
    this.#timers.push(t);
  }

  #stopTimers(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
  }
}
