import fs from "node:fs";
import { type RemoteChild, spawner } from "../services/spawner";
import { ProtectionError } from "./errors";
import { nftApply, nftIn } from "./nft";
import { traced } from "../log/connect-trace";

/** How long a warm `nft -i` waits for the next transaction before it ends. */
const IDLE_MS = 20_000;

/**
 * A warm `nft -i` in one network namespace, started by the spawning helper and kept for the next
 * transaction: each script is sent as one line, which nft runs as one batch (one atomic
 * transaction, as `nft -f`), so the kill switch's table is installed and armed with no process
 * start on the connect path (an `nft` start is 3–25 ms of exec, libnftables and netlink set-up on
 * a loaded machine; the transaction itself 1–3 ms). After each script a line nft cannot parse (the
 * bare word `myst_mark_<n>`) makes nft print it to stderr, with its syntax error, once the script's
 * batch is done: what came before it is the script's own outcome. No table is read back for it (a
 * lookup of a missing table, the marker before, read the ruleset back after each script); nft still
 * asks the kernel for the ruleset's generation, and the marker's error drops nft's cache.
 * The session ends after IDLE_MS without work (a namespace a test deletes is not held for long),
 * when the node dies (its input closes),
 * or when its namespace was replaced by another of the same name (checked by inode before each
 * use). Scripts run one at a time, in the order given: each is written at once, behind the ones
 * still running (nft reads its input line by line), so a script that must follow another costs no
 * round trip through the helper between them.
 */
export class NftSession {
  readonly #child: RemoteChild;
  readonly #inode: number | undefined;
  #stderr = "";
  #seq = 0;
  /** The scripts written and not yet answered, oldest first (nft answers in that order). */
  readonly #waiting: { marker: string; resolve: (out: string) => void; reject: (err: Error) => void }[] = [];
  #idle?: NodeJS.Timeout;
  #ended = false;

  constructor(readonly netns?: string) {
    this.#inode = inodeOf(netns);
    this.#child = spawner.launch(nftIn(netns, ["-i"]), { stdin: true, background: true });
    this.#child.stderr.setEncoding("utf8").on("data", (d: string) => {
      this.#stderr += d;
      this.#settle();
    });
    this.#child.stdout.resume();
    this.#child.once("exit", () => {
      this.#ended = true;
      this.#failAll(new ProtectionError("FIREWALL_FAILED", `nft -i${netns ? ` in ${netns}` : ""} ended: ${this.#stderr.trim().slice(0, 300)}`));
    });
    this.#touch();
  }

  /**
   * The IPv4 routes of the main table of its namespace, read from `/proc/<pid>/net/route` of the
   * nft process that lives there (no process started: what `ip route show exact` answers for a host
   * route); undefined when it is not known to be in that namespace yet (nsenter not yet entered).
   */
  mainRoutes4(): string | undefined {
    const pid = this.#child.pid;
    if (pid === undefined || !this.usable) return undefined;
    try {
      const ns = /^net:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/ns/net`));
      const expected = this.#inode ?? inodeOf(undefined, true);
      if (!ns || Number(ns[1]) !== expected) return undefined;
      return fs.readFileSync(`/proc/${pid}/net/route`, "utf8");
    } catch {
      return undefined;
    }
  }

  /** Whether it can take scripts: running, and its namespace is still the one of that name. */
  get usable(): boolean {
    return !this.#ended && inodeOf(this.netns) === this.#inode;
  }

  /**
   * Runs `script` (nft's file syntax) as one transaction, after every script given before it;
   * rejects with nft's error when it is refused.
   */
  apply(script: string, timeoutMs = 15_000): Promise<void> {
    return this.#run(script, timeoutMs);
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#idle);
    this.#child.stdin?.end();
  }

  async #run(script: string, timeoutMs: number): Promise<void> {
    if (this.#ended) throw new ProtectionError("FIREWALL_FAILED", "nft -i has ended");
    this.#touch();
    const marker = `myst_mark_${++this.#seq}`;
    // One line is one batch: newlines inside the script's blocks become statement separators.
    const line = script
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "")
      .join("; ");
    const out = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        // Its answer may yet come, and would be taken for the next script's: nothing more goes to this nft.
        this.end();
        this.#failAll(new ProtectionError("FIREWALL_FAILED", `nft -i did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.push({
        marker,
        resolve: (o) => {
          clearTimeout(timer);
          resolve(o);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.#child.stdin?.write(`${line}\n${marker}\n`);
    });
    this.#touch();
    if (/^Error/m.test(out)) {
      throw new ProtectionError("FIREWALL_FAILED", `nftables refused the rule set${this.netns ? ` in ${this.netns}` : ""}: ${out.trim().slice(0, 500)}`);
    }
  }

  /** Hands each waiting script, oldest first, what nft printed for it, once its marker's line is there. */
  #settle(): void {
    for (let w = this.#waiting[0]; w; w = this.#waiting[0]) {
      // The marker's line, after its own error line (so never at the start).
      const at = this.#stderr.indexOf(`\n${w.marker}\n`);
      if (at < 0) return;
      // The marker's own error is the line before it; the caret line after it is dropped.
      const before = this.#stderr.slice(0, at + 1).replace(/[^\n]*\n$/, "");
      const rest = this.#stderr
        .slice(at + 1)
        .split("\n")
        .slice(1);
      if (rest.length > 0 && /^\s*\^+\s*$/.test(rest[0])) rest.shift();
      this.#stderr = rest.join("\n").replace(/^\s*\^+\s*\n?/, "");
      this.#waiting.shift();
      w.resolve(before);
    }
  }

  #failAll(err: Error): void {
    for (const w of this.#waiting.splice(0)) w.reject(err);
  }

  #touch(): void {
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => this.end(), IDLE_MS);
    this.#idle.unref();
  }
}

