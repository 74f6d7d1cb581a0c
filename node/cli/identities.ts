import fs from "node:fs";
import { Command, Option } from "commander";
import { MystError } from "../errors/MystError";
import { toAddress } from "../values/address";
import type { CommandContext } from "./context";

type Ctx = (cmd: Command) => CommandContext;

const passphraseOptions = (cmd: Command) =>
  cmd
    .addOption(new Option("--passphrase-file <file>", "read the keystore passphrase from a file"))
    .addOption(new Option("--passphrase <passphrase>", "the keystore passphrase (visible to other users: prefer the file or MYST_PASSPHRASE)"));

const newPassphraseOptions = (cmd: Command) =>
  cmd
    .addOption(new Option("--new-passphrase-file <file>", "re-encrypt with the passphrase in this file"))
    .addOption(new Option("--new-passphrase <passphrase>", "re-encrypt with this passphrase (or MYST_NEW_PASSPHRASE)"));

/** What `identities show` and `status` print of a registration. */
type Registration = { state: string; identity: string; beneficiary?: string; txHash?: string; submittedAt?: string; reason?: string };

/**
 * `myst identities`: the keystore and registration, through the node's API (a running node's, or
 * an offline one this command runs: creating the first identity needs no node to exist).
 */
export function identitiesCommand(context: Ctx): Command {
  const identities = new Command("identities").description("create, import, export and register node identities");

  passphraseOptions(identities.command("new").description("create an identity (a secp256k1 key in a keystore v3 file)")).action(async (opts, cmd: Command) => {
    const ctx = context(cmd);
    const passphrase = ctx.passphrase(opts)!;
    const entry = await ctx.withNode({}, (node) => node.createIdentity({ passphrase }));
    ctx.out.result({ address: entry.address, keystoreFile: entry.keystoreFile }, () => [
      `created identity ${entry.address}`,
      `keystore: ${entry.keystoreFile}`,
      "back this file up with its passphrase: without both the identity and its earnings are lost",
    ]);
  });

  identities
    .command("list")
    .description("list the identities in the keystore")
    .action(async (_opts, cmd: Command) => {
      const ctx = context(cmd);
      const { identities: entries } = await ctx.withNode({}, (node) => node.identities());
      ctx.out.result(
        entries.map((e) => ({ address: e.address, keystoreFile: e.keystoreFile, registered: e.registered })),
        () => (entries.length ? entries.map((e) => e.address) : [`no identities in ${ctx.config.dataDir}/keystore`]),
      );
    });

  passphraseOptions(
    identities
      .command("show")
      .argument("<address>", "the identity")
      .description("show an identity: keystore file, public key (with a passphrase) and registration"),
  ).action(async (address: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const shown = await ctx.withNode({ ...opts, identity: address }, (node) => node.identity(address));
    if (!shown.keystoreFile) throw new MystError("IDENTITY_NOT_FOUND", `no keystore file for ${shown.address} in ${ctx.config.dataDir}/keystore`);
    ctx.out.result(
      { address: shown.address, keystoreFile: shown.keystoreFile, publicKey: shown.publicKey, registration: shown.registration, balanceWei: shown.balanceWei },
      () => [
        `identity:     ${shown.address}`,
        `keystore:     ${shown.keystoreFile}`,
        ...(shown.publicKey ? [`public key:   ${shown.publicKey}`] : []),
        `registration: ${describeStatus(shown.registration)}`,
      ],
    );
  });

  newPassphraseOptions(
    passphraseOptions(
      identities
        .command("import")
        .argument("<file>", "a keystore v3 JSON file (geth, ethers, MetaMask)")
        .description("import an identity from a keystore file (the file is not modified)"),
    ),
  ).action(async (file: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    let keystore: string;
    try {
      keystore = fs.readFileSync(file, "utf8");
    } catch (err) {
      throw new MystError("KEYSTORE_FILE_UNREADABLE", `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
    }
    const passphrase = ctx.passphrase(opts)!;
    const newPassphrase = ctx.newPassphrase(opts);
    const entry = await ctx.withNode({}, (node) => node.importIdentity({ keystore, passphrase, newPassphrase, source: file }));
    ctx.out.result({ address: entry.address, keystoreFile: entry.keystoreFile }, () => [
      `imported identity ${entry.address}`,
      `keystore: ${entry.keystoreFile}`,
    ]);
  });

  newPassphraseOptions(
    passphraseOptions(
      identities
        .command("export")
        .argument("<address>", "the identity")
        .option("--out <file>", "write to this file (mode 0600) instead of standard output")
        .description("export an identity's keystore v3 JSON, as is or re-encrypted"),
    ),
  ).action(async (address: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const newPassphrase = ctx.newPassphrase(opts);
    const passphrase = newPassphrase === undefined ? undefined : ctx.passphrase(opts);
    const { address: id, keystore } = await ctx.withNode({}, (node) => node.exportIdentity(address, { passphrase, newPassphrase }));
    if (!opts.out) {
      process.stdout.write(keystore.endsWith("\n") ? keystore : keystore + "\n");
      return;
    }
    try {
      fs.writeFileSync(opts.out, keystore, { mode: 0o600, flag: "wx" });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new MystError("EXPORT_FAILED", code === "EEXIST" ? `${opts.out} exists; not overwriting it` : `cannot write ${opts.out} (${code})`);
    }
    ctx.out.result({ address: id, file: opts.out }, () => [`exported ${id} to ${opts.out}`]);
  });

  passphraseOptions(
    identities
      .command("register")
      .argument("<address>", "the identity")
      .option("--beneficiary <address>", "where earnings are paid (default: the identity itself)")
      .option("--relayer-key-file <file>", "a file with the hex private key of a funded account that submits the registration (or MYST_RELAYER_KEY)")
      .description("register the identity on chain, paying gas itself or through a relayer"),
  ).action(async (address: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const relayerKey = readRelayerKey(opts.relayerKeyFile);
    const passphrase = ctx.passphrase(opts, { optional: true });
    const status = await ctx.withNode({ ...opts, identity: address }, (node) =>
      node.register(address, {
        ...(passphrase !== undefined ? { passphrase } : {}),
        ...(opts.beneficiary !== undefined ? { beneficiary: opts.beneficiary } : {}),
        ...(relayerKey !== undefined ? { relayerKey } : {}),
      }),
    );
    ctx.out.result(status, () => [describeStatus(status)]);
    if (status.state === "failed") process.exitCode = 1;
  });

  identities
    .command("status")
    .argument("<address>", "the identity")
    .description("show the registration status: unregistered, in-progress (tx), registered or failed (reason)")
    .action(async (address: string, _opts, cmd: Command) => {
      const ctx = context(cmd);
      toAddress(address, "identity");
      const { registration } = await ctx.withNode({}, (node) => node.identity(address));
      if (registration.state === "unknown") throw new MystError("CHAIN_UNREACHABLE", `cannot tell: ${registration.reason}`);
      ctx.out.result(registration, () => [describeStatus(registration)]);
    });

  return identities;
}

/** The relayer's key as the file (or MYST_RELAYER_KEY) holds it; the node checks it. */
function readRelayerKey(file: string | undefined): string | undefined {
  if (file === undefined) return process.env.MYST_RELAYER_KEY?.trim();
  try {
    return fs.readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new MystError("RELAYER_KEY_UNREADABLE", `cannot read relayer key file ${file}`, { cause: err });
  }
}

export function describeStatus(status: Registration): string {
  switch (status.state) {
    case "unregistered":
      return `unregistered: run \`myst identities register ${status.identity}\``;
    case "in-progress":
      return `in progress: transaction ${status.txHash} (submitted ${status.submittedAt}); run register again to replace it if it is stuck`;
    case "registered":
      return `registered (earnings go to ${status.beneficiary})`;
    case "failed":
      return `failed: ${status.reason}; run register again to retry`;
    default:
      return `unknown (${status.reason})`;
  }
}
