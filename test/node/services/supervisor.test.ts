import { expect } from "chai";
import { silentLogger } from "../../../node/log/logger";
import { Supervisor } from "../../../node/services/supervision";
import { until } from "../../../scripts/lib/until";

describe("Supervisor: a tunnel process that exits while its service runs is started again", function () {
  it("relaunches at once, backs off while relaunching fails, and records the restart once it is up", async function () {
    let relaunches = 0;
    let downs = 0;
    const supervisor = new Supervisor({
      what: "test process",
      log: silentLogger,
      down: () => downs++,
      relaunch: async () => {
        if (++relaunches < 3) throw new Error(`relaunch ${relaunches} failed`);
      },
    });
    supervisor.start();
    supervisor.exited(1, ["boom"]);
    await until(() => supervisor.restarts.length === 1, "the restart");
    expect({ relaunches, downs }).to.deep.equal({ relaunches: 3, downs: 1 });
  });

  it("restarts one at a time: an exit during a restart is restarted after it, not beside it", async function () {
    let running = 0;
    let most = 0;
    let relaunches = 0;
    let release!: () => void;
    const supervisor = new Supervisor({
      what: "test process",
      log: silentLogger,
      relaunch: async () => {
        relaunches++;
        most = Math.max(most, ++running);
        if (relaunches === 1) await new Promise<void>((r) => (release = r));
        running--;
      },
    });
    supervisor.start();
    supervisor.exited(1, []);
    await until(() => relaunches === 1, "the first relaunch to begin");
    // The relaunched process came up and died before the service finished rebuilding around it.
    supervisor.exited(1, []);
    release();
    await until(() => supervisor.restarts.length === 2, "a second restart");
    expect({ relaunches, most }).to.deep.equal({ relaunches: 2, most: 1 });
  });

  it("stops retrying when the service stops, and restarts nothing after", async function () {
    let relaunches = 0;
    const supervisor = new Supervisor({
      what: "test process",
      log: silentLogger,
      relaunch: async () => {
        relaunches++;
        throw new Error("still broken");
      },
    });
    supervisor.start();
    supervisor.exited(1, []);
    await until(() => relaunches >= 2, "a retry");
    await supervisor.stop();
    const seen = relaunches;
    await new Promise((r) => setTimeout(r, 1200));
    supervisor.exited(1, []);
    await new Promise((r) => setTimeout(r, 50));
    expect({ relaunches: relaunches - seen, restarts: supervisor.restarts.length, stopping: supervisor.stopping }).to.deep.equal({
      relaunches: 0,
      restarts: 0,
      stopping: true,
    });
  });

  it("a stop waits for a relaunch under way, so the service then stops the process that relaunch made", async function () {
    const events: string[] = [];
    const supervisor = new Supervisor({
      what: "test process",
      log: silentLogger,
      relaunch: async () => {
        events.push("relaunch begins");
        await new Promise((r) => setTimeout(r, 100));
        events.push("process spawned");
      },
    });
    supervisor.start();
    supervisor.exited(1, []);
    await until(() => events.length === 1, "the relaunch to begin");
    await supervisor.stop();
    events.push("stopped");
    expect({ events, restarts: supervisor.restarts.length }).to.deep.equal({ events: ["relaunch begins", "process spawned", "stopped"], restarts: 0 });
  });
});
