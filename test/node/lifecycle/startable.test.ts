import { expect } from "chai";
import { startInOrder, type Startable } from "../../../node/lifecycle/startable";

describe("startInOrder: parts start in order and stop newest first", function () {
  const part = (name: string, log: string[], fail?: "start" | "stop"): Startable => ({
    start: async () => {
      if (fail === "start") throw new Error(`${name} cannot start`);
      log.push(`start ${name}`);
    },
    stop: async () => {
      log.push(`stop ${name}`);
      if (fail === "stop") throw new Error(`${name} cannot stop`);
    },
  });

  it("stops every part once, newest first", async function () {
    const log: string[] = [];
    const stop = await startInOrder([part("a", log), part("b", log), part("c", log)]);
    await stop();
    await stop();
    expect(log).to.deep.equal(["start a", "start b", "start c", "stop c", "stop b", "stop a"]);
  });

  it("stops what started when a later part fails, and rethrows", async function () {
    const log: string[] = [];
    let error: unknown;
    await startInOrder([part("a", log), part("b", log), part("c", log, "start"), part("d", log)]).catch((e) => (error = e));
    expect((error as Error).message).to.equal("c cannot start");
    expect(log).to.deep.equal(["start a", "start b", "stop b", "stop a"]);
  });

  it("stops the rest when one part fails to stop, then reports that failure", async function () {
    const log: string[] = [];
    const stop = await startInOrder([part("a", log), part("b", log, "stop"), part("c", log)]);
    let error: unknown;
    await stop().catch((e) => (error = e));
    expect((error as Error).message).to.equal("b cannot stop");
    expect(log.slice(3)).to.deep.equal(["stop c", "stop b", "stop a"]);
  });
});
