import { expect } from "chai";
import { untilSignal } from "../../../node/cli/long-running";

describe("long-running commands and signals", function () {
  it("stops once on the first signal, exits 130 on a second one, and lets go of the signals after", async function () {
    // Others' handlers (the test runner's) are set aside while this test emits signals.
    const others = { SIGINT: process.listeners("SIGINT"), SIGTERM: process.listeners("SIGTERM") };
    process.removeAllListeners("SIGINT").removeAllListeners("SIGTERM");
    const exits: (number | undefined)[] = [];
    const realExit = process.exit;
    const realWrite = process.stderr.write;
    let stops = 0;
    let finishStop!: () => void;
    process.exit = ((code?: number) => void exits.push(code)) as typeof process.exit;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      const running = untilSignal(() => {
        stops++;
        return new Promise<void>((resolve) => (finishStop = resolve));
      });
      expect(process.listenerCount("SIGTERM")).to.equal(1);
      process.emit("SIGTERM", "SIGTERM");
      expect(stops).to.equal(1);
      expect(exits).to.deep.equal([]);
      process.emit("SIGINT", "SIGINT");
      expect(stops).to.equal(1);
      expect(exits).to.deep.equal([130]);
      finishStop();
      await running;
      expect([process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")]).to.deep.equal([0, 0]);
    } finally {
      process.exit = realExit;
      process.stderr.write = realWrite;
      for (const signal of ["SIGINT", "SIGTERM"] as const) for (const l of others[signal]) process.on(signal, l as NodeJS.SignalsListener);
    }
  });
});
