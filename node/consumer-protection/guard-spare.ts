import fs from "node:fs";
import { silentLogger, type Logger } from "../log/logger";
import { nftApply } from "./nft";
import { protectionRecordFile, readRecordIfValid } from "./record";
import { unguardScript, type GuardBase } from "./rules";

/**
 * A disarmed guard table kept between connections (config `killSwitchSpare`): the kill switch's
 * counterpart of the WireGuard spare. A disconnect, or a connect that failed before its tunnel came
 * up, empties the table's sets and `armed` in one transaction instead of deleting it (undo.ts); the
 * next connection in the same namespace whose rules around the sets are the same (kill switch, LAN,
 * control endpoints) takes it, and its arming is then the only nftables change on its connect path.
 * A disarmed table blocks nothing: each hook's chain accepts by policy and jumps to its guard only
 * through the empty set `armed` (docs/privacy.md). Its record stays (`prepared`, this process's pid),
 * so a crash leaves nothing the next start does not remove; `stop` (the node stops) removes it.
 */
export class GuardSpare {
  /** The disarmed table held now: its namespace and the rules around its sets. */
  #held?: { netns?: string; base: string };
  #stopped = false;
  readonly #log: Logger;

  constructor(private readonly o: { dataDir: string; log?: Logger }) {
    this.#log = o.log ?? silentLogger;
  }

  /** Whether a disarmed table of this node is held in `netns`. */
  holds(netns: string | undefined): boolean {
    return this.#held !== undefined && this.#held.netns === netns;
  }

  /**
   * Hands the held table to a connection in `netns` whose rules around the sets are `base`: "taken" (it
   * is the connection's now), "replace" (one is held there but made for other rules: the connection
   * replaces it in one transaction), "none" (none is held there; one held in another namespace is
   * removed). Nothing is held afterwards.
   */
  take(netns: string | undefined, base: GuardBase): "taken" | "replace" | "none" {
    const held = this.#held;
    this.#held = undefined;
    if (!held) return "none";
    if (held.netns !== netns) {
      void this.#remove(held.netns);
      return "none";
    }
    return held.base === baseKey(base) ? "taken" : "replace";
  }

  /** Whether a lifted connection's table may stay, disarmed (not once the node stops). */
  get keeping(): boolean {
    return !this.#stopped;
  }

  /**
   * A lifted connection's table, disarmed, stays for the next one (false once the node stops: then it
   * is removed as before). A table held in another namespace is removed.
   */
  hold(netns: string | undefined, base: GuardBase): boolean {
    if (this.#stopped) return false;
    const other = this.#held;
    if (other && other.netns !== netns) void this.#remove(other.netns);
    this.#held = { netns, base: baseKey(base) };
    this.#log.info({ netns }, "kill switch: the table stays disarmed for the next connection (killSwitchSpare)");
    return true;
  }

  /** The node stops: the held table and its record go; a connection lifted later removes its own. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const held = this.#held;
    this.#held = undefined;
    // Not removed: the record stays, so the next start removes it.
    if (!held || !(await this.#remove(held.netns))) return;
    const record = readRecordIfValid(this.o.dataDir);
    if (record?.prepared && record.pid === process.pid && record.netns === held.netns) fs.rmSync(protectionRecordFile(this.o.dataDir), { force: true });
  }

  async #remove(netns: string | undefined): Promise<boolean> {
    return nftApply(unguardScript(), netns).then(
      () => true,
      (err) => {
        this.#log.warn({ netns, err: (err as Error).message }, "could not remove the spare kill-switch table");
        return false;
      },
    );
  }
}

/** The rules around the sets a table was made for, as one comparable key. */
export function baseKey(base: GuardBase): string {
  const control = (base.control ?? []).map((e) => `${e.address}|${e.protocol}|${e.port}`);
  return JSON.stringify([base.killSwitch, base.allowLan, control]);
}
