import { createLogger, type Logger } from "./logger";

let installed: ((reason: unknown) => void) | undefined;

/**
 * The node's last line of defence, installed once by each entry point. A rejection nobody
 * handled is a bug, but in a node serving many peers it must not become a crash that one peer can
 * trigger for all: it is logged with its code (MystError codes; "UNHANDLED" otherwise) and the
 * node keeps serving. Returns the uninstall function (tests).
 */
export function installLastResortHandler(log: Logger = createLogger("error")): () => void {
  if (installed) process.off("unhandledRejection", installed);
  const handler = (reason: unknown) => {
    const code = typeof (reason as { code?: unknown })?.code === "string" ? (reason as { code: string }).code : "UNHANDLED";
    log.error({ code, err: reason }, "unexpected rejection; still serving");
  };
  installed = handler;
  process.on("unhandledRejection", handler);
  return () => {
    process.off("unhandledRejection", handler);
    if (installed === handler) installed = undefined;
  };
}
