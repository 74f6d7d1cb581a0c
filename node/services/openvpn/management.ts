import net from "node:net";
import { EventEmitter } from "node:events";
import { MystError } from "../../errors/MystError";

export type ManagementErrorCode = "MANAGEMENT_CLOSED" | "MANAGEMENT_COMMAND_FAILED" | "MANAGEMENT_UNREACHABLE";

export class ManagementError extends MystError<ManagementErrorCode> {}

/** One row of `status 3` CLIENT_LIST, as the provider meters it. */
export interface ClientRow {
  commonName: string;
  realAddress: string;
  virtualAddress: string;
  bytesReceived: number;
  bytesSent: number;
  connectedSince: number;
  username: string;
  clientId: number;
}

interface Pending {
  command: string;
  multiline: boolean;
  lines: string[];
  resolve: (lines: string[]) => void;
  reject: (err: Error) => void;
}

/**
 * A client of OpenVPN's management interface (a unix socket). Commands are queued and answered
 * in order (`SUCCESS:`/`ERROR:` lines, or multi-line output up to `END`); real-time notifications
 * (`>CLIENT:…`, `>STATE:…`, `>PASSWORD:…`) are emitted as events. Raw lines enter here and leave
 * as typed values.
 */
/** A `>CLIENT:` block of the server's management interface: the event, client and key ids, and its ENV lines. */
export interface ClientBlock {
  kind: string;
  cid: number;
  kid?: number;
  env: Record<string, string>;
}

/** What the management interface tells, as events (`notification`: any other `>KIND:` line). */
export interface ManagementEvents {
  close: [];
  client: [block: ClientBlock];
  state: [state: { time: number; state: string; detail: string }];
  password: [request: string];
  fatal: [message: string];
  notification: [kind: string, rest: string];
}

export class ManagementClient extends EventEmitter<ManagementEvents> {
  #socket?: net.Socket;
  #buffer = "";
  #queue: Pending[] = [];
  #clientBlock?: ClientBlock;

  /**
   * Connects to openvpn's socket at `path`, trying again until it opens. `listening`, when given, resolves once
   * openvpn said it listens (its log line): the next attempt is made then, not after the current pause. `gone`: once
   * it settles (openvpn exited), no more attempts.
   */
  async connect(path: string, timeoutMs = 10_000, o: { listening?: Promise<unknown>; gone?: Promise<unknown> } = {}): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let attempt = 0;
    let heard = false;
    let ended = false;
    let wake: (() => void) | undefined;
    o.listening?.then(
      () => {
        heard = true;
        wake?.();
      },
      () => undefined,
    );
    const end = () => {
      ended = true;
      wake?.();
    };
    o.gone?.then(end, end);
    for (;;) {
      try {
        await new Promise<void>((resolve, reject) => {
          const socket = net.connect(path);
          socket.once("connect", () => {
            this.#socket = socket;
            resolve();
          });
          socket.once("error", reject);
        });
        break;
      } catch (err) {
        if (ended) throw new ManagementError("MANAGEMENT_UNREACHABLE", `openvpn exited before its management socket ${path} opened`, { cause: err });
        if (Date.now() > deadline) throw new ManagementError("MANAGEMENT_UNREACHABLE", `openvpn's management socket ${path} did not open`, { cause: err });
        // openvpn opens it a few ms after it reads its config: poll every ms at first (and once it said it listens),
        // then less often, up to every 25 ms.
        const pause = heard || ++attempt <= 8 ? 1 : Math.min(25, 2 ** (attempt - 8));
        await new Promise<void>((r) => {
          const timer = setTimeout(r, pause);
          wake = () => {
            clearTimeout(timer);
            r();
          };
        });
        wake = undefined;
      }
    }
    const socket = this.#socket!;
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.#onData(chunk));
    socket.on("close", () => {
      for (const p of this.#queue.splice(0))
        p.reject(new ManagementError("MANAGEMENT_CLOSED", `openvpn closed the management interface during "${p.command}"`));
      this.emit("close");
    });
    socket.on("error", () => undefined);
  }

  close(): void {
    this.#socket?.destroy();
  }

  /** Sends a command; resolves with its SUCCESS text, or its lines for multi-line commands. */
  async command(command: string, multiline = false): Promise<string[]> {
    const [answer] = await this.#send([{ command, multiline }]);
    return answer;
  }

