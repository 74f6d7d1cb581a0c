import { expect } from "chai";
import { ChainError } from "../../../node/chain/errors";
import type { ConsumerVaultClient } from "../../../node/chain/vault";
import { Settler } from "../../../node/payments/settlement";
import type { PromiseStore } from "../../../node/store/promise-store";

/**
 * The settlement queue's races, against a store and a vault in memory that the test times to the
 * microtask (the chain e2e tests cannot hit these windows on purpose). Found by review, each of
 * these failed before its fix.
 */

const later = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ticks = async (n: number) => {
  for (let i = 0; i < n; i++) await null;
};

interface Mined {
  gasUsed: bigint;
  fee: bigint;
  paid: Map<string, bigint>;
}

/** A promise store of one provider in memory: the latest promise per pair and what was recorded as mined. */
function memoryStore() {
  const promises = new Map<string, { pairId: string; consumer: string; provider: string; amount: bigint; signature: string }>();
  const settled = new Map<string, bigint>();
  const store = {
    latest: (id: string) => promises.get(id),
    settledAmount: (id: string) => settled.get(id) ?? 0n,
    latestPerPair: () => [...promises.values()],
    recordSettlement: (r: { pairId: string; amount: bigint; status: string }) => {
      if (r.status === "mined") settled.set(r.pairId, r.amount);
    },
  };
  const put = (id: string, amount: bigint) => promises.set(id, { pairId: id, consumer: `0xC${id}`, provider: "0xP", amount, signature: "0x" });
  return { store: store as unknown as PromiseStore, put };
}

const submitter = { getAddress: async () => "0xS" } as never;
const paidFor = (ps: { consumer: string; amount: bigint }[]): Mined => ({
  gasUsed: 0n,
  fee: 0n,
  paid: new Map(ps.map((p) => [p.consumer.toLowerCase(), p.amount])),
});

describe("settlement queue races (store and vault in memory)", function () {
  it("never leaves a pair queued with no worker: one that joins as the worker finishes is sent", async function () {
    // Every offset of "the first batch is mined" against "the second batch's send returns".
    for (let k = 0; k < 8; k++)
      for (let j = 0; j < 8; j++) {
        const { store, put } = memoryStore();
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        let sends = 0;
        const vault = {
          pair: async () => ({ settled: 0n, vault: { balance: 1000n, escrow: 0n } }),
          pendingNonce: async () => 0,
          submitSettle: async (_s: unknown, _p: string, ps: { consumer: string; amount: bigint }[]) => {
            const n = ++sends;
            if (n === 2) {
              await gate;
              await ticks(j);
            }
            return {
              txHash: `0x${n}`,
              mined: async () => {
                if (n === 1) {
                  await gate;
                  await ticks(k);
                }
                return paidFor(ps);
              },
            };
          },
        } as unknown as ConsumerVaultClient;
        const settler = new Settler(store, vault, submitter, { retryMs: 10 });
        put("B", 10n);
        settler.settlePair("B");
        await later(20); // B sent and mining
        put("A", 5n);
        settler.settlePair("A"); // a second worker run: A's send waits on the gate
        await later(20);
        put("B", 20n); // a newer promise of B while B mines: B goes again once mined
        release();
        await later(200);
        const left = settler.pending();
        settler.stop();
        expect({ k, j, sends, left: left.map((p) => `${p.pairId} ${p.state}`) }).to.deep.equal({ k, j, sends: 3, left: [] });
      }
  });

  it("a failed batch fails only the attempts it holds, not a newer one of a pair that left it", async function () {
    const { store, put } = memoryStore();
    const onChain = new Map<string, bigint>();
    const balance = new Map([
      ["P", 0n],
      ["Q", 1000n],
    ]);
    let fail!: () => void;
    const failing = new Promise<void>((r) => (fail = r));
    const sent: string[][] = [];
    const reverted: string[][] = [];
    const vault = {
      pair: async (consumer: string) => ({ settled: onChain.get(consumer.slice(3)) ?? 0n, vault: { balance: balance.get(consumer.slice(3))!, escrow: 0n } }),
      pendingNonce: async () => 0,
      submitSettle: async (_s: unknown, _p: string, ps: { consumer: string; amount: bigint }[]) => {
        const ids = ps.map((p) => p.consumer.slice(3));
        sent.push(ids);
        if (sent.length === 1) {
          await failing;
          throw new Error("the chain did not answer");
        }
        return {
          txHash: `0x${sent.length}`,
          mined: async () => {
            await later(20);
            // As the contract does: a promise not above what is settled reverts the whole batch.
            if (ps.some((p, i) => p.amount <= (onChain.get(ids[i]) ?? 0n))) {
              reverted.push(ids);
              throw new ChainError("TX_REVERTED", "settling reverted");
            }
            ps.forEach((p, i) => onChain.set(ids[i], p.amount));
            return paidFor(ps);
          },
        };
      },
    } as unknown as ConsumerVaultClient;
    const settler = new Settler(store, vault, submitter, { retryMs: 20, maxRetryMs: 20 });
    put("P", 10n);
    put("Q", 10n);
    settler.settleAll(); // one batch [P, Q]: P's vault is empty (waits for a top-up), Q's send hangs
    await later(20);
    balance.set("P", 1000n); // the consumer deposits: P is woken and goes again
    settler.settleAll();
    await later(5);
    fail(); // Q's send fails: P's new attempt must not fail with it
    await later(600);
    const left = settler.pending();
    settler.stop();
    // Strings: a failure is sent across processes in a parallel run, and bigints do not serialize.
    const states = left.map((p) => `${p.pairId} ${p.state}`);
    // P is sent once (not once for its own attempt and again for the failed one), nothing reverts, both settle.
    const timesP = sent.filter((ids) => ids.includes("P")).length;
    expect({ timesP, reverted, states, onChain: [...onChain].map(([id, a]) => `${id} ${a}`).sort() }).to.deep.equal({
      timesP: 1,
      reverted: [],
      states: [],
      onChain: ["P 10", "Q 10"],
    });
  });

  it("a pair woken from its top-up wait counts as busy at once: drain() waits for its settlement", async function () {
    const { store, put } = memoryStore();
    let balance = 0n;
    let mined = false;
    const vault = {
      pair: async () => ({ settled: 0n, vault: { balance, escrow: 0n } }),
      pendingNonce: async () => 0,
      submitSettle: async (_s: unknown, _p: string, ps: { consumer: string; amount: bigint }[]) => ({
        txHash: "0x1",
        mined: async () => {
          await later(100);
          mined = true;
          return paidFor(ps);
        },
      }),
    } as unknown as ConsumerVaultClient;
    const settler = new Settler(store, vault, submitter);
    put("P", 10n);
    settler.settleAll();
    await later(20);
    expect(settler.pending().map((p) => p.state)).to.deep.equal(["waiting-top-up"]);
    balance = 100n;
    settler.settleAll(); // what `myst earnings settle` does before paying out
    const drained = await settler.drain(5000);
    const left = settler.pending();
    settler.stop();
    expect({ drained, mined, left: left.map((p) => `${p.pairId} ${p.state}`) }).to.deep.equal({ drained: true, mined: true, left: [] });
  });
});
