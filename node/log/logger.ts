import pino, { type Logger } from "pino";
import type { LogFormat, LogLevel } from "../config/config";

export type { Logger };

/**
 * Structured logs on stderr: one JSON object per line (`json`, for collectors such as journald or
 * Loki), or coloured single lines for people (`pretty`). Same fields either way.
 */
export function createLogger(level: LogLevel, format: LogFormat = "json", name = "myst"): Logger {
  if (format === "pretty") {
    return pino(
      { name, level },
      // Loaded only for people reading a terminal: a replica or a daemon logging JSON never needs it.
      (require("pino-pretty") as typeof import("pino-pretty"))({
        destination: 2,
        sync: true,
        colorize: process.stderr.isTTY,
        translateTime: "SYS:HH:MM:ss.l",
        ignore: "pid,hostname",
      }),
    );
  }
  return pino({ name, level }, pino.destination(2));
}

/** A logger that drops everything (tests, libraries used without one). */
export const silentLogger: Logger = pino({ level: "silent" });
