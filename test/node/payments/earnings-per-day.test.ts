import { expect } from "chai";
import { earningsPerDay } from "../../../node/payments/earnings-per-day";

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
