import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { silentLogger, type Logger } from "../../log/logger";
import type { ConsumerSpare } from "../tunnel-type";
import { stopStale } from "../supervision";
import { traced } from "../../log/connect-trace";
import { WireGuardProcess } from "./process";
import { freeUdpPort } from "./handshake";
import { generateKeyPair } from "./keys";
import { enlargeReceiveBuffers } from "./socket-buffer";

/** The interface name of a spare: `mws` + 12 hex characters, random (the key pair does not exist yet). */
export const SPARE_DEVICE = /^mws[0-9a-f]{12}$/;

export interface WireGuardSpareOptions {
  /** A private directory for the pid file (`<data-dir>/run`). */
  runDir: string;
  /** The namespace the spare is made in until a connection asks for another. Default the node's own. */
  netns?: string;
  log?: Logger;
}

/** A spare being made (or made), and where. */
interface Making {
  netns?: string;
  device: string;
  /**
   * The UDP port it listens on: the port a session request names. It resolves only once wireguard-go
   * holds a socket there (`WireGuardProcess.listening`: its answer to listen_port is no proof), and
   * rejects when it could not bind (the spare is then stopped and dropped): a connection is never
   * given a port its device does not receive on (review L3).
   */
  port: Promise<number>;
  process: Promise<WireGuardProcess | undefined>;
  /** Whether its sockets' receive buffers were enlarged (false once that failed twice, or it failed to start). */
  buffers: Promise<boolean>;
}

/** A spare handed to a connection (`take`). */
export type TakenSpare = Omit<Making, "netns">;

/**
 * At most one wireguard-go made before any connection asks for it, so that a connection starts
 * with a device that already serves its control socket (wireguard-go takes 25–30 ms to get there,
 * longer than the negotiation it would run beside: docs/connect-path.md). The spare carries
 * nothing: no session key, no address, no route, no peer, its interface down. It listens on its UDP port,
 * with the receive buffers a tunnel gets (socket-buffer.ts): python3's start-up (about 60 ms of CPU)
 * and the socket's rebinding are then paid here, not beside a connect; with a throwaway private key
 * and no peer it answers nothing that arrives there (an initiation fails MAC1 before any work). `take` hands it to the next
 * WireGuard connection in its namespace and the caller's `refill` makes the next one once that
 * connection is settled (so the two do not compete for the CPU on the connect path). A spare in
 * another namespace than the one a connection asks for is stopped, and the refill makes one there:
 * never more than one. `stop` removes it.
 */
export class WireGuardSpare implements ConsumerSpare {
  #making?: Making;
  #netns?: string;
  #stopped = false;

  constructor(private readonly o: WireGuardSpareOptions) {
    this.#netns = o.netns;
  }

