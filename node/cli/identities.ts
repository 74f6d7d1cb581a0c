import fs from "node:fs";
import { Command, Option } from "commander";
import { Wallet, getAddress, isAddress } from "ethers";
import type { RegistrationStatus } from "../chain/registration";
import { MystError } from "../errors/MystError";
import { IdentityKey, toHex } from "../identity/key";
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

export function identitiesCommand(context: Ctx): Command {
  const identities = new Command("identities").description("create, import, export and register node identities");

  passphraseOptions(identities.command("new").description("create an identity (a secp256k1 key in a keystore v3 file)")).action(async (opts, cmd: Command) => {
    const ctx = context(cmd);
    const entry = await ctx.keystore.create(ctx.passphrase(opts));
    ctx.out.result({ address: entry.address, keystoreFile: entry.file }, () => [
      `created identity ${entry.address}`,
      `keystore: ${entry.file}`,
      "back this file up with its passphrase: without both the identity and its earnings are lost",
    ]);
  });

  identities
    .command("list")
    .description("list the identities in the keystore")
    .action(async (_opts, cmd: Command) => {
      const ctx = context(cmd);
      const entries = ctx.keystore.list();
      ctx.out.result(
        entries.map((e) => ({ address: e.address, keystoreFile: e.file })),
        () => (entries.length ? entries.map((e) => e.address) : [`no identities in ${ctx.keystore.dir}`]),
      );
    });

  passphraseOptions(
    identities
      .command("show")
      .argument("<address>", "the identity")
      .description("show an identity: keystore file, public key (with a passphrase) and registration"),
  ).action(async (address: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const entry = ctx.keystore.find(address);
    const hasPassphrase = opts.passphrase !== undefined || opts.passphraseFile !== undefined || process.env.MYST_PASSPHRASE !== undefined;
    const publicKey = hasPassphrase ? toHex((await ctx.keystore.unlock(address, ctx.passphrase(opts))).publicKey) : undefined;
    let registration: RegistrationStatus | { state: "unknown"; reason: string };
    try {
      registration = await (await ctx.registrar()).status(entry.address);
    } catch (err) {
      registration = { state: "unknown", reason: err instanceof Error ? err.message : String(err) };
    }
    ctx.out.result({ address: entry.address, keystoreFile: entry.file, publicKey, registration }, () => [
      `identity:     ${entry.address}`,
      `keystore:     ${entry.file}`,
      ...(publicKey ? [`public key:   ${publicKey}`] : []),
      `registration: ${describeStatus(registration)}`,
    ]);
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
    const entry = await ctx.keystore.import(file, ctx.passphrase(opts), ctx.newPassphrase(opts));
    ctx.out.result({ address: entry.address, keystoreFile: entry.file }, () => [`imported identity ${entry.address}`, `keystore: ${entry.file}`]);
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
    const json = await ctx.keystore.export(address, newPassphrase === undefined ? undefined : { passphrase: ctx.passphrase(opts), newPassphrase });
    if (!opts.out) {
      process.stdout.write(json.endsWith("\n") ? json : json + "\n");
      return;
    }
    try {
      fs.writeFileSync(opts.out, json, { mode: 0o600, flag: "wx" });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new MystError("EXPORT_FAILED", code === "EEXIST" ? `${opts.out} exists; not overwriting it` : `cannot write ${opts.out} (${code})`);
    }
    ctx.out.result({ address: getAddress(address), file: opts.out }, () => [`exported ${getAddress(address)} to ${opts.out}`]);
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
    if (opts.beneficiary !== undefined && !isAddress(opts.beneficiary)) {
      throw new MystError("INVALID_ADDRESS", `--beneficiary "${opts.beneficiary}" is not an address`);
    }
    const key = await ctx.keystore.unlock(address, ctx.passphrase(opts));
    const conn = await ctx.chain();
    const relayerKey = readRelayerKey(opts.relayerKeyFile);
    const submitter = new Wallet(relayerKey ?? key.privateKeyHex(), conn.provider);
    const status = await (await ctx.registrar()).register(key, {
      submitter,
      beneficiary: opts.beneficiary,
      timeoutMs: ctx.config.registrationTimeoutMs,
    });
    ctx.out.result(status, () => [describeStatus(status)]);
    if (status.state === "failed") process.exitCode = 1;
  });

  identities
    .command("status")
    .argument("<address>", "the identity")
    .description("show the registration status: unregistered, in-progress (tx), registered or failed (reason)")
    .action(async (address: string, _opts, cmd: Command) => {
      const ctx = context(cmd);
      if (!isAddress(address)) throw new MystError("INVALID_ADDRESS", `"${address}" is not an identity address (0x + 40 hex)`);
      const status = await (await ctx.registrar()).status(getAddress(address));
      ctx.out.result(status, () => [describeStatus(status)]);
    });

  return identities;
}

function readRelayerKey(file: string | undefined): string | undefined {
  let raw: string | undefined;
  if (file !== undefined) {
    try {
      raw = fs.readFileSync(file, "utf8");
    } catch (err) {
      throw new MystError("RELAYER_KEY_UNREADABLE", `cannot read relayer key file ${file}`, { cause: err });
    }
  } else raw = process.env.MYST_RELAYER_KEY;
  if (raw === undefined) return undefined;
  try {
    return IdentityKey.fromHex(raw.trim()).privateKeyHex();
  } catch (err) {
    throw new MystError("RELAYER_KEY_INVALID", `the relayer key ${file ? `in ${file} ` : "in MYST_RELAYER_KEY "}is not a 32-byte hex private key`, {
      cause: err,
    });
  }
}

export function describeStatus(status: RegistrationStatus | { state: "unknown"; reason: string }): string {
  switch (status.state) {
    case "unregistered":
      return `unregistered: run \`myst identities register ${status.identity}\``;
    case "in-progress":
      return `in progress: transaction ${status.txHash} (submitted ${status.submittedAt}); run register again to replace it if it is stuck`;
    case "registered":
      return `registered (earnings go to ${status.beneficiary})`;
    case "failed":
      return `failed: ${status.reason}; run register again to retry`;
    case "unknown":
      return `unknown (${status.reason})`;
  }
}
