import { silentLogger, type Logger } from "../../log/logger";
import type { ConsumerSpare } from "../tunnel-type";
import { launchWaiting, type WaitingOpenVpn } from "./waiting";

export interface OpenVpnSpareOptions {
  /** A private directory for the FIFO and the management socket (`<data-dir>/run`). */
  runDir: string;
  /** The namespace the spare is started in until a connection asks for another. Default the node's own. */
  netns?: string;
  log?: Logger;
}

/**
 * At most one openvpn started before any connection asks for it (config `openvpnSpare`), waiting for its config on
 * its FIFO. A connection's own openvpn, started while the session is negotiated, was still starting when the
 * provider answered (the spawning helper, setpriv, `ip netns exec`, openvpn up to the FIFO's open: about 15 ms
 * here against a 4–6 ms negotiation), so its start lay on the tunnel phase (docs/connect-path.md, session 11).
 * The spare carries nothing: no config, no credentials, no tun device, no socket, no management interface; it
 * only waits. `take` hands it to the next OpenVPN connection in its namespace, and the caller's `refill` starts
 * the next one once that connection is settled (not beside it). A spare in another namespace than the one a
 * connection asks for is stopped, and the refill starts one there: never more than one. `stop` removes it.
 */
export class OpenVpnSpare implements ConsumerSpare {
  #waiting?: WaitingOpenVpn;
  #netns?: string;
  #stopped = true;

  constructor(private readonly o: OpenVpnSpareOptions) {
    this.#netns = o.netns;
  }

  /** Starts the spare (in the background: a node whose openvpn cannot start just has none). */
  async start(): Promise<void> {
    this.#stopped = false;
    this.refill();
  }

  /** Stops the spare's openvpn (and waits for it to exit); no other is started until `start`. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    await waiting?.process.stop();
  }

  /** The waiting openvpn's pid, when there is one in `netns`. */
  pidIn(netns: string | undefined): number | undefined {
    const waiting = this.#waiting;
    return waiting && waiting.netns === netns ? waiting.process.pid : undefined;
  }

  /**
   * The spare for a connection in `netns`, handed over (the caller owns it from now on: it configures and
   * stops it), or undefined when there is none running there. One elsewhere is stopped, so that the next
   * `refill` starts one where connections now go.
   */
  take(netns: string | undefined): WaitingOpenVpn | undefined {
    const waiting = this.#waiting;
    this.#netns = netns;
    this.#waiting = undefined;
    if (!waiting) return undefined;
    if (waiting.netns === netns && waiting.process.running) return waiting;
    void waiting.process.stop();
    return undefined;
  }

  /** Starts a spare where connections go, unless there is one (or the node is stopping). Never rejects. */
  refill(): void {
    if (this.#stopped || this.#waiting) return;
    const waiting = launchWaiting({ runDir: this.o.runDir, netns: this.#netns, log: this.o.log });
    this.#waiting = waiting;
    const drop = (why: string) => {
      if (this.#waiting !== waiting) return; // taken or stopped meanwhile: its holder deals with it
      this.#waiting = undefined;
      (this.o.log ?? silentLogger).info({ why }, "no spare openvpn: connections start their own");
    };
    waiting.launched.then(
      () => (waiting.process.running ? waiting.process.once("exit", (code) => drop(`it exited (${code})`)) : drop("it exited at once")),
      (err: Error) => drop(err.message),
    );
  }
}
