import crypto from "node:crypto";
import fs from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import { silentLogger, type Logger } from "../../log/logger";
import type { ConnectTarget, ConsumerService, DirectRoute, Tunnel, TunnelGuard, TunnelPlan } from "../../session/service";
import { PrespawnedCommand } from "../prespawned";
import { ipBatch, program, refuseResolversOutsideTunnel, requireNetworkCapabilities, TunnelError } from "../system";
import { checkedServiceConfig, checkServiceConfig, endpointOf } from "./config";
import { generateKeyPair } from "./keys";
import { WireGuardProcess } from "./process";
import { KEEPALIVE_S } from "./provider";
import { freeUdpPort, waitHandshake } from "./handshake";
import { enlargeReceiveBuffers } from "./socket-buffer";
import { type SprayResult, sprayerFor, sprayerForDevice, startSprayer, type TunnelSprayer } from "./tunnel-spray";
import { probe, WireGuardTunnel } from "./consumer-tunnel";
import type { TakenSpare, WireGuardSpare } from "./spare";
import { traced } from "../../log/connect-trace";
import { stageChecks, type TunnelCheckSettings } from "../tunnel-check";

/** How long a key pair sent in a session request waits for the provider's answer. */
const PENDING_MS = 5 * 60_000;
/** A key pair sent in a session request, and what was prepared for its tunnel. */
interface Pending {
  privateKey: string;
  at: number;
  listenPort: number;
  device?: Promise<WireGuardProcess>;
  /** The interface of `device` when it is the daemon's spare (named before the key pair existed). */
  spareDevice?: string;
  /** Two `ip -batch -` started in advance: the question about the endpoint's route, then the tunnel's set-up. */
  ip?: PrespawnedCommand[];
  /** The device that was given the provider's key in advance (`expectPeer`): its peer, and any handshake done, stay. */
  expecting?: WireGuardProcess;
  /** The spray's sender on the device's socket, started in advance (`prepare` with `spray`). */
  sprayer?: Promise<TunnelSprayer | undefined>;
  /** The sender that took the spray's datagrams: stopped once the tunnels met (what is left of the spray would be wasted). */
  spraying?: TunnelSprayer;
  /** Whether the device made for this key pair listens on `listenPort` (`WireGuardProcess.listening`), awaited before the peer is set. */
  listens?: { process: WireGuardProcess; done: Promise<void> };
}

/** The public key in a consumerData this service made. */
function publicKeyOf(consumerData: unknown): string | undefined {
  const key = (consumerData as { publicKey?: unknown })?.publicKey;
  return typeof key === "string" ? key : undefined;
}

export interface WireGuardConsumerOptions {
  /** A private directory for the pid file (`<data-dir>/run`). */
  runDir: string;
  /** Run wireguard-go in this network namespace (tests and the demo). */
  netns?: string;
  /** How long the first handshake may take. Default 10 s. */
  connectTimeoutMs?: number;
  /**
   * The interface name. Default `mwc` + the session id's first 12 characters: wireguard-go's control
   * socket lives in /var/run/wireguard, shared by every namespace, so each tunnel needs its own name.
   */
  device?: string;
  /** Default true: all traffic routed into the tunnel (0.0.0.0/1 and 128.0.0.0/1, ::/1 and 8000::/1 with IPv6). */
  routeAll?: boolean;
  /** Seconds between keepalives (through NAT, and so the provider knows we are alive). Default 10. */
  keepaliveS?: number;
  /**
   * The daemon's spare device (spare.ts): taken for the next key pair when it is in this namespace,
   * refilled once that connection is settled. Not with `device` (a name of the caller's choice).
   */
  spare?: WireGuardSpare;
  /** What the stage checks ask through the tunnel (services/tunnel-check.ts); they run only when the tunnel routes everything. */
  tunnelCheck?: TunnelCheckSettings;
  log?: Logger;
}

/**
 * The consumer side of WireGuard: a fresh X25519 key pair per session (its public half goes in the
 * session request, the private half never leaves this process and the wireguard-go it configures),
 * one wireguard-go per tunnel, configured through its control socket, and the routes OpenVPN's
 * `redirect-gateway def1` would set: a host route to the provider's endpoint via our own gateway,
 * then the two halves of the address space into the tunnel.
 */
