import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import readline from "node:readline";
import { PassThrough, Writable } from "node:stream";
import { parentDeathSignal } from "./supervision";
import { TunnelError } from "./system";

/**
 * The helper's program: it starts what it is asked to (one JSON request a line on its input,
 * answers a line each on its output) and ends, with everything it still holds, when its input
 * closes. `run`: start, give the input, answer with the exit code and output. `prespawn`: start
 * now, hold; `feed`: give the held one its input, answer as `run`; `cancel`: end its input; `kill`.
 */
const HELPER = `
const { spawn } = require("node:child_process");
const held = new Map();
const send = (m) => process.stdout.write(JSON.stringify(m) + "\\n");
function start(m) {
  const c = spawn(m.argv[0], m.argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "", stderr = "";
  c.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
  c.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
  c.stdin.on("error", () => undefined);
  const h = { c, done: new Promise((r) => { c.on("error", (e) => r({ code: -1, stdout, stderr: e.message })); c.on("close", (code) => r({ code, stdout, stderr })); }) };
  held.set(m.id, h);
  h.done.then(() => setImmediate(() => held.get(m.id) === h && !h.fed && held.delete(m.id)));
  return h;
}
function feed(id, input) {
  const h = held.get(id);
  if (!h) return send({ id, code: -1, stdout: "", stderr: "nothing held under this id" });
  h.fed = true;
  h.c.stdin.end(input);
  h.done.then((r) => { held.delete(id); send({ id, ...r }); });
}
const live = new Map();
function launch(m) {
  const c = spawn(m.argv[0], m.argv.slice(1), { stdio: [m.stdin ? "pipe" : "ignore", "pipe", "pipe"], env: m.env });
  live.set(m.id, c);
  c.on("spawn", () => send({ id: m.id, event: "spawn", pid: c.pid }));
  c.stdin && c.stdin.on("error", () => undefined);
  for (const stream of ["stdout", "stderr"]) c[stream].on("data", (d) => send({ id: m.id, event: "data", stream, data: d.toString("base64") }));
  c.on("error", (e) => { live.delete(m.id); send({ id: m.id, event: "exit", code: -1, signal: null, error: e.message }); });
  c.on("exit", (code, signal) => { live.delete(m.id); send({ id: m.id, event: "exit", code, signal }); });
}
require("node:readline").createInterface({ input: process.stdin }).on("line", (line) => {
  const m = JSON.parse(line);
  if (m.op === "launch") launch(m);
  else if (m.op === "write") live.get(m.id)?.stdin?.write(Buffer.from(m.data, "base64"));
  else if (m.op === "end") live.get(m.id)?.stdin?.end();
  else if (m.op === "signal") { try { live.get(m.id)?.kill(m.signal); } catch {} }
  else if (m.op === "run") { start(m); feed(m.id, m.input ?? ""); }
  else if (m.op === "prespawn") start(m);
  else if (m.op === "feed") feed(m.id, m.input);
  else if (m.op === "cancel") { const h = held.get(m.id); held.delete(m.id); h && h.c.stdin.end(); }
  else if (m.op === "kill") held.get(m.id)?.c.kill("SIGKILL");
}).on("close", () => process.exit(0));
`;

interface Answer {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts short commands (`ip`, `nft`, …) from a small helper process instead of from the node.
 * Node starts a child by fork(2), which copies the page tables of the whole process and holds the
 * event loop meanwhile: 1-6 ms for a 40 MB process, 25 ms for a 250 MB one on a loaded 2-core
 * machine (measured), that is most of what a session's tunnel phase cost. The helper is a bare
 * node of about 40 MB, started once; it dies with the node (parent-death signal, and the end of
 * its input), and so do the commands it holds. Long-lived processes (openvpn, wireguard-go) are
 * still started by the node: they need its supervision.
 */
export class Spawner {
  #helper?: ChildProcess;
  #next = 0;
  readonly #waiting = new Map<number, (answer: Answer) => void>();
  /** Long-lived processes the helper started for us, by id. */
  readonly #children = new Map<number, RemoteChild>();

