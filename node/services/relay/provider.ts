import crypto from "node:crypto";
import net from "node:net";
import { silentLogger, type Logger } from "../../log/logger";
import type { ProviderService } from "../../session/service";
import { ensureCertificate, type ServiceCertificate } from "../certificate";
import { Supervisor } from "../supervision";
import { TunnelError } from "../system";
import { CoturnProcess, type CoturnSession } from "./coturn";
import { namedPeers, provesSelf, relayCommonName, type RelayServiceConfig, speaksTls } from "./config";
import { checkProviderPeers } from "./provider-peers";
import { proofUsername, provenAddress } from "./self-proof";
import type { SignerDirectory } from "../../identity/protocol-signature";

export interface RelayProviderOptions {
  dir: string;
  /** The address consumers reach the relay at (and coturn puts in relayed addresses). */
  publicIp: string;
  /** UDP, TCP and TLS port. Default 3478. */
  port?: number;
  /** The UDP ports relayed addresses come from. Default 49152–65535. */
  minPort?: number;
  maxPort?: number;
  /** How long a credential lets its holder allocate, seconds. Default 300. */
  credentialTtlS?: number;
  /** Relay to private and loopback peers (tests on one host). Default false. */
  allowPrivatePeers?: boolean;
  /**
   * The registry: a session's named peers must be addresses its provider's signed proposal (which
   * the consumer's data carries) announces. Without it (tests on one host) they are only checked
   * to be public.
   */
  directory?: SignerDirectory;
  /** Each session's bandwidth in Mbit/s, each way (the offer's `bandwidthMbps`): coturn's `max-bps`. None: unlimited. */
  sessionMbps?: number;
  /**
   * The relay's identity: its TLS certificate names it (`CN=myst-relay <identity>`), which is how a
   * proxy provider asked to dial back to an allocation on it tells that its address runs this relay
   * (tcp-held.ts `proveRelayAt`). Without it (tests) the certificate names none and no provider dials back.
   */
  identity?: string;
  log?: Logger;
}

const REALM = "myst";
/**
 * How long after its credential's expiry a closed session is still tracked: coturn refuses a new
 * allocation under an expired credential, so past this (seconds of clock rounding) nothing more can
 * appear under its usernames, and the relay forgets it (once a listing shows none of its allocations).
 */
const FORGET_AFTER_EXPIRY_MS = 5000;
/** Ended sessions whose final counts and transport stay answerable (history, metrics, the last invoice), as the other services keep. */
const ENDED_KEPT = 1000;
/** How often the relay reads coturn's counters (its CLI's `ps`) while sessions are open. */
const METER_EVERY_MS = 1000;
/** How often it reads the listing while a consumer's proof of its address is due (self-proof.ts). */
const PROOF_READ_EVERY_MS = 150;

interface RelaySession {
  id: string;
  consumer: string;
  username: string;
  /** When its credentials stop letting anyone allocate (unix seconds): a closed session is tracked until then, and then forgotten. */
  expiresAt: number;
  closed: boolean;
  /** When closeSession had cancelled its allocations: a listing read before then may still show them. */
  closedAt?: number;
  /** Being cut off for a peer it did not name (closed once coturn has ended it). */
  cutting?: boolean;
  /**
   * The provider's addresses the consumer named: the only peers its allocations may permit. For a
   * session that proves its consumer's address (`proof`): none until proven, then that one.
   */
  peers: string[];
  /** A session whose one peer is its consumer's own address, proven with this credential (self-proof.ts); `address` once proven. */
  proof?: { username: string; address?: string };
  /** How its consumer reached coturn (its allocation's client protocol in coturn's listing), once seen. */
  transport?: "udp" | "tcp" | "tls";
}

/**
 * The provider side of a relay: a supervised coturn with a random REST-API secret per start, a
 * credential per paid session (the session machinery opens a session only after admission and
 * payment checks: no session, no credential), metered from coturn's admin CLI (`ps`: the TURN
 * transport's bytes both ways, of allocations coturn authenticated), cut off through that CLI when
 * the session ends.
 */
