import { expect } from "chai";
import { retry, retryDelayMs } from "../../../node/lifecycle/retry";

describe("retry: the node's one retry helper (p-retry with the node's backoff)", function () {
  it("tries again until the attempt succeeds, telling of each failure", async function () {
    const failures: [string, number][] = [];
    const result = await retry(
      async (n) => {
        if (n < 3) throw new Error(`no ${n}`);
        return n;
      },
      { attempts: 5, baseMs: 5, maxMs: 20, onFailure: (err, n) => failures.push([(err as Error).message, n]) },
    );
    expect(result).to.equal(3);
    expect(failures).to.deep.equal([
      ["no 1", 1],
      ["no 2", 2],
    ]);
  });

  it("gives up after the last attempt with its failure, and at once on a failure that can never succeed", async function () {
    let tries = 0;
    const last = await retry(
      async () => {
        tries++;
        throw new TypeError(`bad ${tries}`);
      },
      { attempts: 3, baseMs: 1, maxMs: 1 },
    ).catch((e) => e);
    expect([tries, last instanceof TypeError, last.message]).to.deep.equal([3, true, "bad 3"]);

    tries = 0;
    const revert = await retry(
      async () => {
        tries++;
        throw new Error("execution reverted");
      },
      { attempts: 5, baseMs: 1, maxMs: 1, retryable: (err) => !/reverted/.test((err as Error).message) },
    ).catch((e) => e);
    expect([tries, revert.message]).to.deep.equal([1, "execution reverted"]);
  });

  it("stops waiting when its signal aborts (else the 10 s wait outlasts the test's timeout)", async function () {
    this.timeout(5_000);
    const stop = new AbortController();
    let tries = 0;
    setTimeout(() => stop.abort(), 50);
    const err = await retry(
      async () => {
        tries++;
        throw new Error("down");
      },
      { attempts: 10, baseMs: 10_000, maxMs: 10_000, signal: stop.signal },
    ).catch((e) => e);
    expect(tries).to.equal(1);
    expect(err).to.be.instanceOf(Error);
  });

  it("waits on the node's one schedule: from the base, doubling, up to the cap, finite for very many attempts", async function () {
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => retryDelayMs(n, { baseMs: 1000, maxMs: 16_000 }))).to.deep.equal([1000, 2000, 4000, 8000, 16_000, 16_000, 16_000]);
    expect(retryDelayMs(10_000, { baseMs: 1000, maxMs: 60_000 })).to.equal(60_000);
    // The waits retry() takes are that schedule (at least; timers may run late on a loaded machine).
    const at: number[] = [];
    await retry(
      async (n) => {
        at.push(performance.now());
        if (n < 4) throw new Error("down");
      },
      { attempts: 4, baseMs: 40, maxMs: 100 },
    );
    const waits = at.slice(1).map((t, i) => t - at[i]);
    waits.forEach((w, i) => expect(w).to.be.at.least(retryDelayMs(i + 1, { baseMs: 40, maxMs: 100 }) - 2));
  });

  it("retries forever with attempts: Infinity, until the signal stops it", async function () {
    const stop = new AbortController();
    let tries = 0;
    const err = await retry(
      async () => {
        if (++tries === 25) stop.abort();
        throw new Error("down");
      },
      { attempts: Number.POSITIVE_INFINITY, baseMs: 1, maxMs: 1, signal: stop.signal },
    ).catch((e) => e);
    expect(tries).to.equal(25);
    expect(err).to.be.instanceOf(Error);
  });

  it("tells each failure whether another attempt follows (not after a final failure or the last attempt)", async function () {
    const told: [string, number, boolean][] = [];
    const onFailure = (err: unknown, n: number, willRetry: boolean) => told.push([(err as Error).message, n, willRetry]);
    await retry(
      async (n) => {
        throw new Error(n === 2 ? "reverted" : "down");
      },
      { attempts: 5, baseMs: 1, maxMs: 1, retryable: (err) => (err as Error).message !== "reverted", onFailure },
    ).catch(() => undefined);
    await retry(
      async () => {
        throw new Error("down");
      },
      { attempts: 2, baseMs: 1, maxMs: 1, onFailure },
    ).catch(() => undefined);
    expect(told).to.deep.equal([
      ["down", 1, true],
      ["reverted", 2, false],
      ["down", 1, true],
      ["down", 2, false],
    ]);
  });
});
