import path from "node:path";
import { DaemonClient } from "../api/client";
import { connectChain, type ChainConnection } from "../chain/connect";
import { readDeployment } from "../chain/deployment";
import { RegistrationRecords, Registrar } from "../chain/registration";
import { IdentityRegistryClient } from "../chain/registry";
import { loadConfig, type ConfigFlags, type MystConfig } from "../config/config";
import { Keystore } from "../identity/keystore";
import { resolvePassphrase } from "../identity/passphrase";
import { createLogger, type Logger } from "../log/logger";
import { MystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import { makeOutput, type Output } from "./output";

/** The global flags every command accepts. */
export interface GlobalFlags extends ConfigFlags {
  json?: boolean;
}

/** What a command needs, built from the validated config; the chain is connected only on demand. */
export class CommandContext {
  readonly config: MystConfig;
  readonly out: Output;
  readonly keystore: Keystore;
  #chain?: Promise<ChainConnection>;
  #registry?: Promise<IdentityRegistryClient>;
  #log?: Logger;

  constructor(flags: GlobalFlags) {
    this.config = loadConfig(flags);
    this.out = makeOutput(Boolean(flags.json));
    this.keystore = new Keystore({ dir: path.join(this.config.dataDir, "keystore"), lightKdf: this.config.lightKdf });
  }

  chain(): Promise<ChainConnection> {
    this.#chain ??= connectChain({ rpcUrl: this.config.rpcUrl, deployment: readDeployment(this.config.deploymentFile) });
    return this.#chain;
  }

  get log(): Logger {
    this.#log ??= createLogger(this.config.logLevel, this.config.logFormat);
    return this.#log;
  }

  /**
   * The registry client. Long-running commands `follow` registry events for as long as they run;
   * one-shot commands only look up (no event polling to start and stop).
   */
  registry(options: { follow?: boolean } = {}): Promise<IdentityRegistryClient> {
    this.#registry ??= this.chain().then((conn) => new IdentityRegistryClient(conn));
    return options.follow ? this.#registry.then(async (client) => (await client.start(), client)) : this.#registry;
  }

  /** Unlocks the identity named by --identity, or the only one in the keystore. */
  async identity(flags: { identity?: string; passphrase?: string; passphraseFile?: string }): Promise<IdentityKey> {
    let address = flags.identity;
    if (!address) {
      const all = this.keystore.list();
      if (all.length !== 1) {
        throw new MystError(
          "IDENTITY_AMBIGUOUS",
          all.length === 0
            ? `no identity in ${this.keystore.dir}: run \`myst identities new\``
            : `${all.length} identities in the keystore: pick one with --identity`,
        );
      }
      address = all[0].address;
    }
    return this.keystore.unlock(address, this.passphrase(flags));
  }

  /** The daemon running for this data dir, if any: commands that change node state go through it. */
  daemon(): DaemonClient | null {
    return DaemonClient.find(this.config.dataDir);
  }

  requireDaemon(command: string): DaemonClient {
    const daemon = this.daemon();
    if (!daemon) throw new MystError("DAEMON_NOT_RUNNING", `${command} needs a running daemon for ${this.config.dataDir}: start one with \`myst daemon\``);
    return daemon;
  }

  async registrar(): Promise<Registrar> {
    const conn = await this.chain();
    return new Registrar(conn, new IdentityRegistryClient(conn), new RegistrationRecords(path.join(this.config.dataDir, "registrations")));
  }

  passphrase(flags: { passphrase?: string; passphraseFile?: string }): string {
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

  async close(): Promise<void> {
    if (this.#registry) await (await this.#registry.catch(() => undefined))?.stop();
    if (this.#chain) (await this.#chain.catch(() => undefined))?.close();
  }
}
