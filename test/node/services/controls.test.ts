import { toAddress } from "../../../node/values/address";
import { expect } from "chai";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { controlsFromFlags, gibOf } from "../../../node/cli/controls";
import { ProviderControls } from "../../../node/daemon/provider-controls";
import { decodeRecord, encodeRecord, proposalRecord } from "../../../node/discovery/record";
import { matchesFilter, parseFilter } from "../../../node/proposal/filter";
import { signProposal } from "../../../node/proposal/proposal";
import { IdentityKey } from "../../../node/identity/key";
import { AccessList } from "../../../node/services/controls/access-list";
import { checkEgress } from "../../../node/services/controls/egress";
import { Schedule } from "../../../node/services/controls/schedule";
import { ServicePolicy } from "../../../node/services/controls/service-policy";
import { capStatus, monthPeriod } from "../../../node/services/controls/traffic-cap";
import type { ProviderSession, ProviderSessions } from "../../../node/session/provider";
import { openDatabase } from "../../../node/store/database";
import { TrafficStore } from "../../../node/store/traffic-store";
import { makeProposal } from "../../../scripts/lib/proposals";
import { tempDir } from "../../../scripts/lib/tmp";
import { until } from "../../../scripts/lib/until";

const MIB = 2 ** 20;
const A = toAddress("0x1111111111111111111111111111111111111111");
const B = "0x2222222222222222222222222222222222222222";
/** Local time: 2026-11-25 is a Wednesday. */
const at = (day: number, h: number, m = 0) => new Date(2026, 10, day, h, m);

