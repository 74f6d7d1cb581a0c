import pino, { type Logger } from "pino";
import type { LogLevel } from "../config/config";

export type { Logger };

/** Structured JSON logs on stderr (pipe through `pino-pretty` for people). */
export function createLogger(level: LogLevel, name = "myst"): Logger {
  return pino({ name, level }, pino.destination(2));
}

/** A logger that drops everything (tests, libraries used without one). */
export const silentLogger: Logger = pino({ level: "silent" });
