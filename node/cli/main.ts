#!/usr/bin/env node
import { Command, CommanderError, Option } from "commander";
import { diskTrouble } from "../errors/disk-trouble";
import path from "node:path";
import { PACKAGE_ROOT } from "../config/config";
import { isMystError } from "../errors/MystError";
import { installLastResortHandler } from "../log/last-resort";
import { CommandContext, type GlobalFlags } from "./context";
import { connectCommands } from "./connect";
import { runCommand } from "./run";
import { daemonCommand } from "./daemon";
import { discoveryCommand, proposalsCommand } from "./discovery";
import { identitiesCommand } from "./identities";
import { earningsCommand, qualityCommand, sessionsCommand } from "./money";
import { proberCommand } from "./prober";
import { vaultCommand } from "./vault";
import { serviceCommand } from "./service";
import { uiCommand } from "./ui";

/** A repeatable option: each use adds one value (not greedy, so a command may follow it). */
const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** The context of a (sub)command, from the global flags of the root program. */
function context(cmd: Command): CommandContext {
  return new CommandContext(cmd.optsWithGlobals() as GlobalFlags);
}

function program(): Command {
  const root = new Command("myst")
    .description("myst: a decentralized VPN marketplace node")
    .version(require(path.join(PACKAGE_ROOT, "package.json")).version as string, "-V, --version")
    .addOption(new Option("--json", "machine-readable output"))
    .addOption(new Option("--config <file>", "config file (default <data-dir>/config.json)"))
    .addOption(new Option("--data-dir <dir>", "keystore and local state (default ~/.myst, or MYST_DATA_DIR)"))
    .addOption(new Option("--rpc-url <url>", "Ethereum JSON-RPC URL (default http://127.0.0.1:8545, or MYST_RPC_URL)"))
    .addOption(new Option("--deployment <file>", "contract deployment file (default deployments/localhost.json, or MYST_DEPLOYMENT)"))
    .addOption(new Option("--broker-url <url>", "NATS server URL, repeatable (default nats://127.0.0.1:4222, or MYST_BROKER_URLS)").argParser(collect))
    .addOption(new Option("--broker-user <user>", "broker user, with --broker-password-file (default none: the broker's node role; or MYST_BROKER_USER)"))
    .addOption(new Option("--broker-password-file <file>", "file holding the broker user's password (or MYST_BROKER_PASSWORD_FILE)"))
    .addOption(new Option("--broker-token-file <file>", "file holding a broker token (or MYST_BROKER_TOKEN_FILE)"))
    .addOption(new Option("--broker-nkey-file <file>", "file holding a broker user nkey seed, SU… (or MYST_BROKER_NKEY_FILE)"))
    .addOption(new Option("--broker-creds-file <file>", "NATS .creds file: user JWT and nkey seed (or MYST_BROKER_CREDS_FILE)"))
    .addOption(
      new Option(
        "--discovery-url <url>",
        "discovery replica URL, repeatable: tried in order (default http://127.0.0.1:4050, or MYST_DISCOVERY_URLS)",
      ).argParser(collect),
    )
    .addOption(new Option("--log-level <level>", "trace|debug|info|warn|error|silent (default info, or MYST_LOG_LEVEL)"))
    .addOption(new Option("--log-format <format>", "json|pretty (default json, or MYST_LOG_FORMAT)"))
    .addOption(new Option("--light-kdf", "weaker, fast scrypt for new keystores (tests; or MYST_LIGHT_KDF=1)"))
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  root.addCommand(identitiesCommand(context));
  root.addCommand(daemonCommand(context));
  root.addCommand(serviceCommand(context));
  root.addCommand(discoveryCommand(context));
  root.addCommand(proposalsCommand(context));
  for (const cmd of connectCommands(context)) root.addCommand(cmd);
  root.addCommand(runCommand(context));
  root.addCommand(vaultCommand(context));
  root.addCommand(earningsCommand(context));
  root.addCommand(sessionsCommand(context));
  root.addCommand(qualityCommand(context));
  root.addCommand(proberCommand(context));
  root.addCommand(uiCommand(context));
  const everywhere = (cmd: Command) => {
    cmd.exitOverride();
    cmd.commands.forEach(everywhere);
  };
  everywhere(root);
  return root;
}

async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successes; usage errors were already printed by commander.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (isMystError(err)) {
      process.stderr.write(`myst: ${err.message}\n`);
      // A data dir the node cannot use is the operator's to fix, like a usage error.
      return err.code === "DATA_DIR_UNUSABLE" ? 2 : 1;
    }
    // The disk under a file the command wrote (not the data dir's own check): named, no stack.
    const disk = diskTrouble(err);
    const file = (err as { path?: unknown }).path;
    if (disk && (disk.code === "STORE_FULL" || disk.raw === "EROFS") && typeof file === "string") {
      process.stderr.write(`myst: cannot write ${file}: ${disk.words} (${disk.raw})\n`);
      return 2;
    }
    process.stderr.write(`myst: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
    if (process.env.MYST_DEBUG) console.error(err);
    return 70;
  }
}

installLastResortHandler();
main(process.argv).then((code) => {
  process.exitCode = code;
  // The command is done and everything it started was stopped, so the process ends as soon as
  // the event loop is empty. Should a library keep a handle open (a keep-alive socket, a poll
  // timer), exit anyway rather than hang past the supervisor's stop timeout.
  setTimeout(() => {
    if (process.env.MYST_DEBUG) process.stderr.write(`myst: exiting with open handles: ${process.getActiveResourcesInfo().join(", ")}\n`);
    process.exit(code);
  }, 2000).unref();
});
