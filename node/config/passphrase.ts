import fs from "node:fs";
import { MystError } from "../errors/MystError";

export interface PassphraseSources {
  /** Given on the command line (visible in `ps`: prefer the file or the environment). */
  flag?: string;
  /** A file holding the passphrase; one trailing newline is ignored. */
  file?: string;
  /** The environment, e.g. MYST_PASSPHRASE. */
  env?: string;
  /** Names the sources in the error, e.g. "--passphrase-file or MYST_PASSPHRASE". */
  hint: string;
}

/** Picks the passphrase from flag, file or environment (in that order). Never prompts. */
export function resolvePassphrase(sources: PassphraseSources): string {
  if (sources.flag !== undefined) return sources.flag;
  if (sources.file !== undefined) {
    try {
      return fs.readFileSync(sources.file, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      throw new MystError("PASSPHRASE_FILE_UNREADABLE", `cannot read passphrase file ${sources.file}`, { cause: err });
    }
  }
  if (sources.env !== undefined) return sources.env;
  throw new MystError("PASSPHRASE_MISSING", `a passphrase is needed: give ${sources.hint}`);
}
