import { spawn, type ChildProcess } from "node:child_process";
import { TunnelError } from "./system";

/**
 * A command started before its input is known: `ip -batch -` and `nft -f -` wait on their stdin,
 * so their start-up (exec, dynamic linking, entering a namespace, netlink set-up: 3-30 ms on a
 * loaded machine) is paid while a session is still being negotiated, and giving them their input
 * later costs only the work itself (about 1-2 ms). Used once; `cancel()` ends one not needed. Should
 * this process die first, the command reads the end of its input and exits having done nothing.
 */
export class PrespawnedCommand {
  readonly #child: ChildProcess;
  readonly #done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  #used = false;

  constructor(readonly argv: string[]) {
    const child = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    this.#child = child;
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.stdin!.on("error", () => undefined); // the command died before its input: reported by its exit
    this.#done = new Promise((resolve) => {
      child.once("error", (err) => resolve({ code: -1, stdout, stderr: err.message }));
      child.once("close", (code) => resolve({ code, stdout, stderr }));
    });
  }

  /** Gives the command its whole input and waits for it to end: its output, or an error with its first line of stderr. */
  async run(input: string): Promise<string> {
    if (this.#used) throw new TunnelError("COMMAND_FAILED", `${this.argv.join(" ")} was already used`);
    this.#used = true;
    this.#child.stdin!.end(input);
    const { code, stdout, stderr } = await this.#done;
    if (code !== 0) throw new TunnelError("COMMAND_FAILED", `${this.argv.join(" ")}: ${(stderr || `exited ${code}`).trim().split("\n")[0]}`);
    return stdout;
  }

  /** Ends a command that will not be used (it exits on the end of its input, having done nothing). */
  cancel(): void {
    if (this.#used) return;
    this.#used = true;
    this.#child.stdin!.end();
  }
}