  /**
   * Sends several commands in one write, so openvpn reads them in one go (no other event of its
   * loop runs between them); resolves with each one's answer.
   */
  commands(commands: string[]): Promise<string[][]> {
    return this.#send(commands.map((command) => ({ command, multiline: false })));
  }

  #send(commands: { command: string; multiline: boolean }[]): Promise<string[][]> {
    const socket = this.#socket;
    if (!socket || socket.destroyed) return Promise.reject(new ManagementError("MANAGEMENT_CLOSED", "not connected to openvpn"));
    const answers = commands.map(
      ({ command, multiline }) => new Promise<string[]>((resolve, reject) => this.#queue.push({ command, multiline, lines: [], resolve, reject })),
    );
    socket.write(commands.map((c) => c.command + "\n").join(""));
    return Promise.all(answers);
  }

  async clients(): Promise<ClientRow[]> {
    const lines = await this.command("status 3", true);
    const header = lines
      .find((l) => l.startsWith("HEADER\tCLIENT_LIST"))
      ?.split("\t")
      .slice(2);
    const rows: ClientRow[] = [];
    for (const line of lines) {
      if (!line.startsWith("CLIENT_LIST\t")) continue;
      const f = line.split("\t").slice(1);
      const at = (name: string, fallback: number) => ((header ? header.indexOf(name) : -1) >= 0 ? f[header!.indexOf(name)] : f[fallback]);
      rows.push({
        commonName: at("Common Name", 0),
        realAddress: at("Real Address", 1),
        virtualAddress: at("Virtual Address", 2),
        bytesReceived: Number(at("Bytes Received", 4)),
        bytesSent: Number(at("Bytes Sent", 5)),
        connectedSince: Number(at("Connected Since (time_t)", 7)),
        username: at("Username", 8),
        clientId: Number(at("Client ID", 9)),
      });
    }
    return rows;
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    let nl: number;
    while ((nl = this.#buffer.indexOf("\n")) >= 0) {
      const line = this.#buffer.slice(0, nl).replace(/\r$/, "");
      this.#buffer = this.#buffer.slice(nl + 1);
      this.#onLine(line);
    }
  }

  #onLine(line: string): void {
    if (line.startsWith(">")) return this.#onNotification(line);
    const pending = this.#queue[0];
    if (!pending) return;
    if (line.startsWith("ERROR:")) {
      this.#queue.shift();
      return pending.reject(new ManagementError("MANAGEMENT_COMMAND_FAILED", `openvpn refused "${pending.command}": ${line.slice(6).trim()}`));
    }
    if (!pending.multiline && line.startsWith("SUCCESS:")) {
      this.#queue.shift();
      return pending.resolve([line.slice(8).trim()]);
    }
    if (pending.multiline) {
      if (line === "END") {
        this.#queue.shift();
        return pending.resolve(pending.lines);
      }
      pending.lines.push(line);
    }
  }

  #onNotification(line: string): void {
    const colon = line.indexOf(":");
    const kind = line.slice(1, colon);
    const rest = line.slice(colon + 1);
    if (kind === "CLIENT") {
      // >CLIENT:CONNECT,{CID},{KID} / REAUTH / ESTABLISHED / DISCONNECT,{CID} then >CLIENT:ENV,… until ENV,END
      if (rest.startsWith("ENV,")) {
        const env = rest.slice(4);
        if (!this.#clientBlock) return;
        if (env === "END") {
          const block = this.#clientBlock;
          this.#clientBlock = undefined;
          this.emit("client", block);
          return;
        }
        const eq = env.indexOf("=");
        if (eq > 0) this.#clientBlock.env[env.slice(0, eq)] = env.slice(eq + 1);
        return;
      }
      const [event, cid, kid] = rest.split(",");
      this.#clientBlock = { kind: event, cid: Number(cid), kid: kid === undefined ? undefined : Number(kid), env: {} };
      return;
    }
    if (kind === "STATE") {
      const [time, state, detail] = rest.split(",");
      return void this.emit("state", { time: Number(time), state, detail });
    }
    if (kind === "PASSWORD") return void this.emit("password", rest);
    if (kind === "FATAL") return void this.emit("fatal", rest);
    this.emit("notification", kind, rest);
  }
}