export class WireGuardConsumerService implements ConsumerService {
  readonly type = "wireguard";
  /**
   * Key pairs sent in session requests, by public key, until the provider answers: the private
   * half, the port, and what `prepare` started for it (the device, and an `ip` for each batch of
   * the tunnel phase).
   */
  readonly #pending = new Map<string, Pending>();

  constructor(private readonly o: WireGuardConsumerOptions) {}

  async consumerData(): Promise<{ publicKey: string }> {
    const now = Date.now();
    for (const [key, p] of this.#pending) if (now - p.at > PENDING_MS) void this.#release(key, p);
    const pair = generateKeyPair();
    const spare = this.o.device ? undefined : this.o.spare?.take(this.o.netns);
    // A spare listens already, on the port it was made with (resolved once wireguard-go held it), its receive buffers
    // enlarged then. One that could not bind was stopped by the spare: this key pair gets a device and port of its own.
    const sparePort = await spare?.port.catch(() => undefined);
    const pending: Pending = { privateKey: pair.privateKey, at: now, listenPort: sparePort ?? (await freeUdpPort(this.o.netns)) };
    if (spare && sparePort !== undefined) {
      pending.spareDevice = spare.device;
      pending.device = this.#configureSpare(pair.publicKey, pending, spare);
      pending.device.catch(() => undefined); // `connect` reports it
    }
    this.#pending.set(pair.publicKey, pending);
    return { publicKey: pair.publicKey };
  }

  /**
   * The spare given this key pair's private key (its port is its own; its buffers too, or, when their enlargement
   * failed, enlarged now in the background); if it died since, a device of the key pair's own.
   */
  async #configureSpare(publicKey: string, pending: Pending, spare: TakenSpare): Promise<WireGuardProcess> {
    const process = await spare.process;
    if (!process?.running) {
      pending.spareDevice = undefined;
      return this.#startDevice(publicKey, pending);
    }
    void spare.buffers.then((enlarged) => enlarged || this.#enlargeBuffers(process, pending.listenPort));
    return this.#keyed(process, pending, false);
  }

  /**
   * `process` given the session's private key and (`bind`) port, that socket's buffers enlarged;
   * stopped if that fails. Whether it listens on that port (`pending.listens`) is awaited by
   * `connect` beside its routes, before the provider is set as peer: a port another program took
   * since it was chosen is then PORT_IN_USE, not a handshake that never comes (review of fd0d74a,
   * M2), and the device is not held back meanwhile (it is the connect path: review of s10-spare, M1).
   */
  async #keyed(process: WireGuardProcess, pending: Pending, bind = true): Promise<WireGuardProcess> {
    try {
      await traced("wireguard: the device keyed", process.uapi.set({ privateKey: pending.privateKey, ...(bind ? { listenPort: pending.listenPort } : {}) }));
    } catch (err) {
      await process.stop();
      throw err;
    }
    if (bind) {
      const listens = process.listening(pending.listenPort);
      listens.catch(() => undefined); // awaited by `connect`
      pending.listens = { process, done: listens };
      this.#enlargeBuffers(process, pending.listenPort, listens);
    }
    return process;
  }

  /**
   * Starts the tunnel's device for this key pair while the session is negotiated: wireguard-go
   * (its interface, down, with no address), its private key and UDP port, and the two `ip` batches
   * of the tunnel phase waiting for their input, and with `spray` the spray's sender on the
   * device's socket (its perl start-up is then paid before the provider answers: tunnel-spray.ts).
   * `connect` then adds the provider as the one peer and the routes; `discard` (or the key pair's
   * expiry) stops it all.
   */
  prepare(consumerData: unknown, o: { spray?: boolean } = {}): void {
    const key = publicKeyOf(consumerData);
    const pending = key ? this.#pending.get(key) : undefined;
    if (!key || !pending || pending.ip) return;
    if (!pending.device) {
      pending.device = this.#startDevice(key, pending);
      pending.device.catch(() => undefined); // `connect` reports it
    }
    // Started now, beside wireguard-go's own start, and aimed at its socket once the device has its port.
    if (o.spray) pending.sprayer = sprayerForDevice(pending.device, () => pending.listenPort);
    const ip = () => new PrespawnedCommand([program("ip", "iproute2"), ...(this.o.netns ? ["-n", this.o.netns] : []), "-batch", "-"]);
    pending.ip = [ip(), ip()];
  }

  async discard(consumerData: unknown): Promise<void> {
    const key = publicKeyOf(consumerData);
    const pending = key ? this.#pending.get(key) : undefined;
    if (key && pending) await this.#release(key, pending);
    this.o.spare?.refill();
  }