  /** Makes the spare (in the background: a node whose wireguard-go cannot start just has none). */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#sweepStale();
    this.refill();
  }

  /** Removes the spare (and one being made): its wireguard-go stopped, its interface and socket gone with it. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#drop();
  }

  /** The spare's interface name, when one is made (or being made) for `netns`. */
  deviceIn(netns: string | undefined): string | undefined {
    return this.#making && this.#making.netns === netns ? this.#making.device : undefined;
  }

  /**
   * The spare for a connection in `netns`, handed over (the caller owns it from now on: it
   * configures and stops it), or undefined when there is none there. Its `port` resolves once its
   * wireguard-go listens there (at once for a spare made long before), or rejects when it could not
   * bind: the connection then makes a device and a port of its own. A spare elsewhere is stopped,
   * so that the next `refill` makes one where connections now go.
   */
  take(netns: string | undefined): TakenSpare | undefined {
    const making = this.#making;
    this.#netns = netns;
    if (!making) return undefined;
    this.#making = undefined;
    if (making.netns === netns) return { device: making.device, port: making.port, process: making.process, buffers: making.buffers };
    void making.process.then((p) => p?.stop());
    return undefined;
  }

  /** Makes a spare where connections go, unless there is one (or the node is stopping). Never rejects. */
  refill(): void {
    if (this.#stopped || this.#making) return;
    const netns = this.#netns;
    const device = `mws${crypto.randomBytes(6).toString("hex")}`;
    const log = this.o.log ?? silentLogger;
    const chosen = freeUdpPort(netns);
    chosen.catch(() => undefined); // awaited once wireguard-go is up
    const made = (async () => {
      let process: WireGuardProcess | undefined;
      try {
        fs.mkdirSync(this.o.runDir, { recursive: true, mode: 0o700 });
        process = new WireGuardProcess({ device, netns, pidFile: path.join(this.o.runDir, `wireguard-${device}.pid`), log, viaHelper: true });
        await traced("wireguard-go: the next spare started", process.start());
        // A throwaway key with the port: until a connection gives it the session's, wireguard-go's MAC1
        // check fails for every initiation (with no key its MAC1 key is all zeros, which anyone can
        // compute: each crafted initiation would cost a Diffie-Hellman). Review L1.
        const port = await chosen;
        await process.uapi.set({ privateKey: generateKeyPair().privateKey, listenPort: port });
        // Its answer errno=0 is no proof (process.ts, `listening`): a port another socket of the namespace
        // holds would be handed out while wireguard-go listens on nothing.
        await traced("wireguard-go: the next spare listens", process.listening(port));
        return { process, port };
      } catch (err) {
        await process?.stop();
        log.info({ err: (err as Error).message }, "no spare WireGuard device: connections make their own");
        throw err;
      }
    })();
    const making: Making = {
      netns,
      device,
      port: made.then((m) => m.port),
      process: made.then(
        (m) => m.process,
        () => undefined,
      ),
      // In the background: a connection may take the spare meanwhile (setting its key does not rebind the socket).
      buffers: made.then(
        (m) => this.#enlarge(m.process, log),
        () => false,
      ),
    };
    // Whoever holds it now (a connection, `take` elsewhere, `stop`) stops it; one that failed is dropped.
    made.catch(() => {
      if (this.#making === making) this.#making = undefined;
    });
    making.port.catch(() => undefined); // awaited by the connect that takes it (which then makes its own device and port)
    this.#making = making;
  }

  /**
   * The spare's receive buffers enlarged (socket-buffer.ts). A failure, or python3 finding none of
   * its UDP sockets (which counted as success before), is tried once more, then warned; the
   * connection that takes such a spare enlarges them itself (review L4).
   */
  async #enlarge(process: WireGuardProcess, log: Logger): Promise<boolean> {
    for (const last of [false, true]) {
      try {
        const count = await traced("python3: the spare's receive buffers enlarged", enlargeReceiveBuffers(process.pid!));
        if (count > 0) return true;
        throw new Error("python3 found none of its UDP sockets");
      } catch (err) {
        if (!process.running) return false; // stopped meanwhile (taken elsewhere, or the node stopping)
        if (last) log.warn({ err: (err as Error).message }, "could not enlarge the spare wireguard-go's receive buffer");
        else log.info({ err: (err as Error).message }, "enlarging the spare wireguard-go's receive buffer failed: once more");
      }
    }
    return false;
  }

  async #drop(): Promise<void> {
    const making = this.#making;
    this.#making = undefined;
    const process = await making?.process;
    await process?.stop();
  }

  /** Spares left by a node that died without stopping them (the parent-death signal should have ended them). */
  async #sweepStale(): Promise<void> {
    let files: string[];
    try {
      files = fs.readdirSync(this.o.runDir);
    } catch {
      return;
    }
    const log = this.o.log ?? silentLogger;
    for (const file of files) {
      const device = /^wireguard-(mws[0-9a-f]{12})\.pid$/.exec(file)?.[1];
      if (device)
        await stopStale(
          path.join(this.o.runDir, file),
          (argv) => argv.some((a) => a.endsWith("wireguard-go")) && argv.includes(device),
          log,
          "a spare wireguard-go",
        );
    }
  }
}
