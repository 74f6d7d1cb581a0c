import { expect } from "chai";
import { DailyEarnings, earningsPerDay } from "../../../node/payments/earnings-per-day";

const at = (iso: string) => Date.parse(iso);

describe("earnings per day", function () {
  it("splits a session that runs over midnight across both days, in proportion to its time on each", function () {
    // Started 23:00, promised 300 at 00:30 the next day: 1 h before midnight, 30 min after.
    const days = earningsPerDay([{ sessionId: "s", receivedAt: at("2026-03-02T00:30:00Z"), increase: 300n }], new Map([["s", at("2026-03-01T23:00:00Z")]]), {
      days: 3,
      now: at("2026-03-02T12:00:00Z"),
      utcOffsetMinutes: 0,
    });
    expect(days).to.deep.equal([
      { date: "2026-02-28", earnedWei: "0" },
      { date: "2026-03-01", earnedWei: "200" },
      { date: "2026-03-02", earnedWei: "100" },
    ]);
  });

  it("spreads each promise over the time since the session's previous one, not since its start", function () {
    const starts = new Map([["s", at("2026-03-01T22:00:00Z")]]);
    const days = earningsPerDay(
      [
        { sessionId: "s", receivedAt: at("2026-03-01T23:00:00Z"), increase: 50n },
        { sessionId: "s", receivedAt: at("2026-03-02T01:00:00Z"), increase: 80n },
      ],
      starts,
      { days: 2, now: at("2026-03-02T02:00:00Z"), utcOffsetMinutes: 0 },
    );
    expect(days).to.deep.equal([
      { date: "2026-03-01", earnedWei: "90" },
      { date: "2026-03-02", earnedWei: "40" },
    ]);
  });

  it("gives the same days fed promise by promise as a reader following the store does", function () {
    const starts = new Map([
      ["a", at("2026-03-01T20:00:00Z")],
      ["b", at("2026-03-01T23:59:00Z")],
    ]);
    const promises = [
      { sessionId: "a", receivedAt: at("2026-03-01T21:00:00Z"), increase: 1000n },
      { sessionId: "b", receivedAt: at("2026-03-02T00:01:00Z"), increase: 333n },
      { sessionId: "a", receivedAt: at("2026-03-02T03:00:00Z"), increase: 6001n },
    ];
    const daily = new DailyEarnings(-300);
    for (const p of promises) daily.add([p], (id) => starts.get(id));
    const now = at("2026-03-02T12:00:00Z");
    expect(daily.days(3, now)).to.deep.equal(earningsPerDay(promises, starts, { days: 3, now, utcOffsetMinutes: -300 }));
    const total = daily.days(3, now).reduce((sum, d) => sum + BigInt(d.earnedWei), 0n);
    expect(total).to.equal(7334n);
  });

  it("counts days from the viewer's midnight, and loses no wei to rounding", function () {
    // 22:30 UTC is already the next day at UTC+2.
    const days = earningsPerDay([{ sessionId: "s", receivedAt: at("2026-03-01T22:30:00Z"), increase: 7n }], new Map([["s", at("2026-03-01T21:30:00Z")]]), {
      days: 2,
      now: at("2026-03-01T23:00:00Z"),
      utcOffsetMinutes: 120,
    });
    expect(days).to.deep.equal([
      { date: "2026-03-01", earnedWei: "3" },
      { date: "2026-03-02", earnedWei: "4" },
    ]);
    expect(days.reduce((sum, d) => sum + BigInt(d.earnedWei), 0n)).to.equal(7n);
  });
});
