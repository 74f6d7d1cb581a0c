import { NodeClient } from "../api/client";
import type { IdentityFlags, RunningNode } from "../api/launch";
import type { PaymentPolicy } from "../config/payment-policy";
import { loadConfig, type ConfigFlags, type MystConfig } from "../config/config";
import { resolvePassphrase } from "../config/passphrase";
import { MystError } from "../errors/MystError";
import { createLogger, type Logger } from "../log/logger";
import { makeOutput, type Output } from "./output";

/**
 * The node's launcher, loaded only when a command must start a node: it brings in the whole node
 * (sessions, tunnels, payments, the store, the API's server), which `myst discovery`, `--help` and
 * every command answered by a running node never use (loading it cost a client command 0.3-0.4 s
 * of CPU).
 */
const launch = (): typeof import("../api/launch") => require("../api/launch");

/** The global flags every command accepts. */
export interface GlobalFlags extends ConfigFlags {
  json?: boolean;
}

/**
 * What a command has: the validated config, its output, and the node — reached only through its
 * API client, whether it runs as a daemon, for a foreground command, or offline in this process.
 */
export class CommandContext {
  readonly config: MystConfig;
  readonly out: Output;
  #log?: Logger;

  constructor(flags: GlobalFlags) {
    this.config = loadConfig(flags);
    this.out = makeOutput(Boolean(flags.json));
  }

  get log(): Logger {
    this.#log ??= createLogger(this.config.logLevel, this.config.logFormat);
    return this.#log;
  }

  /** The node running for this data dir (a daemon or a foreground command's), if any. */
  runningNode(): NodeClient | null {
    return NodeClient.find(this.config.dataDir);
  }

  /** Runs `use` against this data dir's node: the running one, else an offline one for this command. */
  withNode<T>(flags: IdentityFlags, use: (node: NodeClient) => Promise<T>): Promise<T> {
    const running = this.runningNode();
    if (running) return use(running);
    return launch().withNode(this.config, this.log, flags, use);
  }

  /** Starts this data dir's node for as long as this command runs (`myst daemon`, a foreground connect or service). */
  runNode(flags: IdentityFlags, options: { policy?: PaymentPolicy; foreground: boolean; keepKillSwitchFor?: { netns?: string } }): Promise<RunningNode> {
    return launch().runNode(this.config, this.log, flags, options);
  }

  requireNode(command: string): NodeClient {
    const node = this.runningNode();
    if (!node) throw new MystError("DAEMON_NOT_RUNNING", `${command} needs a running node for ${this.config.dataDir}: start one with \`myst daemon\``);
    return node;
  }

  /** The passphrase of the flags (or MYST_PASSPHRASE); undefined when none is given and `optional`. */
  passphrase(flags: { passphrase?: string; passphraseFile?: string }, options: { optional?: boolean } = {}): string | undefined {
    if (options.optional && flags.passphrase === undefined && flags.passphraseFile === undefined && process.env.MYST_PASSPHRASE === undefined) return undefined;
    return resolvePassphrase({
      flag: flags.passphrase,
      file: flags.passphraseFile,
      env: process.env.MYST_PASSPHRASE,
      hint: "--passphrase-file FILE, MYST_PASSPHRASE or --passphrase",
    });
  }

  newPassphrase(flags: { newPassphrase?: string; newPassphraseFile?: string }): string | undefined {
    if (flags.newPassphrase === undefined && flags.newPassphraseFile === undefined && process.env.MYST_NEW_PASSPHRASE === undefined) {
      return undefined;
    }
    return resolvePassphrase({
      flag: flags.newPassphrase,
      file: flags.newPassphraseFile,
      env: process.env.MYST_NEW_PASSPHRASE,
      hint: "--new-passphrase-file FILE, MYST_NEW_PASSPHRASE or --new-passphrase",
    });
  }
}