export class RelayProviderService implements ProviderService {
  readonly type = "relay";
  readonly #o: RelayProviderOptions;
  readonly #log: Logger;
  readonly #secret = crypto.randomBytes(32).toString("base64url");
  readonly #cliPassword = crypto.randomBytes(16).toString("hex");
  readonly #sessions = new Map<string, RelaySession>();
  readonly #byUsername = new Map<string, RelaySession>();
  readonly #byProof = new Map<string, RelaySession>();
  /** Closed sessions still tracked: their credentials may still allocate (cut off on sight) until they expire. */
  readonly #closed = new Set<RelaySession>();
  /** Forgotten sessions' final counts and transport, the last ENDED_KEPT. */
  readonly #ended = new Map<string, { bytesIn: number; bytesOut: number; transport?: "udp" | "tcp" | "tls" }>();
  /** The usernames of the allocations coturn's last listing showed, and when it was read (ms). */
  #listed?: { at: number; usernames: Set<string> };
  #forgetting = false;
  #coturn?: CoturnProcess;
  readonly #supervisor: Supervisor;
  #cliPort = 0;
  /** The relay's TLS certificate (made once per node, kept in its directory): consumers pin it. */
  #cert?: ServiceCertificate;
  #meter?: NodeJS.Timeout;
  #proofWatch?: NodeJS.Timeout;
  #reading?: Promise<void>;

  constructor(options: RelayProviderOptions) {
    if (net.isIP(options.publicIp) !== 4)
      throw new TunnelError("BAD_SERVICE_CONFIG", `the relay's public address "${options.publicIp}" is not an IPv4 address`);
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.#supervisor = new Supervisor({ what: "coturn", log: this.#log, relaunch: () => this.#launch() });
  }

  get port(): number {
    return this.#o.port ?? 3478;
  }

  /** coturn's PID while it runs (tests kill it by PID to play a relay dying). */
  get pid(): number | undefined {
    return this.#coturn?.pid;
  }

