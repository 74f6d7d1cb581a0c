import { spawner } from "./spawner";
import { TunnelError } from "./system";

/**
 * A command started before its input is known: `ip -batch -` and `nft -f -` wait on their stdin,
 * so their start-up (exec, dynamic linking, entering a namespace, netlink set-up: 3-30 ms on a
 * loaded machine) is paid while a session is still being negotiated, and giving them their input
 * later costs only the work itself (about 1-2 ms). Started by the spawning helper (spawner.ts), so
 * the node's event loop does not stop for a fork. Used once; `cancel()` ends one not needed. Should
 * the node die first, the command reads the end of its input and exits having done nothing.
 */
export class PrespawnedCommand {
  readonly #handle: ReturnType<typeof spawner.prespawn>;
  #used = false;

  constructor(readonly argv: string[]) {
    this.#handle = spawner.prespawn(argv);
  }

  /** Gives the command its whole input and waits for it to end: its output, or an error with its first line of stderr. */
  async run(input: string): Promise<string> {
    if (this.#used) throw new TunnelError("COMMAND_FAILED", `${this.argv.join(" ")} was already used`);
    this.#used = true;
    return this.#handle.feed(input);
  }

  /** Ends a command that will not be used (it exits on the end of its input, having done nothing). */
  cancel(): void {
    if (this.#used) return;
    this.#used = true;
    this.#handle.cancel();
  }
}