describe("provider controls", function () {
  describe("schedules", function () {
    it("is open inside a window on its days and closed outside, in local time", function () {
      const s = new Schedule(["mon-fri 08:00-22:00", "sat,sun 10:00-14:00"]);
      expect(s.isOpen(at(25, 8))).to.equal(true);
      expect(s.isOpen(at(25, 21, 59))).to.equal(true);
      expect(s.isOpen(at(25, 22))).to.equal(false);
      expect(s.isOpen(at(25, 7, 59))).to.equal(false);
      expect(s.isOpen(at(28, 9))).to.equal(false); // Saturday
      expect(s.isOpen(at(28, 10))).to.equal(true);
    });

    it("runs a window whose end is before its start past midnight into the next day", function () {
      const s = new Schedule(["fri 22:00-02:00"]);
      expect(s.isOpen(at(27, 23))).to.equal(true); // Friday
      expect(s.isOpen(at(28, 1, 59))).to.equal(true); // Saturday early
      expect(s.isOpen(at(28, 2))).to.equal(false);
      expect(s.isOpen(at(26, 1))).to.equal(false); // Thursday early: Wednesday has no window
    });

    it("says when it next changes, and is always open without windows", function () {
      expect(new Schedule(["daily 08:00-24:00"]).nextChange(at(25, 12, 30))).to.deep.equal(at(26, 0));
      expect(new Schedule([]).isOpen(at(25, 3))).to.equal(true);
      expect(new Schedule([]).nextChange(at(25, 3))).to.equal(undefined);
    });

    it("refuses windows it cannot read with BAD_SCHEDULE, naming them", function () {
      for (const bad of ["weekdays", "mon 8-22", "mon 08:00-08:00", "mon 08:60-09:00", "funday 08:00-09:00", "mon 23:00-24:01"]) {
        expect(() => new Schedule([bad]), bad)
          .to.throw()
          .with.property("code", "BAD_SCHEDULE");
      }
    });
  });

  describe("allow and deny lists", function () {
    const tmp = tempDir();
    after(() => tmp.cleanup());

    it("admits anyone not denied without an allow list, only the listed with one; the deny list wins", function () {
      const open = new AccessList({ deny: [A] });
      expect(open.policy).to.equal("open");
      expect(open.refusal(A.toUpperCase().replace("0X", "0x"))).to.match(/deny list/);
      expect(open.refusal(B)).to.equal(null);
      const only = new AccessList({ allow: [A, B], deny: [B] });
      expect(only.policy).to.equal("allowlist");
      expect(only.refusal(A)).to.equal(null);
      expect(only.refusal(B)).to.match(/deny list/);
      expect(only.refusal("0x3333333333333333333333333333333333333333")).to.match(/not on this provider's allow list/);
    });

    it("reads a list file again when it changes, and keeps the last good list when the new one is malformed", async function () {
      const file = path.join(tmp.dir, "allow.txt");
      fs.writeFileSync(file, `# friends\n${A}  # alice\n\n`);
      let changes = 0;
      const list = new AccessList({ allowFile: file, pollMs: 50, onChange: () => changes++ });
      list.start();
      try {
        expect(list.refusal(A)).to.equal(null);
        expect(list.refusal(B)).to.match(/allow list/);
        fs.writeFileSync(file, `${A}\n${B}\n`);
        await until(() => list.refusal(B) === null, "the file to be read again");
        expect(changes).to.equal(1);
        fs.writeFileSync(file, `${A}\nnot-an-address\n`);
        await new Promise((r) => setTimeout(r, 300));
        expect(list.refusal(B)).to.equal(null);
        expect(changes).to.equal(1);
      } finally {
        list.stop();
      }
    });

    it("refuses a missing file or a bad line at start with a code that says which", function () {
      expect(() => new AccessList({ denyFile: path.join(tmp.dir, "none.txt") }))
        .to.throw(/cannot read the access list/)
        .with.property("code", "ACCESS_LIST_UNREADABLE");
      const bad = path.join(tmp.dir, "bad.txt");
      fs.writeFileSync(bad, `${A}\nbob\n`);
      expect(() => new AccessList({ allowFile: bad }))
        .to.throw(/bad\.txt:2: "bob"/)
        .with.property("code", "BAD_ACCESS_LIST");
    });
  });

  describe("traffic caps", function () {
    const tmp = tempDir();
    const db = openDatabase(path.join(tmp.dir, "myst.db"));
    const store = new TrafficStore(db);
    after(() => {
      db.close();
      tmp.cleanup();
    });

    it("starts a monthly period on its day, in the month before when that day has not come yet", function () {
      expect(monthPeriod(at(25, 12), 1)).to.deep.equal({ start: new Date(2026, 10, 1), next: new Date(2026, 11, 1) });
      expect(monthPeriod(at(10, 12), 15)).to.deep.equal({ start: new Date(2026, 9, 15), next: new Date(2026, 10, 15) });
    });

    it("counts a day's and a period's traffic from the store, and says which cap is reached and when it resets", function () {
      store.add("2026-11-14", 100 * MIB); // before the period (starts the 15th)
      store.add("2026-11-20", 3 * MIB);
      store.add("2026-11-25", 4 * MIB);
      store.add("2026-11-25", 1 * MIB);
      const s = capStatus({ dailyGiB: 5 / 1024, monthlyGiB: 1, monthStartDay: 15 }, store, at(25, 12));
      expect(s.daily).to.deep.include({ capBytes: 5 * MIB, usedBytes: 5 * MIB, remainingBytes: 0, resetsAt: at(26, 0).toISOString() });
      expect(s.monthly).to.deep.include({ usedBytes: 8 * MIB, remainingBytes: 1024 * MIB - 8 * MIB, resetsAt: new Date(2026, 11, 15).toISOString() });
      expect(s.reached).to.equal("daily");
      expect(capStatus({ dailyGiB: 5 / 1024 }, store, at(26, 0, 1)).reached).to.equal(null);
    });

    it("refuses caps that are not positive, and a month start past the 28th", function () {
      expect(() => new ServicePolicy({ trafficCap: { dailyGiB: 0 } }))
        .to.throw()
        .with.property("code", "BAD_TRAFFIC_CAP");
      expect(() => new ServicePolicy({ trafficCap: { monthlyGiB: 1, monthStartDay: 31 } }))
        .to.throw()
        .with.property("code", "BAD_TRAFFIC_CAP");
    });
  });

  describe("the policy applied to sessions (ProviderControls)", function () {
    const tmp = tempDir();
    const db = openDatabase(path.join(tmp.dir, "myst.db"));
    after(() => {
      db.close();
      tmp.cleanup();
    });

    /** A stand-in for ProviderSessions: what the controls read and call. */
    function fakeSessions(list: Partial<ProviderSession>[]) {
      const emitter = new EventEmitter();
      const ended: [string, string][] = [];
      const notices: [string, string, number][] = [];
      const sessions = Object.assign(emitter, {
        list: () => list as ProviderSession[],
        end: async (id: string, reason: string) => {
          ended.push([id, reason]);
          const s = list.find((x) => x.id === id)!;
          s.state = "ended";
          emitter.emit("session-ended", s);
        },
        notice: (id: string, reason: string, ms: number) => void notices.push([id, reason, ms]),
      });
      return { sessions: sessions as unknown as ProviderSessions, ended, notices };
    }

    it("counts live sessions' traffic into the store, refuses TRAFFIC_CAP at the cap, tells running sessions and ends them after the notice", async function () {
      const bytes: Record<string, number> = { s1: 0 };
      const { sessions, ended, notices } = fakeSessions([{ id: "s1", consumer: A, serviceType: "openvpn", state: "active" }]);
      const withdrawn: string[] = [];
      let clock = at(25, 12).getTime();
      const controls = new ProviderControls({
        sessions,
        traffic: new TrafficStore(db),
        usage: (id) => ({ bytesIn: 0, bytesOut: bytes[id] ?? 0 }),
        withdraw: async (t) => void withdrawn.push(t),
        offer: (t) => void withdrawn.push(`offer ${t}`),
        clock: () => clock,
      });
      controls.add("openvpn", new ServicePolicy({ trafficCap: { dailyGiB: 1 / 1024 }, noticeSeconds: 0 }));
      const proposal = makeProposal(IdentityKey.generate(), { serviceType: "openvpn" });
      bytes.s1 = 512 * 1024;
      await controls.tick();
      expect(await controls.admission({ consumer: B, proposal })).to.equal(null);
      bytes.s1 = 2 * MIB;
      await controls.tick();
      expect((await controls.admission({ consumer: B, proposal }))?.code).to.equal("TRAFFIC_CAP");
      expect(withdrawn).to.deep.equal(["openvpn"]);
      expect(notices).to.deep.equal([["s1", "the provider's daily traffic cap is reached", 0]]);
      await until(() => ended.length === 1, "the session to end");
      expect(controls.status("openvpn")).to.deep.include({ offered: false, withdrawnBecause: "TRAFFIC_CAP" });
      expect(controls.traffic().todayBytes).to.equal(2 * MIB);
      // The next day: offered again.
      clock = at(26, 0, 1).getTime();
      await controls.tick();
      expect(withdrawn).to.deep.equal(["openvpn", "offer openvpn"]);
      expect(await controls.admission({ consumer: B, proposal })).to.equal(null);
      controls.stop();
    });

    /** A noop service that denies A and is open on Wednesdays 08:00-22:00, asked at 23:00. */
    function denyAAndClosed(): ProviderControls {
      const controls = new ProviderControls({
        sessions: fakeSessions([]).sessions,
        usage: () => undefined,
        withdraw: async () => undefined,
        offer: () => undefined,
        clock: () => at(25, 23).getTime(),
      });
      controls.add("noop", new ServicePolicy({ access: { deny: [A] }, schedule: ["wed 08:00-22:00"] }));
      return controls;
    }

    it("refuses ACCESS_DENIED before anything else, and OUTSIDE_SCHEDULE outside the windows", async function () {
      const controls = denyAAndClosed();
      const proposal = makeProposal(IdentityKey.generate(), { serviceType: "noop" });
      expect((await controls.admission({ consumer: A, proposal }))?.code).to.equal("ACCESS_DENIED");
      expect((await controls.admission({ consumer: B, proposal }))?.code).to.equal("OUTSIDE_SCHEDULE");
      controls.stop();
    });

    it("says why a service is not offered to this consumer now, in the refusal codes and words admission uses, with when the schedule opens", async function () {
      const controls = denyAAndClosed();
      expect(await controls.availability("noop", A)).to.deep.include({ offered: false, refusal: "ACCESS_DENIED" });
      const closed = await controls.availability("noop", B);
      expect(closed).to.deep.include({ offered: false, refusal: "OUTSIDE_SCHEDULE" });
      expect(closed.message)
        .to.include("schedule is closed")
        .and.include(`opens again at ${at(32, 8).toISOString()}`);
      expect(await controls.availability("openvpn", B)).to.deep.equal({ offered: true, message: "offered" });
      controls.stop();
    });
  });

  describe("egress policy settings", function () {
    it("blocks SMTP unless allowed, and takes ports, ranges and CIDRs of both families", function () {
      expect(checkEgress({})).to.deep.equal({ ports: ["25"], v4: [], v6: [] });
      expect(checkEgress({ allowSmtp: true, blockPorts: [6881, "6881-6889"], blockCidrs: ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"] })).to.deep.equal({
        ports: ["6881", "6881:6889"],
        v4: ["203.0.113.0/24", "198.51.100.7"],
        v6: ["2001:db8::/32"],
      });
      for (const bad of [{ blockPorts: ["70000"] }, { blockPorts: ["9-3"] }, { blockCidrs: ["10.0.0.0/33"] }, { blockCidrs: ["example.com"] }]) {
        expect(() => checkEgress(bad), JSON.stringify(bad))
          .to.throw()
          .with.property("code", "BAD_EGRESS_POLICY");
      }
    });
  });

  describe("the access policy in proposals and discovery", function () {
    it("filters on access_policy, an absent policy being open", function () {
      const key = IdentityKey.generate();
      const open = makeProposal(key);
      const listed = { ...makeProposal(key), accessPolicy: "allowlist" as const };
      expect(matchesFilter(open, parseFilter({ access_policy: "open" }))).to.equal(true);
      expect(matchesFilter(listed, parseFilter({ access_policy: "open" }))).to.equal(false);
      expect(matchesFilter(listed, parseFilter({ access_policy: "allowlist" }))).to.equal(true);
      expect(() => parseFilter({ access_policy: "friends" })).to.throw(/access_policy must be/);
    });

    it("keeps the policy in discovery's stored records, and reads records written before it as open", function () {
      const key = IdentityKey.generate();
      const p = { ...makeProposal(key), accessPolicy: "allowlist" as const };
      const signed = signProposal(key, p);
      expect(decodeRecord(encodeRecord(proposalRecord(signed, p)))).to.deep.include({ accessPolicy: "allowlist" });
      const old = Buffer.from(`${JSON.stringify(["p", 1, 2, "DE", "residential", "0", "0", 100])}\n${signed.signature}\n${signed.proposal}`);
      expect(decodeRecord(old)).to.deep.include({ accessPolicy: "open", bandwidthMbps: 100 });
    });
  });

  describe("the CLI flags", function () {
    it("reads sizes in GiB or with a unit, and builds the controls the flags ask for", function () {
      expect(gibOf("2", "--daily-cap")).to.equal(2);
      expect(gibOf("512MiB", "--daily-cap")).to.equal(0.5);
      expect(gibOf("1TiB", "--monthly-cap")).to.equal(1024);
      expect(() => gibOf("lots", "--daily-cap")).to.throw(/--daily-cap "lots" is not a size/);
      const given = new Set(["monthStart"]);
      expect(
        controlsFromFlags(
          {
            dailyCap: "5MiB",
            monthlyCap: "100",
            monthStart: "15",
            capNotice: "10",
            schedule: ["mon-fri 08:00-22:00"],
            deny: [A],
            blockPort: ["6881-6889", "23"],
          },
          (f) => given.has(f),
        ),
      ).to.deep.equal({
        trafficCap: { dailyGiB: 5 / 1024, monthlyGiB: 100, monthStartDay: 15 },
        schedule: ["mon-fri 08:00-22:00"],
        access: { deny: [A] },
        egress: { blockPorts: ["6881-6889", 23] },
      });
      expect(controlsFromFlags({ monthStart: "1", capNotice: "10" }, () => false)).to.equal(undefined);
      expect(controlsFromFlags({ allowFile: "allow.txt" }, () => false)).to.deep.equal({ access: { allowFile: path.resolve("allow.txt") } });
    });
  });
});