  #ensure(): ChildProcess {
    if (this.#helper && this.#helper.exitCode === null && this.#helper.signalCode === null) return this.#helper;
    const env = { ...process.env };
    delete env.NODE_OPTIONS; // no ts-node or loaders in the helper: it is plain JavaScript
    const argv = [...parentDeathSignal(), process.execPath, "-e", HELPER];
    const helper = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "inherit"], env });
    helper.stdin!.on("error", () => undefined);
    readline.createInterface({ input: helper.stdout! }).on("line", (line) => {
      const answer = JSON.parse(line) as Answer & { id: number; event?: string };
      if (answer.event) return this.#children.get(answer.id)?.deliver(answer as unknown as ChildEvent);
      const resolve = this.#waiting.get(answer.id);
      this.#waiting.delete(answer.id);
      resolve?.(answer);
      this.#refIfBusy();
    });
    helper.once("exit", (code) => {
      // Its children got their parent-death signal: they are gone too.
      for (const child of this.#children.values()) child.deliver({ event: "exit", code: null, signal: "SIGTERM" });
      for (const [id, resolve] of this.#waiting) {
        this.#waiting.delete(id);
        resolve({ code: -1, stdout: "", stderr: `the spawning helper exited (${code})` });
      }
    });
    this.#helper = helper;
    this.#refIfBusy();
    return helper;
  }

  /** The helper keeps the node alive only while an answer is awaited. */
  #refIfBusy(): void {
    const h = this.#helper;
    if (!h) return;
    const streams = [h.stdin, h.stdout] as unknown as { ref?: () => void; unref?: () => void }[];
    const holding = [...this.#children.values()].some((c) => !c.background);
    if (this.#waiting.size > 0 || holding) {
      h.ref();
      for (const s of streams) s.ref?.();
    } else {
      h.unref();
      for (const s of streams) s.unref?.();
    }
  }

  #send(message: Record<string, unknown>): void {
    this.#ensure().stdin!.write(`${JSON.stringify(message)}\n`);
  }

  #answer(id: number, argv: string[], timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        this.#send({ op: "kill", id });
        this.#refIfBusy();
        reject(new TunnelError("COMMAND_FAILED", `${argv.join(" ")}: did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(id, ({ code, stdout, stderr }) => {
        clearTimeout(timer);
        if (code === 0) resolve(stdout);
        else reject(new TunnelError("COMMAND_FAILED", `${argv.join(" ")}: ${(stderr || `exited ${code}`).trim().split("\n")[0]}`));
      });
      this.#refIfBusy();
    });
  }

  /** Starts the helper now, so that the first command does not pay for it. */
  warm(): void {
    this.#ensure();
  }

  /** Runs `argv` to completion with `input` on its stdin: its output, or an error with the first line of its stderr. */
  run(argv: string[], input = "", timeoutMs = 30_000): Promise<string> {
    const id = this.#next++;
    const answer = this.#answer(id, argv, timeoutMs);
    this.#send({ op: "run", id, argv, input });
    return answer;
  }

  /** Starts `argv` now; `feed` gives it its input later (see PrespawnedCommand). */
  prespawn(argv: string[]): { feed(input: string, timeoutMs?: number): Promise<string>; cancel(): void } {
    const id = this.#next++;
    this.#send({ op: "prespawn", id, argv });
    return {
      feed: (input, timeoutMs = 30_000) => {
        const answer = this.#answer(id, argv, timeoutMs);
        this.#send({ op: "feed", id, input });
        return answer;
      },
      cancel: () => this.#send({ op: "cancel", id }),
    };
  }

  /**
   * Starts a long-lived program from the helper (a tunnel's process): a child that looks like
   * node's own to whoever supervises it (pid once started, output, exit, signals, its input when
   * `stdin`), without a fork of the node. `background`: it does not keep the node alive (a warm
   * helper such as nft-session.ts's, which ends with the node).
   */
  launch(argv: string[], o: { stdin?: boolean; env?: NodeJS.ProcessEnv; background?: boolean } = {}): RemoteChild {
    const id = this.#next++;
    const child = new RemoteChild(argv, (message) => this.#send({ ...message, id }), o.stdin === true);
    child.background = o.background === true;
    this.#children.set(id, child);
    child.once("exit", () => {
      this.#children.delete(id);
      this.#refIfBusy();
    });
    this.#send({ op: "launch", id, argv, stdin: o.stdin === true, ...(o.env ? { env: o.env } : {}) });
    this.#refIfBusy();
    return child;
  }
}

type ChildEvent =
  | { event: "spawn"; pid: number }
  | { event: "data"; stream: "stdout" | "stderr"; data: string }
  | { event: "exit"; code: number | null; signal: NodeJS.Signals | null; error?: string };

/** A process the helper started: the part of node's ChildProcess that supervision uses. */
export class RemoteChild extends EventEmitter<{ spawn: []; exit: [code: number | null, signal: NodeJS.Signals | null]; error: [Error] }> {
  pid?: number;
  /** Does not keep the node alive. */
  background = false;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdin: Writable | null;

  constructor(
    readonly spawnargs: string[],
    private readonly send: (message: Record<string, unknown>) => void,
    stdin: boolean,
  ) {
    super();
    this.stdin = stdin
      ? new Writable({
          write: (chunk: Buffer, _encoding, done) => {
            this.send({ op: "write", data: Buffer.from(chunk).toString("base64") });
            done();
          },
          final: (done) => {
            this.send({ op: "end" });
            done();
          },
        })
      : null;
  }

  deliver(e: ChildEvent): void {
    if (e.event === "spawn") {
      this.pid = e.pid;
      this.emit("spawn");
    } else if (e.event === "data") {
      (e.stream === "stdout" ? this.stdout : this.stderr).write(Buffer.from(e.data, "base64"));
    } else if (this.exitCode === null && this.signalCode === null) {
      if (e.error) this.stderr.write(`${e.error}\n`);
      this.exitCode = e.signal ? null : (e.code ?? -1);
      this.signalCode = e.signal;
      this.stdout.end();
      this.stderr.end();
      this.emit("exit", this.exitCode, this.signalCode);
    }
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): boolean {
    if (this.exitCode !== null || this.signalCode !== null) return false;
    this.send({ op: "signal", signal });
    return true;
  }
}

/** The node's one spawning helper. */
export const spawner = new Spawner();