  async start(): Promise<void> {
    this.#cliPort = await freeTcpPort();
    this.#cert = await ensureCertificate(this.#o.dir, "relay", { commonName: relayCommonName(this.#o.identity) });
    await this.#launch();
    this.#supervisor.start();
    this.#meter = setInterval(() => {
      void this.#read();
      void this.#forgetExpired();
    }, METER_EVERY_MS);
    this.#meter.unref();
  }

  /** Reads coturn's counters while a session is open (or when asked: a session closing, after any reading under way). One reading at a time. */
  async #read(force = false): Promise<void> {
    if (this.#reading && !force) return;
    if (!force && ![...this.#sessions.values()].some((s) => !s.closed)) return;
    const reading = (this.#reading ?? Promise.resolve()).then(async () => {
      const at = Date.now();
      const listed = await this.#coturn?.poll().catch((err) => this.#log.debug({ err: (err as Error).message }, "reading coturn's counters failed"));
      if (listed) this.#listed = { at, usernames: new Set(listed.map((a) => a.username)) };
      if (listed) await this.#enforcePeers(listed).catch((err) => this.#log.warn({ err: (err as Error).message }, "the relay's peer policy failed"));
    });
    this.#reading = reading;
    await reading.finally(() => {
      if (this.#reading === reading) this.#reading = undefined;
    });
  }

  /** Reads the listing every PROOF_READ_EVERY_MS while a consumer's proof of its address is due, so a connect does not wait a whole second. */
  #watchProofs(): void {
    if (this.#proofWatch) return;
    this.#proofWatch = setInterval(() => {
      if ([...this.#byProof.values()].some((s) => !s.closed && !s.proof?.address)) return void this.#read();
      clearInterval(this.#proofWatch);
      this.#proofWatch = undefined;
    }, PROOF_READ_EVERY_MS);
    this.#proofWatch.unref();
  }

  /**
   * A proof allocation in coturn's listing (self-proof.ts): the first one of an open session that came
   * over TCP or TLS names the session's one peer, its client address; whatever it is, it is cut off at
   * once (a proof credential relays nothing), and so is any later one. One that proves nothing (UDP, or
   * an address no relay lets in) ends its session: left open, its proof still due, the credential would
   * buy one unbilled allocation after another, each alive until the next reading.
   */
  async #takeProof(s: RelaySession, a: CoturnSession): Promise<void> {
    const proof = s.proof!;
    if (!s.closed && !proof.address) {
      const address = provenAddress(a, this.#o.allowPrivatePeers === true);
      if (address) {
        proof.address = address;
        s.peers = [address];
        s.transport = a.transport;
        this.#log.info({ sessionId: s.id, peer: address, transport: a.transport }, "a relay session's consumer proved its address: its one peer");
      } else {
        this.#log.warn(
          { sessionId: s.id, transport: a.transport, client: a.client },
          "a proof allocation proves nothing (UDP, or an address no relay lets in): its session is cut off",
        );
        s.cutting = true;
        await this.#coturn
          ?.cancel(s.username)
          .catch((err) => this.#log.warn({ err: (err as Error).message, sessionId: s.id }, "coturn's CLI did not cancel the session's allocations"));
        this.#close(s);
      }
    }
    await this.#coturn
      ?.cancel(a.username, [a.id])
      .catch((err) => this.#log.warn({ err: (err as Error).message, sessionId: s.id }, "coturn's CLI did not cancel a proof allocation"));
  }

  /**
   * The permission policy coturn has no setting for (its `allowed-peer-ip` and `denied-peer-ip` are
   * the same for every allocation): an allocation that permitted a peer its session did not name
   * is cut off through coturn's CLI, and its session's credential with it (docs/relay.md
   * "Whom a relay relays to"). Read from the same `ps` listing as the meter, once a second.
   */
  async #enforcePeers(listed: CoturnSession[]): Promise<void> {
    for (const a of listed) {
      const s = this.#byProof.get(a.username);
      if (s) await this.#takeProof(s, a);
    }
    for (const a of listed) {
      const s = this.#byUsername.get(a.username);
      // A proving session's own allocation is its provider's; how its consumer reaches the relay is the proof's transport.
      if (s && a.transport && !s.proof) s.transport ??= a.transport;
      // coturn lists a permission as its address and a channel as address:port.
      const strangers = s ? a.peers.map(peerAddress).filter((p) => !s.peers.includes(p)) : [];
      if (!s || s.closed || s.cutting || strangers.length === 0) continue;
      // Closed (not connected) once coturn has ended it, not when it is decided.
      s.cutting = true;
      this.#log.warn({ sessionId: s.id, peers: strangers, named: s.peers }, "an allocation permitted a peer its session did not name: cut off");
      await this.#coturn
        ?.cancel(s.username)
        .catch((err) => this.#log.warn({ err: (err as Error).message, sessionId: s.id }, "coturn's CLI did not cancel the allocation"));
      this.#close(s);
    }
  }

  async #launch(): Promise<void> {
    // The usage counted so far survives a restart (what the old process's counters showed is already summed).
    const usage = this.#coturn?.usage;
    const counted = this.#coturn?.counted;
    const coturn = new CoturnProcess({
      dir: this.#o.dir,
      listeningIps: [this.#o.publicIp],
      port: this.port,
      minPort: this.#o.minPort ?? 49152,
      maxPort: this.#o.maxPort ?? 65535,
      secret: this.#secret,
      realm: REALM,
      allowPrivatePeers: this.#o.allowPrivatePeers,
      ...(this.#cert ? { tls: { certificateFile: this.#cert.certificateFile, keyFile: this.#cert.keyFile } } : {}),
      maxBps: this.#o.sessionMbps ? (this.#o.sessionMbps * 1_000_000) / 8 : undefined,
      cli: { port: this.#cliPort, password: this.#cliPassword },
      issued: (username) => this.#byUsername.has(username) || this.#byProof.has(username),
      // A credential used again after its session ended (it stays valid until its expiry), or a proof
      // credential used again after its proof: cut off at once, never billed.
      onSession: (username, coturnSession) => {
        const s = this.#byUsername.get(username) ?? this.#byProof.get(username);
        const spent = s?.proof?.username === username && s.proof.address !== undefined;
        if (!s?.closed && !s?.cutting && !spent) return;
        void this.#coturn
          ?.cancel(username, [coturnSession])
          .then(() =>
            this.#log.warn({ sessionId: s.id, coturnSession }, "a credential used again after its session ended (or a spent proof credential); cut off"),
          )
          .catch((err) => this.#log.warn({ err: (err as Error).message, sessionId: s.id }, "coturn's CLI did not cancel a late allocation"));
      },
      log: this.#log,
    });
    if (usage) for (const [k, v] of usage) coturn.usage.set(k, v);
    // A new coturn numbers its sessions afresh: the old ones' counts stay, under names no new one takes.
    if (counted) for (const [k, v] of counted) coturn.counted.set(k.startsWith("ended:") ? k : `ended:${Date.now()}:${k}`, v);
    this.#coturn = coturn;
    await coturn.start();
    coturn.once("exit", (code) => this.#supervisor.exited(code, coturn.recent));
  }

  isRunning(): boolean {
    return !!this.#coturn?.running;
  }

  /**
   * A paid session's credential: `expiry:sessionId` and its HMAC under the secret. It lets the
   * consumer allocate for `credentialTtlS`; the allocation itself lives until the session ends.
   */
  async openSession(session: { id: string; consumer: string; consumerData: unknown }): Promise<RelayServiceConfig> {
    if (!this.isRunning()) throw new TunnelError("SERVICE_NOT_RUNNING", "the relay (coturn) is not running");
    // A session whose one peer is its consumer's own address (a proxy provider's TCP allocation) names none: the relay learns it.
    const proving = provesSelf(session.consumerData);
    const peers = proving ? [] : namedPeers(session.consumerData, this.#o.allowPrivatePeers === true);
    if (!proving && this.#o.directory) await checkProviderPeers(session.consumerData, peers, this.#o.directory);
    const expiresAt = Math.floor(Date.now() / 1000) + (this.#o.credentialTtlS ?? 300);
    const config = this.credential(session.id, expiresAt, speaksTls(session.consumerData));
    const proof = proving ? { username: proofUsername(expiresAt, session.id) } : undefined;
    const s: RelaySession = { id: session.id, consumer: session.consumer, username: config.username, expiresAt, closed: false, peers, proof };
    this.#sessions.set(session.id, s);
    this.#byUsername.set(config.username, s);
    if (!proof) return config;
    this.#byProof.set(proof.username, s);
    this.#watchProofs();
    return { ...config, proof: { username: proof.username, password: restPassword(this.#secret, proof.username) } };
  }

  /**
   * The service config with a credential for `sessionId` that lets its holder allocate until
   * `expiresAt` (unix seconds); with `tls`, the TLS server too, with the certificate to pin.
   */
  credential(sessionId: string, expiresAt: number, tls = false): RelayServiceConfig {
    const username = `${expiresAt}:${sessionId}`;
    const cert = tls ? this.#cert : undefined;
    return {
      servers: [
        { address: this.#o.publicIp, port: this.port, transport: "udp" },
        ...(cert ? [{ address: this.#o.publicIp, port: this.port, transport: "tls" as const }] : []),
        { address: this.#o.publicIp, port: this.port, transport: "tcp" },
      ],
      username,
      password: restPassword(this.#secret, username),
      realm: REALM,
      expiresAt,
      ...(cert ? { certificate: cert.certificate, fingerprint: cert.fingerprint } : {}),
    };
  }

  /** The fingerprint of the certificate coturn serves TLS with (once started). */
  get fingerprint(): string | undefined {
    return this.#cert?.fingerprint;
  }

  async closeSession(sessionId: string, reason: string): Promise<void> {
    const s = this.#sessions.get(sessionId);
    if (!s || s.closed) return;
    this.#close(s);
    // Its last counts before the allocation goes (coturn forgets an ended allocation's counters).
    await this.#read(true);
    const cancelled = await Promise.all(
      [s.username, ...(s.proof ? [s.proof.username] : [])].map((username) =>
        this.#coturn?.cancel(username).catch((err) => {
          this.#log.warn({ err: (err as Error).message, sessionId }, "coturn's CLI did not cancel the session's allocation");
          return 0;
        }),
      ),
    ).then((counts) => counts.reduce<number>((a, b) => a + (b ?? 0), 0));
    s.closedAt = Date.now();
    this.#log.info({ sessionId, reason, allocations: cancelled }, "relay session closed");
  }

  #close(s: RelaySession): void {
    s.closed = true;
    this.#closed.add(s);
  }

  /**
   * Forgets closed sessions whose credentials can no longer allocate (expired FORGET_AFTER_EXPIRY_MS
   * ago) once a listing read after that shows no allocation of theirs; one still listed is cut off
   * again. Without this every session stayed in the relay's maps (and coturn's counters of it in
   * CoturnProcess's) for the node's life. Forgotten too early, a credential that can still allocate
   * would be neither cut off nor billed (coturn's log and listing are believed only for usernames the
   * relay tracks): hence the expiry, not a count. Its final counts stay answerable (`#ended`).
   */
  async #forgetExpired(): Promise<void> {
    if (this.#forgetting) return;
    const now = Date.now();
    const expired = [...this.#closed].filter((s) => s.expiresAt * 1000 + FORGET_AFTER_EXPIRY_MS <= now);
    if (expired.length === 0) return;
    this.#forgetting = true;
    try {
      // A listing read after they expired and after their allocations were cancelled (closeSession reads one just before).
      await this.#forget(expired, Math.max(...expired.map((s) => Math.max(s.expiresAt * 1000 + FORGET_AFTER_EXPIRY_MS, s.closedAt ?? 0))));
    } finally {
      this.#forgetting = false;
    }
  }

  async #forget(expired: RelaySession[], since: number): Promise<void> {
    // A listing read after they expired: an allocation it does not show cannot come back.
    if (!this.#listed || this.#listed.at < since) await this.#read(true);
    const listed = this.#listed;
    if (!listed || listed.at < since) return;
    for (const s of expired) {
      const usernames = [s.username, ...(s.proof ? [s.proof.username] : [])];
      const still = usernames.filter((u) => listed.usernames.has(u));
      if (still.length > 0) {
        this.#log.warn({ sessionId: s.id }, "an allocation of a closed relay session is still listed: cut off again");
        for (const u of still) await this.#coturn?.cancel(u).catch(() => undefined);
        // The next attempt reads a listing of its own (the interval reads none while no session is open).
        this.#listed = undefined;
        continue;
      }
      this.#ended.set(s.id, { ...this.usage(s.id)!, transport: s.transport });
      if (this.#ended.size > ENDED_KEPT) this.#ended.delete(this.#ended.keys().next().value!);
      this.#closed.delete(s);
      this.#sessions.delete(s.id);
      for (const u of usernames) {
        this.#byUsername.delete(u);
        this.#byProof.delete(u);
      }
      this.#coturn?.forget(usernames);
    }
  }

  /** What the relay still tracks: its sessions (open, or closed with a credential that may still allocate) and coturn's per-allocation records. */
  get tracked(): { sessions: number; usernames: number; coturn: { usage: number; counted: number; owners: number } } {
    return {
      sessions: this.#sessions.size,
      usernames: this.#byUsername.size + this.#byProof.size,
      coturn: this.#coturn?.tracked ?? { usage: 0, counted: 0, owners: 0 },
    };
  }

  /** Reads coturn's counters now (they are read every second while a session is open). */
  async readCounters(): Promise<void> {
    await this.#read(true);
  }

  /** coturn's last lines (errors, what it refused). */
  recentLog(): readonly string[] {
    return this.#coturn?.recent ?? [];
  }

  /** The TURN transport's bytes of the session, as coturn counted them (its CLI's counters, summed over the session's allocations). */
  usage(sessionId: string): { bytesIn: number; bytesOut: number } | undefined {
    const s = this.#sessions.get(sessionId);
    if (!s) {
      const ended = this.#ended.get(sessionId);
      return ended && { bytesIn: ended.bytesIn, bytesOut: ended.bytesOut };
    }
    const u = this.#coturn?.usage.get(s.username);
    return { bytesIn: u?.clientIn ?? 0, bytesOut: u?.clientOut ?? 0 };
  }

  /** How the session's consumer reaches the relay (UDP, TCP or TLS), as coturn lists its allocation; undefined until listed. */
  transportOf(sessionId: string): "udp" | "tcp" | "tls" | undefined {
    return (this.#sessions.get(sessionId) ?? this.#ended.get(sessionId))?.transport;
  }

  isConnected(sessionId: string): boolean {
    const s = this.#sessions.get(sessionId);
    return !!s && !s.closed && this.isRunning();
  }

  async stop(): Promise<void> {
    clearInterval(this.#meter);
    clearInterval(this.#proofWatch);
    await this.#supervisor.stop();
    await this.#coturn?.stop();
  }
}

/** A peer in coturn's `ps` listing without its port (an IPv4 channel's "a.b.c.d:port"). */
const peerAddress = (peer: string) => peer.replace(/^(\d+\.\d+\.\d+\.\d+):\d+$/, "$1");

/** The TURN REST-API password coturn expects for `username` under `secret`: base64(HMAC-SHA1). */
export function restPassword(secret: string, username: string): string {
  return crypto.createHmac("sha1", secret).update(username).digest("base64");
}

function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}
