import fs from "node:fs";

/**
 * How this node proves who it is to the NATS broker: the forms nats.js takes (a user and a
 * password, a token, an nkey seed, a decentralized-JWT `.creds` file). Read from files once, at
 * start-up; nothing here is ever logged. Without credentials the broker decides the role (with the
 * project's configuration, a connection without credentials is a node: docs/security.md).
 */
export type BrokerCredentials =
  | { kind: "password"; user: string; pass: string }
  | { kind: "token"; token: string }
  | { kind: "nkey"; seed: Uint8Array }
  | { kind: "creds"; creds: Uint8Array };

/** The settings that name the credential files (config.ts documents each). */
export interface BrokerCredentialSettings {
  brokerUser?: string;
  brokerPasswordFile?: string;
  brokerTokenFile?: string;
  brokerNkeyFile?: string;
  brokerCredsFile?: string;
}

/** A user nkey seed: "SU" and 56 more base32 characters (`nsc`/`nk -gen user` write these). */
const USER_SEED = /^SU[A-Z2-7]{56}$/;
const USER_NAME = /^[A-Za-z0-9_.@-]{1,128}$/;

/**
 * Reads the credential the settings name, or undefined when none is set. `fail(setting, why)`
 * raises the caller's configuration error (it names the setting and where it came from).
 */
export function readBrokerCredentials(
  s: BrokerCredentialSettings,
  fail: (setting: keyof BrokerCredentialSettings, why: string) => never,
): BrokerCredentials | undefined {
  const kinds = (["brokerPasswordFile", "brokerTokenFile", "brokerNkeyFile", "brokerCredsFile"] as const).filter((k) => s[k] !== undefined);
  if (kinds.length > 1) fail(kinds[1], `cannot be combined with ${kinds[0]}: give one broker credential`);
  if (s.brokerUser !== undefined && s.brokerPasswordFile === undefined) fail("brokerUser", "needs brokerPasswordFile (the user's password, in a file)");
  if (s.brokerPasswordFile !== undefined) {
    if (s.brokerUser === undefined) fail("brokerPasswordFile", "needs brokerUser (the user the password belongs to)");
    if (!USER_NAME.test(s.brokerUser as string)) fail("brokerUser", "must be 1-128 characters of A-Z a-z 0-9 _ . @ -");
    return { kind: "password", user: s.brokerUser as string, pass: secretLine(s.brokerPasswordFile, "brokerPasswordFile", fail) };
  }
  if (s.brokerTokenFile !== undefined) return { kind: "token", token: secretLine(s.brokerTokenFile, "brokerTokenFile", fail) };
  if (s.brokerNkeyFile !== undefined) {
    const seed = secretLine(s.brokerNkeyFile, "brokerNkeyFile", fail);
    if (!USER_SEED.test(seed)) fail("brokerNkeyFile", `names ${s.brokerNkeyFile}, which does not hold a user nkey seed (one line starting with SU)`);
    return { kind: "nkey", seed: new TextEncoder().encode(seed) };
  }
  if (s.brokerCredsFile !== undefined) {
    const text = readSecret(s.brokerCredsFile, "brokerCredsFile", fail);
    if (!text.includes("BEGIN NATS USER JWT") || !text.includes("BEGIN USER NKEY SEED"))
      fail("brokerCredsFile", `names ${s.brokerCredsFile}, which is not a NATS .creds file (a user JWT and its nkey seed)`);
    return { kind: "creds", creds: new TextEncoder().encode(text) };
  }
  return undefined;
}

function readSecret(file: string, setting: keyof BrokerCredentialSettings, fail: (setting: keyof BrokerCredentialSettings, why: string) => never): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "a directory" : (code ?? (err as Error).message);
    return fail(setting, `names ${file}, which cannot be read (${why})`);
  }
}

/** The file's first line (a trailing newline is not part of a password). */
function secretLine(file: string, setting: keyof BrokerCredentialSettings, fail: (setting: keyof BrokerCredentialSettings, why: string) => never): string {
  const text = readSecret(file, setting, fail).replace(/\r?\n$/, "");
  if (text === "") fail(setting, `names ${file}, which is empty`);
  if (/[\r\n]/.test(text)) fail(setting, `names ${file}, which must hold one line`);
  return text;
}