function inodeOf(netns: string | undefined, own = false): number | undefined {
  if (netns === undefined && !own) return undefined;
  try {
    return netns === undefined ? fs.statSync("/proc/self/ns/net").ino : fs.statSync(`/run/netns/${netns}`).ino;
  } catch {
    return -1;
  }
}

const sessions = new Map<string, NftSession>();

/** The warm `nft -i` of `netns` (the machine's own when undefined), started now if there is none usable. */
export function nftSession(netns?: string): NftSession {
  const key = netns ?? "";
  let s = sessions.get(key);
  if (!s?.usable) {
    s?.end();
    s = new NftSession(netns);
    sessions.set(key, s);
  }
  return s;
}

/** Whether the main IPv4 table in /proc/<pid>/net/route's text holds a route for exactly `address`/32. */
export function hasHostRoute4(table: string, address: string): boolean {
  const [a, b, c, d] = address.split(".").map(Number);
  // The kernel prints addresses as the hex of their in-memory (network order) bytes read as a host (little-endian) word.
  const hex = ((d << 24) | (c << 16) | (b << 8) | a) >>> 0;
  const want = hex.toString(16).toUpperCase().padStart(8, "0");
  return table
    .split("\n")
    .slice(1)
    .some((line) => {
      const f = line.split("\t");
      return f[1] === want && f[7] === "FFFFFFFF";
    });
}

/** Ends every warm `nft -i` (a test before it deletes its namespaces; they end by themselves when idle). */
export function endNftSessions(): void {
  for (const s of sessions.values()) s.end();
  sessions.clear();
}

/**
 * One transaction through the namespace's warm `nft -i` (nft-session.ts); through a fresh `nft -f`
 * when that session cannot take it (it ended, or its namespace was replaced). nft's refusal of the
 * script itself is not retried.
 */
export function transact(script: string, netns?: string, step = "nft: a transaction"): Promise<void> {
  const session = nftSession(netns);
  return traced(
    step,
    session.apply(script).catch((err) => (session.usable ? Promise.reject(err) : nftApply(script, netns))),
  );
}