  /** Forgets a key pair and stops what was prepared for it. */
  async #release(key: string, pending: Pending): Promise<void> {
    this.#pending.delete(key);
    for (const c of pending.ip ?? []) c.cancel();
    void pending.sprayer?.then((s) => s?.cancel());
    pending.spraying?.stop();
    const device = await pending.device?.catch(() => undefined);
    await device?.stop();
  }

  /** wireguard-go for the key pair, with its private key and listen port set: a device that talks to no one yet. */
  async #startDevice(publicKey: string, pending: Pending): Promise<WireGuardProcess> {
    requireNetworkCapabilities("connecting a WireGuard tunnel", { netns: this.o.netns, why: "to create its interface and routes" });
    program("wireguard-go");
    const device = this.deviceFor(publicKey);
    fs.mkdirSync(this.o.runDir, { recursive: true, mode: 0o700 });
    const process = new WireGuardProcess({
      device,
      netns: this.o.netns,
      pidFile: path.join(this.o.runDir, `wireguard-${device}.pid`),
      log: this.o.log ?? silentLogger,
      viaHelper: true,
    });
    await traced("wireguard-go started (no spare)", process.start());
    return this.#keyed(process, pending);
  }

  /**
   * The receive buffers are enlarged in the background: python's start-up (30-100 ms) would
   * otherwise delay the tunnel, and the default buffer holds the first few hundred KiB.
   */
  #enlargeBuffers(process: WireGuardProcess, port: number, listens = process.listening(port)): void {
    // Once it listens there: its answer to listen_port does not prove it (process.ts, `listening`).
    // None of its sockets found is no success (review L4).
    const enlarged = listens.then(async () => {
      if ((await enlargeReceiveBuffers(process.pid!)) === 0) throw new Error("python3 found none of its UDP sockets");
    });
    traced("python3: receive buffers enlarged", enlarged).catch((err) =>
      this.o.log?.warn({ err: (err as Error).message }, "could not enlarge wireguard-go's receive buffer"),
    );
  }

  /**
   * The UDP port the tunnel for this key pair will listen on, fixed in advance: the provider's
   * wireguard-go sends to it over a direct route (its own packets are the punch).
   */
  tunnelPortFor(consumerData: unknown): number | undefined {
    const key = (consumerData as { publicKey?: unknown })?.publicKey;
    return typeof key === "string" ? this.#pending.get(key)?.listenPort : undefined;
  }

  /**
   * The provider's tunnel sends first (`DirectRoute.peerSendsFirst`): the prepared device is given
   * the provider's key now, with no endpoint, so wireguard-go answers the provider's first handshake
   * initiation from wherever it comes (and sends there from then on). Given only in `connect`, it
   * came too late for that initiation, which was dropped, and the handshake waited for the
   * provider's retry one REKEY_TIMEOUT (5 s) later (docs/direct-channel.md, "The first handshake").
   */
  async expectPeer(consumerData: unknown, serviceConfig: unknown): Promise<void> {
    const key = publicKeyOf(consumerData);
    const pending = key ? this.#pending.get(key) : undefined;
    const process = await pending?.device?.catch(() => undefined);
    if (!pending || !process?.running || !checkServiceConfig.Check(serviceConfig)) return;
    try {
      await process.uapi.set({ peers: [{ publicKey: serviceConfig.publicKey }] });
      pending.expecting = process;
    } catch (err) {
      // `connect` gives the key again; the provider's retry is then answered.
      this.o.log?.warn({ err: (err as Error).message }, "could not give the tunnel the provider's key in advance");
    }
  }

  /**
   * Hard-NAT probing when the provider's router is the hard one: the datagrams leave from the
   * prepared wireguard-go's own socket (tunnel-spray.ts), so our router maps the tunnel's port
   * toward the provider's probing sockets they reach. No tunnel packet passes through us. The sender
   * started in advance is used once it said it holds the socket; one that failed is replaced by a
   * fresh one, whose failure rejects (the tunnels then cannot meet: the session says so at once).
   */
  async sprayFromTunnel(consumerData: unknown, datagrams: Iterable<{ address: string; port: number; bytes: Buffer }>): Promise<SprayResult> {
    const key = publicKeyOf(consumerData);
    const pending = key ? this.#pending.get(key) : undefined;
    const process = await pending?.device;
    if (!pending || !process?.pid) throw new TunnelError("WIREGUARD_FAILED", "no prepared WireGuard device to probe from");
    const early = await pending.sprayer;
    pending.sprayer = undefined;
    const sprayer = await sprayerFor(early, () => startSprayer(process.pid!, pending.listenPort));
    // Released (discarded, or its tunnel up) while the sender started: nothing would stop it.
    if (this.#pending.get(key!) !== pending) {
      sprayer.cancel();
      throw new TunnelError("WIREGUARD_FAILED", "the prepared WireGuard device was released before its spray began");
    }
    pending.spraying = sprayer;
    this.o.log?.info({ fresh: sprayer !== early }, "the tunnel spray's sender takes its datagrams");
    return sprayer.send(datagrams);
  }

  /**
   * The interface of the tunnel made for this key pair: `mwc` + 12 hex characters of its public
   * key's hash (the name is needed before the session id exists: the device is made while the
   * session is negotiated).
   */
  deviceFor(publicKey: string): string {
    return this.o.device ?? this.#pending.get(publicKey)?.spareDevice ?? `mwc${crypto.createHash("sha256").update(publicKey).digest("hex").slice(0, 12)}`;
  }

  async plan(session: { id: string; serviceConfig: unknown; route?: DirectRoute }): Promise<TunnelPlan> {
    const config = checkedServiceConfig(session);
    const endpoint = endpointOf(config, session.route);
    // A spare that failed to start is replaced by a device of the key pair's own name: known once it settled.
    const pending = this.#pending.get(config.clientPublicKey);
    if (pending?.spareDevice) await pending.device?.catch(() => undefined);
    // The tunnel's own port (a hard-side punch's socket, or the one fixed in advance): the provider's
    // tunnel may answer it from any port of its address (its router maps per destination) and
    // wireguard-go then sends there. Not relayed: the forwarder on loopback is the tunnel's peer then.
    const localPort = session.route?.localPort ?? pending?.listenPort;
    const roams = session.route?.kind !== "relayed" && localPort !== undefined;
    const plan: TunnelPlan = {
      device: this.deviceFor(config.clientPublicKey),
      // Relayed: the packets leave this host toward the relay (UDP or TCP), from the forwarder on loopback.
      endpoints: [session.route?.outside ?? { address: endpoint.address, port: endpoint.port, protocol: "udp" }],
      ...(roams ? { tunnelPeers: [{ address: endpoint.address, localPort }] } : {}),
      dns: config.dns.filter((a) => isIP(a) !== 0),
      ipv6: config.ipv6 ?? false,
    };
    refuseResolversOutsideTunnel(config.dns, [...plan.endpoints, ...(plan.tunnelPeers ?? [])]);
    return plan;
  }

  /** Brings the tunnel up; then (up or failed) the daemon's spare, if one was taken, is made again. */
  async connect(session: ConnectTarget): Promise<Tunnel> {
    return this.connectBeside(session, undefined);
  }

  /**
   * `connect` while the kill switch is armed (`guard`): the endpoint's route is asked and the
   * interface's address, link and routes set once it has recorded the routes as they were; the
   * provider becomes the device's peer (the handshake starts) only once it is armed. A device with
   * no peer sends nothing, and what is routed into it meanwhile goes nowhere.
   */
  async connectBeside(session: ConnectTarget, guard: TunnelGuard | undefined): Promise<Tunnel> {
    try {
      return await this.#connect(session, guard);
    } finally {
      this.o.spare?.refill();
    }
  }

  async #connect(session: ConnectTarget, guard: TunnelGuard | undefined): Promise<Tunnel> {
    requireNetworkCapabilities("connecting a WireGuard tunnel", { netns: this.o.netns, why: "to create its interface and routes" });
    program("wireguard-go");
    const checkedConfig = checkedServiceConfig(session);
    // Over a direct route the provider's tunnel is where the punched path reached it (its LAN
    // address, its router's public address), at the port it said; otherwise at the config's endpoint.
    const config = { ...checkedConfig, endpoint: endpointOf(checkedConfig, session.route) };
    refuseResolversOutsideTunnel(config.dns, [config.endpoint, ...(session.route?.outside ? [session.route.outside] : [])]);
    const pending = this.#pending.get(config.clientPublicKey);
    if (!pending) throw new TunnelError("BAD_SERVICE_CONFIG", "the provider answered for a WireGuard key this node did not send (or sent too long ago)");
    // The device made while the session was negotiated (`prepare`), or made now. Either is used once:
    // the key pair stays pending until the handshake, so a tunnel that failed on one path may be tried
    // again on another (a relay), with a device of its own.
    const [routeIp, setupIp] = pending.ip ?? [];
    const prepared = pending.device;
    pending.ip = undefined;
    pending.device = undefined;
    let process: WireGuardProcess;
    try {
      process = await (prepared ?? this.#startDevice(config.clientPublicKey, pending));
    } catch (err) {
      routeIp?.cancel();
      setupIp?.cancel();
      throw err;
    }
    const device = process.options.device;
    const routeAll = this.o.routeAll !== false;
    let hostRoute: string | undefined;
    // What must stay outside the tunnel: the provider's endpoint, or (relayed) the relay's TURN server.
    let outside = session.route?.outside?.address ?? config.endpoint.address;
    /** Relays' addresses given a host route outside the tunnel while it runs (a move to another relay). */
    const exempted = new Set<string>();
    try {
      await guard?.routesKept;
      const ipv6 = config.ipv6 === true && !!config.address6;
      // The provider's resolver is on its own tunnel address: what the liveness probe asks, when the
      // tunnel carries everything anyway. A confined connection (`myst run`) does not probe: the
      // probe would need a route in the machine's own table to an address the provider names,
      // which would pull the machine's traffic to that address (its LAN resolver, say) into the
      // tunnel. It keeps the slower rule (15 s without a handshake).
      const probeTarget = routeAll ? config.dns.find((a) => isIP(a) === 4) : undefined;
      // The routes, and beside them the provider as the one peer: the device sends nothing while its
      // link is down, and the batch brings it up only after the endpoint's host route is in place.
      const routes = async () => {
        if (routeAll) hostRoute = await this.#routeToEndpoint(outside, routeIp);
        else routeIp?.cancel();
        const setup = [
          ...(hostRoute ? [hostRoute] : []),
          `address add ${config.address} dev ${device}`,
          ...(ipv6 ? [`address add ${config.address6} dev ${device}`] : []),
          `link set ${device} mtu ${config.mtu} up`,
          ...(routeAll ? [`route add 0.0.0.0/1 dev ${device}`, `route add 128.0.0.0/1 dev ${device}`] : []),
          ...(routeAll && ipv6 ? [`route add ::/1 dev ${device}`, `route add 8000::/1 dev ${device}`] : []),
        ];
        await traced("ip: address, link and routes set", setupIp ? setupIp.run(`${setup.join("\n")}\n`) : ipBatch(this.o.netns, setup));
      };
      // The keepalive makes wireguard-go start the handshake as soon as the link is up rather than on the first packet.
      const endpoint =
        isIP(config.endpoint.address) === 6 ? `[${config.endpoint.address}]:${config.endpoint.port}` : `${config.endpoint.address}:${config.endpoint.port}`;
      // Over a hard-NAT punch the tunnel takes the probing socket's port instead of its own.
      const listenPort = session.route?.localPort;
      // The provider sends first: its key was given in advance (its handshake may be done: kept), and
      // no endpoint is named (its port toward us is where its handshake came from).
      const expected = pending.expecting === process;
      const peer = async () => {
        // Nothing is sent (not even the handshake) before the kill switch is armed.
        await guard?.armed;
        // On the port the session request named (unless the tunnel takes a probe's port now).
        if (pending.listens?.process === process && (listenPort === undefined || listenPort === pending.listenPort))
          await traced("wireguard: the device listens", pending.listens.done);
        await traced(
          "wireguard: the provider set as peer",
          process.uapi.set({
            ...(listenPort !== undefined && listenPort !== pending.listenPort ? { listenPort } : {}),
            ...(expected ? {} : { replacePeers: true }),
            peers: [
              {
                publicKey: config.publicKey,
                ...(session.route?.peerSendsFirst ? {} : { endpoint }),
                persistentKeepalive: this.o.keepaliveS ?? KEEPALIVE_S,
                allowedIps: ["0.0.0.0/0", ...(ipv6 ? ["::/0"] : [])],
              },
            ],
          }),
        );
      };
      // Both settled before anything is undone: a batch still adding routes would leave them behind.
      for (const step of await Promise.allSettled([routes(), peer()])) if (step.status === "rejected") throw step.reason;
      // A new port is a new socket, with the default buffer again.
      if (listenPort !== undefined && listenPort !== pending.listenPort) this.#enlargeBuffers(process, listenPort);
      // Relayed, the first packet comes from the provider through the relay (wireguard-go resends its handshake every 5 s): a little longer.
      await traced(
        "wireguard: handshake seen",
        waitHandshake(process, this.o.connectTimeoutMs ?? (session.route?.kind === "relayed" ? 15_000 : 10_000), 5, session.giveUp),
      );
      // Kept until now: a tunnel that failed on one path may be tried again on another (a relay).
      this.#pending.delete(config.clientPublicKey);
      void pending.sprayer?.then((s) => s?.cancel());
      pending.spraying?.stop();
      const tunnel = new WireGuardTunnel(
        process,
        device,
        config.dns.filter((a) => isIP(a) !== 0),
        ipv6,
        hostRoute
          ? async () => {
              await this.#dropRoute(outside);
              for (const a of exempted) await this.#dropRoute(a);
            }
          : undefined,
        probeTarget ? () => probe(probeTarget, this.o.netns) : undefined,
        {
          // Another relay about to be used: its traffic stays outside the tunnel, by the same gateway as
          // the first host route (a route lookup now would answer the tunnel, which the dead relay carried).
          exempt: async (address) => {
            if (!routeAll || !hostRoute || address === outside || exempted.has(address) || isIP(address) !== 4) return;
            await ipBatch(this.o.netns, [hostRoute.replace(/^route add \S+/, `route add ${address}/32`)]);
            exempted.add(address);
          },
          // Moving to it: the peer's endpoint is its forwarder; the last relay's host route goes.
          move: async (route) => {
            const next = route.outside?.address;
            if (route.kind !== "relayed" || !next) throw new TunnelError("BAD_SERVICE_CONFIG", "only a relayed tunnel moves to another relay");
            if (routeAll && hostRoute && next !== outside) {
              if (!exempted.has(next)) await ipBatch(this.o.netns, [hostRoute.replace(/^route add \S+/, `route add ${next}/32`)]);
              exempted.delete(next);
              await this.#dropRoute(outside);
              outside = next;
            }
            await process.uapi.set({ peers: [{ publicKey: config.publicKey, endpoint: `${route.address}:${route.tunnelPort}` }] });
          },
        },
      );
      // The stage checks go to the provider's resolver and the check's target, through the tunnel only when it routes everything.
      tunnel.check = stageChecks(this.o.tunnelCheck, probeTarget, this.o.netns);
      return tunnel;
    } catch (err) {
      routeIp?.cancel();
      setupIp?.cancel();
      // Its copy of the tunnel's socket would go on spraying after wireguard-go is gone.
      void pending.sprayer?.then((s) => s?.cancel());
      pending.spraying?.stop();
      await process.stop();
      if (hostRoute) await this.#dropRoute(outside);
      throw err;
    }
  }

  /**
   * `route add <endpoint> via <our gateway>` when there is no host route to it yet; undefined
   * otherwise. One `ip` process for both questions: each spawn costs milliseconds on the connect path.
   */
  async #routeToEndpoint(address: string, ip?: PrespawnedCommand): Promise<string | undefined> {
    const prefix = `${address}/${isIP(address) === 6 ? 128 : 32}`;
    // `route show exact` prints one line (starting with the address) when there is a host route and
    // nothing otherwise; `route get` then prints the route the endpoint takes, also starting with it.
    const ask = [`route show exact ${prefix}`, `route get ${address}`];
    const out = await traced("ip: the endpoint's route asked", ip ? ip.run(`${ask.join("\n")}\n`) : ipBatch(this.o.netns, ask));
    const lines = out.split("\n").filter((l) => l.startsWith(`${address} `));
    if (lines.length === 0) throw new TunnelError("NO_UPLINK", `no route to the provider's endpoint ${address}`);
    if (lines.length > 1) return undefined;
    const got = lines[0];
    const via = /\bvia (\S+)/.exec(got)?.[1];
    const dev = /\bdev (\S+)/.exec(got)?.[1];
    if (!dev) throw new TunnelError("NO_UPLINK", `no route to the provider's endpoint ${address}`);
    return `route add ${prefix}${via ? ` via ${via}` : ""} dev ${dev}`;
  }

  async #dropRoute(address: string): Promise<void> {
    await ipBatch(this.o.netns, [`route del ${address}/${isIP(address) === 6 ? 128 : 32}`]).catch(() => undefined);
  }
}
