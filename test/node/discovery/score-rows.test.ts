import { expect } from "chai";
import { rowIdOf, ScoreRows } from "../../../node/discovery/score-rows";
import { STAGES } from "../../../node/quality/receipt";
import type { ScoreRow } from "../../../node/quality/score";

/**
 * The replica's scoring rows (score-rows.ts) keep each receipt's row in narrow typed columns: what
 * comes back out must be exactly what went in (the scores a replica serves equal the recompute from
 * the raw receipts), and the order rows came in must survive the columns' limits.
 */
describe("the scoring rows of a replica", () => {
  const idOf = (i: number) => rowIdOf(i.toString(16).padStart(21, "0"));
  const rowOf = (i: number, over: Partial<ScoreRow> = {}): ScoreRow => ({
    consumer: `0x${(i % 7).toString(16).padStart(40, "0")}`,
    at: 1_780_000_000_000 + i * 17,
    tie: idOf(i).hi,
    budgetWei: BigInt(i) * 10n ** 15n,
    drawWei: 10n ** 15n,
    paid: i % 2 === 0,
    stage: i % 8 === 7 ? null : STAGES[i % 7],
    connectMs: 100 + i,
    bandwidthRatio: i % 3 === 0 ? null : i / 1000,
    ...over,
  });

  it("reads back every row exactly as added: each stage, paid or not, connect times past 32 bits, no bandwidth", () => {
    const rows = new ScoreRows();
    const added: ScoreRow[] = [];
    let head = -1;
    const extremes: Partial<ScoreRow>[] = [
      { connectMs: 0 },
      { connectMs: 0xfffffffe },
      { connectMs: 0xffffffff },
      { connectMs: 2 ** 50 },
      { connectMs: 12.5 },
      { stage: null, paid: true },
      { stage: "throughput", paid: false },
      { budgetWei: 2n ** 63n - 1n },
    ];
    for (let i = 0; i < 40; i++) {
      const row = rowOf(i, extremes[i % extremes.length]);
      // The tie is the id's first 52 bits, as rowOf in score.ts makes it.
      head = rows.add(row, idOf(i), head);
      added.unshift(row);
    }
    expect(rows.rows(head)).to.deep.equal(added);
    // A slot freed and reused by an ordinary row does not keep the big connect time it held.
    const big = [...rows.chain(head)].find((s) => rows.row(s).connectMs === 2 ** 50) as number;
    head = rows.remove(big, head);
    head = rows.add(rowOf(99), idOf(99), head);
    expect(rows.row(head).connectMs).to.equal(199);
    expect(rows.rows(head).filter((r) => r.connectMs === 2 ** 50)).to.have.length(extremes.filter((e) => e.connectMs === 2 ** 50).length * 5 - 1);
  });

  it("keeps the order rows came in when their numbers pass the limit and the held rows are numbered again", () => {
    // 60 rows added, at most 21 held: numbered again (limit 30) twice or more.
    const rows = new ScoreRows(30);
    const heads = [-1, -1];
    const order: number[] = [];
    for (let i = 0; i < 60; i++) {
      const chain = i % 2;
      heads[chain] = rows.add(rowOf(i), idOf(i), heads[chain]);
      order.push(heads[chain]);
      // Past 20 rows, the oldest of the other chain leaves: rows leave while numbers run out.
      if (i >= 20) {
        const other = 1 - chain;
        const oldest = [...rows.chain(heads[other])].at(-1) as number;
        heads[other] = rows.remove(oldest, heads[other]);
        order.splice(order.indexOf(oldest), 1);
      }
    }
    const held = [...rows.chain(heads[0]), ...rows.chain(heads[1])];
    expect(held.length).to.equal(order.length);
    const bySeq = [...held].sort((a, b) => rows.seq(a) - rows.seq(b));
    expect(bySeq).to.deep.equal(order);
    for (const s of held) expect(rows.seq(s)).to.be.at.most(30);
  });
});
