import fs from "node:fs";
import { silentLogger, type Logger } from "../../log/logger";
import { ControlsError } from "./errors";

/** Who may connect, as the operator configures it: inline addresses and/or files of them. */
export interface AccessSettings {
  /** Only these consumers (and those in `allowFile`) may connect. */
  allow?: string[];
  /** These consumers (and those in `denyFile`) may not, even if allowed. */
  deny?: string[];
  /** One address per line; `#` starts a comment. Re-read when it changes. */
  allowFile?: string;
  denyFile?: string;
}

/** What a proposal says about who may connect: anyone (but the denied), or only an allow list. */
export type AccessPolicy = "open" | "allowlist";

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** The addresses of a list file's text; a ControlsError names the first bad line. */
export function parseAccessFile(text: string, file: string): string[] {
  const out: string[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) return;
    if (!ADDRESS.test(line)) throw new ControlsError("BAD_ACCESS_LIST", `${file}:${i + 1}: "${line.slice(0, 60)}" is not an identity address (0x + 40 hex)`);
    out.push(line.toLowerCase());
  });
  return out;
}

function readListFile(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ControlsError("ACCESS_LIST_UNREADABLE", `cannot read the access list ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      cause: err,
    });
  }
  return parseAccessFile(text, file);
}

export interface AccessListOptions extends AccessSettings {
  /** How often the files are looked at. Default 1 s. */
  pollMs?: number;
  /** Called after a file changed and was read again (the lists may now exclude running consumers). */
  onChange?: () => void;
  log?: Logger;
}

/**
 * Allow and deny lists of consumer identities. The deny list wins. A file is read at start (a
 * missing or malformed file is an error then) and again whenever it changes; a change that does
 * not parse keeps the last good list and is logged, so a half-saved file never opens the door.
 */
export class AccessList {
  readonly #o: AccessListOptions;
  readonly #log: Logger;
  #allowFromFile: string[] = [];
  #denyFromFile: string[] = [];
  #allow?: Set<string>;
  #deny = new Set<string>();
  /** What each file looked like when it was last read (a different look means it changed). */
  readonly #seen = new Map<string, string>();
  #timer?: NodeJS.Timeout;

  constructor(options: AccessListOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    for (const a of [...(options.allow ?? []), ...(options.deny ?? [])]) {
      if (!ADDRESS.test(a)) throw new ControlsError("BAD_ACCESS_LIST", `"${a}" is not an identity address (0x + 40 hex)`);
    }
    if (options.allowFile) this.#allowFromFile = this.#read(options.allowFile);
    if (options.denyFile) this.#denyFromFile = this.#read(options.denyFile);
    this.#rebuild();
  }

  /** Whether an allow list restricts who may connect (what the proposal advertises). */
  get policy(): AccessPolicy {
    return this.#allow ? "allowlist" : "open";
  }

  /** Whether the lists say anything at all. */
  get restricts(): boolean {
    return this.#allow !== undefined || this.#deny.size > 0;
  }

  /** null when the consumer may connect; otherwise why not. */
  refusal(consumer: string): string | null {
    const id = consumer.toLowerCase();
    if (this.#deny.has(id)) return `${consumer} is on this provider's deny list`;
    if (this.#allow && !this.#allow.has(id)) return `${consumer} is not on this provider's allow list`;
    return null;
  }

  /** Looks at the files every `pollMs` (polling: an editor that replaces a file is seen too). */
  start(): void {
    if (this.#timer || (!this.#o.allowFile && !this.#o.denyFile)) return;
    this.#timer = setInterval(() => {
      if (this.#o.allowFile && this.#changed(this.#o.allowFile)) this.#reload(this.#o.allowFile, "allow");
      if (this.#o.denyFile && this.#changed(this.#o.denyFile)) this.#reload(this.#o.denyFile, "deny");
    }, this.#o.pollMs ?? 1000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #look(file: string): string {
    try {
      const st = fs.statSync(file);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return "missing";
    }
  }

  #changed(file: string): boolean {
    return this.#look(file) !== this.#seen.get(file);
  }

  /** Reads a list file, remembering how it looked before the read (a write during it is seen next time). */
  #read(file: string): string[] {
    const look = this.#look(file);
    const list = readListFile(file);
    this.#seen.set(file, look);
    return list;
  }

  #reload(file: string, which: "allow" | "deny"): void {
    try {
      const list = this.#read(file);
      if (which === "allow") this.#allowFromFile = list;
      else this.#denyFromFile = list;
      this.#rebuild();
      this.#log.info({ file, entries: list.length }, `${which} list re-read`);
      this.#o.onChange?.();
    } catch (err) {
      // Not again until it changes once more.
      this.#seen.set(file, this.#look(file));
      this.#log.error(
        { file, code: (err as ControlsError).code, err: (err as Error).message },
        `${which} list changed but cannot be used; the last good one stays`,
      );
    }
  }

  #rebuild(): void {
    const allowGiven = this.#o.allow !== undefined || this.#o.allowFile !== undefined;
    this.#allow = allowGiven ? new Set([...(this.#o.allow ?? []).map((a) => a.toLowerCase()), ...this.#allowFromFile]) : undefined;
    this.#deny = new Set([...(this.#o.deny ?? []).map((a) => a.toLowerCase()), ...this.#denyFromFile]);
  }
}
