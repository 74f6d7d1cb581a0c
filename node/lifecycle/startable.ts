/** A part with a lifetime: started once, stopped once, in the reverse order of starting. */
export interface Startable {
  start(): Promise<void> | void;
  stop(): Promise<void> | void;
}

/**
 * Starts `parts` in order. If one fails, the ones already started are stopped, newest first, and
 * the error is rethrown: a half-started whole never stays behind. The stop it returns stops every
 * part, newest first, each once, even when one of them fails (the first error is rethrown after).
 */
export async function startInOrder(parts: Startable[]): Promise<() => Promise<void>> {
  const started: Startable[] = [];
  const stopAll = async () => {
    let failure: unknown;
    for (const part of started.splice(0).reverse()) {
      try {
        await part.stop();
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
  };
  try {
    for (const part of parts) {
      await part.start();
      started.push(part);
    }
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
  return stopAll;
}
