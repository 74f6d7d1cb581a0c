/** Runs until SIGINT or SIGTERM, then calls `stop` once; a second signal exits at once (130). */
export function untilSignal(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        process.exit(130);
        return;
      }
      stopping = true;
      process.stderr.write(`\nmyst: ${signal}, stopping…\n`);
      stop()
        .finally(() => {
          process.off("SIGINT", onSignal);
          process.off("SIGTERM", onSignal);
        })
        .then(resolve, reject);
    };
    // `on`, not `once`: the handler stays while stopping, to turn a second signal into exit 130.
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}
