import { expect } from "chai";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { nftHasTable } from "../../node/consumer-protection/nft";
import { endNftSessions } from "../../node/consumer-protection/nft-session";
import { ConsumerProtection, protectionRecordFile } from "../../node/consumer-protection/protection";
import { GUARD_TABLE } from "../../node/consumer-protection/rules";
import type { Connection } from "../../node/daemon/consumer-node";
import type { NodeCore } from "../../node/daemon/core";
import { silentLogger } from "../../node/log/logger";
import { ConnectionOps } from "../../node/ops/connection/connection";
import type { ConnectRequest } from "../../node/ops/connection/request";
import { type SessionError, SessionRefusedError } from "../../node/session/errors";
import type { SessionProtection, TunnelPlan } from "../../node/session/service";
import { requireE2E } from "../../scripts/lib/prereqs";
import { tempDir } from "../../scripts/lib/tmp";
import { until } from "../../scripts/lib/until";
import { rejectionOf } from "../support/rejection";

/**
 * The connection's own logic around the kill switch's handover (ops/connection/connection.ts), with the real
 * ConsumerProtection in a namespace of its own (real nft) and a stand-in for the negotiation (it prepares, engages and
 * brings up the protection as ConsumerSessions does, when the test lets it). A leak is a packet by the consumer's own
 * route that a chain hooked after the guard counts: to the internet host, or to a host on the LAN.
 *
 *   consumer c: eth0 198.18.1.2 (default route) · world w: eth0 198.18.1.1, on lo an internet host 198.18.2.2 and a LAN host 192.168.77.2
 */
describe("e2e: a connect or disconnect while the kill switch holds (ConnectionOps, real nft in a netns)", function () {
  this.timeout(60_000);
  const tag = `myst-ho${crypto.randomBytes(2).toString("hex")}`;
  const [c, w] = [`${tag}-c`, `${tag}-w`];
  const tmp = tempDir("myst-e2e-ho-");
  const ip = (...args: string[]) => execFileSync("/usr/sbin/ip", args, { encoding: "utf8" });
  const PLAN: TunnelPlan = { device: "hotun0", endpoints: [{ address: "198.18.3.2", port: 51820, protocol: "udp" }], dns: ["10.9.0.1"], ipv6: false };

  before(function () {
    requireE2E(this);
    for (const n of [c, w]) {
      ip("netns", "add", n);
      ip("-n", n, "link", "set", "lo", "up");
    }
    const id = crypto.randomBytes(3).toString("hex");
    ip("link", "add", `mh${id}a`, "type", "veth", "peer", "name", `mh${id}b`);
    ip("link", "set", `mh${id}a`, "netns", c, "name", "eth0");
    ip("link", "set", `mh${id}b`, "netns", w, "name", "eth0");
    ip("-n", c, "link", "set", "eth0", "up");
    ip("-n", w, "link", "set", "eth0", "up");
    ip("-n", c, "addr", "add", "198.18.1.2/24", "dev", "eth0");
    ip("-n", w, "addr", "add", "198.18.1.1/24", "dev", "eth0");
    for (const a of ["198.18.2.2/32", "192.168.77.2/32"]) ip("-n", w, "addr", "add", a, "dev", "lo");
    ip("-n", c, "route", "add", "default", "via", "198.18.1.1");
  });

  after(function () {
    endNftSessions();
    for (const n of [c, w]) if (fs.existsSync(`/run/netns/${n}`)) ip("netns", "del", n);
    fs.rmSync(`/etc/netns/${c}`, { recursive: true, force: true });
    tmp.cleanup();
  });

  /** Which of the consumer's own-route packets got past its firewall: one UDP packet to the internet host, one to the LAN host. */
  function leaks(): { internet: boolean; lan: boolean } {
    const nft = (args: string[], input?: string) => execFileSync("/usr/sbin/ip", ["netns", "exec", c, "/usr/sbin/nft", ...args], { input, encoding: "utf8" });
    nft(
      ["-f", "-"],
      [
        "table inet myst_probe {",
        "  chain out {",
        "    type filter hook output priority 500; policy accept;",
        '    ip daddr 198.18.2.2 udp dport 9 counter comment "internet"',
        '    ip daddr 192.168.77.2 udp dport 9 counter comment "lan"',
        "  }",
        "}",
        "",
      ].join("\n"),
    );
    const send = `const s = require("node:dgram").createSocket("udp4"); s.on("error", () => undefined);
      s.send("x", 9, "198.18.2.2", () => s.send("x", 9, "192.168.77.2", () => setTimeout(() => s.close(), 100)));`;
    execFileSync("/usr/sbin/ip", ["netns", "exec", c, process.execPath, "-e", send]);
    const listed = JSON.parse(nft(["-j", "list", "table", "inet", "myst_probe"]));
    nft(["delete", "table", "inet", "myst_probe"]);
    const counted: Record<string, boolean> = {};
    for (const item of listed.nftables as { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[])
      if (item.rule?.comment) counted[item.rule.comment] = (item.rule.expr.find((e) => e.counter)?.counter?.packets ?? 0) > 0;
    return { internet: counted.internet, lan: counted.lan };
  }

  /** A session the test ends: `end` as ConsumerSession.finish begins (state "ended", its tunnel still stopping), `settle` as it finishes. */
  function fakeSession() {
    let settle!: (reason: string) => void;
    const ended = new Promise<string>((resolve) => (settle = resolve));
    const session = {
      id: crypto.randomBytes(4).toString("hex"),
      provider: "0x00000000000000000000000000000000000000aa",
      state: "active" as "active" | "ended",
      endReason: undefined as string | undefined,
      ended,
      timings: { confirmed: Date.now() },
      path: { tunnel: "public", channel: "broker" },
      tunnel: { stats: () => ({ bytesIn: 0, bytesOut: 0 }), stop: async () => undefined },
      destroy: async (reason: string) => {
        end(reason);
        settle(reason);
      },
    };
    const end = (reason: string) => {
      session.state = "ended";
      session.endReason = reason;
    };
    const proposal = { proposal: { serviceType: "wireguard", location: { country: "NL", ipType: "residential" }, price: { perHour: "0", perGiB: "0" } } };
    const connection = { session, proposal, phases: { discovery: 0, negotiation: 0, tunnel: 0, confirm: 0 }, fellOver: [] } as unknown as Connection;
    return { connection, end, settle: () => settle(session.endReason ?? "ended") };
  }

  /**
   * A node whose consumer negotiates as the test says: `gate` (when given) holds the negotiation until it settles —
   * "up" brings the protection up as a session would, an error fails the connect as a provider's refusal does.
   */
  function node() {
    const dataDir = path.join(tmp.dir, crypto.randomBytes(4).toString("hex"));
    let current: Connection | undefined;
    const sessions: ReturnType<typeof fakeSession>[] = [];
    const negotiations: { protection?: SessionProtection; leaks: { internet: boolean; lan: boolean } }[] = [];
    let gate: Promise<"up" | Error> | undefined;
    const consumer = {
      get current() {
        return current;
      },
      alongside: new Set<Connection>(),
      connect: async (o: { protection?: SessionProtection }) => {
        const p = o.protection!;
        p.prepare?.();
        negotiations.push({ protection: p, leaks: leaks() });
        // A gate holds this negotiation only: the next goes through unless the test holds it again.
        const held = gate;
        gate = undefined;
        const outcome = await (held ?? "up");
        if (outcome instanceof Error) {
          await p.discard?.();
          throw outcome;
        }
        await p.engage!(PLAN);
        await p.tunnelUp!({ device: PLAN.device, dns: PLAN.dns ?? [], ipv6: false });
        const s = fakeSession();
        sessions.push(s);
        current = s.connection;
        return s.connection;
      },
      stop: async () => undefined,
    };
    const core = {
      config: { dataDir },
      log: silentLogger,
      metrics: { error: () => undefined, connected: () => undefined },
      online: () => ({ key: {}, consumer, spares: undefined, guardSpare: undefined }),
      get maybeOnline() {
        return { consumer };
      },
    } as unknown as NodeCore;
    const held = () => {
      let open!: (outcome: "up" | Error) => void;
      gate = new Promise((resolve) => (open = resolve));
      return open;
    };
    return { ops: new ConnectionOps(core), dataDir, sessions, negotiations, held };
  }

  const request = (extra: Partial<ConnectRequest> = {}): ConnectRequest => ({
    serviceType: "wireguard",
    filter: {} as ConnectRequest["filter"],
    netns: c,
    ...extra,
  });
  const refused = () => new SessionRefusedError("ACCESS_DENIED", "not today");
  const BLOCKED = { internet: false, lan: false };
  /** The status, as the API shows it (every view's fields optional). */
  const view = (n: ReturnType<typeof node>) =>
    n.ops.status() as {
      state: string;
      protection?: { state: string; allowLan: boolean; killSwitch: boolean };
      reconnect?: { state: string };
      lastFailure?: { code: string; refusal?: string };
    };

  /** A connection whose session ended by itself: its kill switch blocks. */
  async function blocked(n: ReturnType<typeof node>, extra: Partial<ConnectRequest> = {}) {
    await n.ops.connect(request(extra));
    const first = n.sessions.at(-1)!;
    first.end("tunnel down: test");
    first.settle();
    await until(() => view(n).protection?.state === "blocked", "the kill switch to block");
    return first;
  }

  it("a connect made while the ended session still winds down (status: blocked) is a handover: nothing leaves by the own route while it negotiates, nor after it fails (review M1)", async function () {
    const n = node();
    await n.ops.connect(request());
    expect(leaks()).to.deep.equal(BLOCKED);
    const first = n.sessions[0];
    // The session ends by itself; its tunnel is still stopping (ConsumerSession.finish before its `ended`).
    first.end("tunnel down: test");
    expect(view(n).state).to.equal("blocked");
    const open = n.held();
    const second = n.ops.connect(request());
    second.catch(() => undefined);
    // The tunnel has stopped: the node takes the end in.
    first.settle();
    await until(() => n.negotiations.length === 2, "the second connect to negotiate");
    expect(n.negotiations[1].leaks, "nothing by the own route while the new connect negotiates").to.deep.equal(BLOCKED);
    expect(view(n).state).to.equal("blocked");
    open(refused());
    expect(((await rejectionOf(second)) as SessionError).code).to.equal("SESSION_REFUSED");
    expect(view(n)).to.include({ state: "blocked" });
    expect(leaks()).to.deep.equal(BLOCKED);
    await n.ops.disconnect();
    expect(await nftHasTable(GUARD_TABLE, c)).to.equal(false);
    expect(leaks()).to.deep.equal({ internet: true, lan: true });
  });

  it("a disconnect made while the ended session still winds down (status: blocked) lifts the kill switch once the end is taken in, rather than answering NOT_CONNECTED", async function () {
    const n = node();
    await n.ops.connect(request());
    const first = n.sessions[0];
    first.end("tunnel down: test");
    expect(view(n).state).to.equal("blocked");
    let answered = false;
    const disconnect = n.ops.disconnect().finally(() => (answered = true));
    disconnect.catch(() => undefined);
    // What is tested is that the disconnect has not answered yet (a NOT_CONNECTED would come at once): a short wait.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(answered, "the disconnect waits for the end to be taken in").to.equal(false);
    expect(await nftHasTable(GUARD_TABLE, c)).to.equal(true);
    // The tunnel has stopped: the node takes the end in (the kill switch blocks), then the disconnect lifts it.
    first.settle();
    expect((await disconnect).state).to.equal("disconnected");
    expect(await nftHasTable(GUARD_TABLE, c)).to.equal(false);
    expect(leaks()).to.deep.equal({ internet: true, lan: true });
  });

  // Sent with no await between, or one turn of the event loop later (the disconnect's lift under way: the review's case).
  for (const later of [false, true])
    it(`a connect made right after a disconnect${later ? ", while it lifts the block," : ""} is a fresh connect: the disconnect answers disconnected, the status never claims a block not in force, nothing is left armed after the connect fails (review 2 M1)`, async function () {
      const n = node();
      await blocked(n);
      // Every status the node announces from the disconnect on, with whether a kill switch is recorded in force then.
      const seen: { state: string; recorded: boolean }[] = [];
      n.ops.on("change", () => seen.push({ state: view(n).state, recorded: fs.existsSync(protectionRecordFile(n.dataDir)) }));
      const open = n.held();
      const disconnect = n.ops.disconnect();
      if (later) await new Promise((resolve) => setImmediate(resolve));
      const second = n.ops.connect(request());
      second.catch(() => undefined);
      expect((await disconnect).state).to.equal("disconnected");
      await until(() => n.negotiations.length === 2, "the second connect to negotiate");
      expect(view(n).state, "a fresh connect, not a handover of the lifted block").to.equal("connecting");
      // As any first connect: the own route is open while it negotiates (the disconnect lifted the block, as asked).
      expect(n.negotiations[1].leaks).to.deep.equal({ internet: true, lan: true });
      open(refused());
      expect(((await rejectionOf(second)) as SessionError).code, "the provider's refusal, not a firewall error").to.equal("SESSION_REFUSED");
      expect(view(n).state).to.equal("disconnected");
      expect(await nftHasTable(GUARD_TABLE, c), "nothing left armed").to.equal(false);
      expect(fs.existsSync(protectionRecordFile(n.dataDir))).to.equal(false);
      expect(leaks()).to.deep.equal({ internet: true, lan: true });
      const claimed = seen.filter((s) => s.state === "blocked" && !s.recorded);
      expect(claimed, "a block claimed while none was in force").to.deep.equal([]);
    });

  it("after a failed connect with --allow-lan made while blocked, the status says what is in force: the block's rules, without the LAN (review M2)", async function () {
    const n = node();
    await blocked(n);
    const open = n.held();
    const second = n.ops.connect(request({ allowLan: true }));
    second.catch(() => undefined);
    await until(() => n.negotiations.length === 2, "the second connect to negotiate");
    expect(view(n).protection).to.include({ state: "blocked", allowLan: false });
    open(refused());
    await rejectionOf(second);
    expect(view(n).protection).to.include({ state: "blocked", allowLan: false, killSwitch: true });
    expect(leaks(), "the LAN is blocked, as the status says").to.deep.equal(BLOCKED);
    await n.ops.disconnect();
  });

  it("the blocked view says why the last connect failed (review low: lastFailure)", async function () {
    const n = node();
    await blocked(n);
    n.held()(refused());
    await rejectionOf(n.ops.connect(request()));
    const status = view(n);
    expect(status.state).to.equal("blocked");
    expect(status.lastFailure).to.include({ code: "SESSION_REFUSED", refusal: "ACCESS_DENIED" });
    await n.ops.disconnect();
  });

  /** A node the kill switch blocks, with a second connect negotiating (its provider's answer held): a handover under way. */
  async function handoverNegotiating() {
    const n = node();
    await blocked(n);
    const open = n.held();
    const second = n.ops.connect(request());
    second.catch(() => undefined);
    await until(() => n.negotiations.length === 2, "the second connect to negotiate");
    return { n, open, second };
  }

  it("a disconnect during a handover connect's negotiation wins: the block holds until that negotiation is given up, then it is lifted and nothing is left armed (review low)", async function () {
    const { n, open, second } = await handoverNegotiating();
    let disconnected = false;
    const disconnect = n.ops.disconnect().finally(() => (disconnected = true));
    disconnect.catch(() => undefined);
    // A moment for a disconnect that would not wait to lift the block.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(leaks(), "nothing by the own route while the connect still negotiates").to.deep.equal(BLOCKED);
    expect(disconnected).to.equal(false);
    // The provider answers after all: the tunnel comes up, and is ended at once.
    open("up");
    expect(((await rejectionOf(second)) as SessionError).code).to.equal("SESSION_ENDED");
    // As docs/api.md says for a connect given up: no session (not the one before it, nor the one granted meanwhile).
    expect(await disconnect).to.deep.equal({ state: "disconnected", recovered: [] });
    expect(n.sessions[1].connection.session.state).to.equal("ended");
    expect(await nftHasTable(GUARD_TABLE, c), "nothing left armed").to.equal(false);
    expect(fs.existsSync(protectionRecordFile(n.dataDir))).to.equal(false);
    expect(view(n).state).to.equal("disconnected");
    expect(leaks()).to.deep.equal({ internet: true, lan: true });
  });

  it("the node's stop during a handover connect's negotiation: the connect is given up, and the kill switch is lifted after it, not before (nothing left armed)", async function () {
    const { n, open, second } = await handoverNegotiating();
    let returned = false;
    const stopped = n.ops.stopBuying().finally(() => (returned = true));
    // A moment for a stop that would not wait to lift the block.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(returned, "the stop waits for the connect it gave up").to.equal(false);
    expect(await nftHasTable(GUARD_TABLE, c), "the block holds while the connect still negotiates").to.equal(true);
    expect(leaks()).to.deep.equal(BLOCKED);
    // The negotiation was past the point the stop could cut: its tunnel comes up.
    open("up");
    const given = (await rejectionOf(second)) as SessionError;
    expect(given.code).to.equal("SESSION_ENDED");
    expect(given.message, "the stop named as the reason (review 2 L4)").to.equal("the node's stop came while this connect negotiated: it was given up");
    await stopped;
    expect(await nftHasTable(GUARD_TABLE, c), "nothing left armed").to.equal(false);
    expect(fs.existsSync(protectionRecordFile(n.dataDir))).to.equal(false);
    expect(leaks()).to.deep.equal({ internet: true, lan: true });
  });

  it("a handover that throws leaves the block in force and does not refuse every later connect (review low: #connecting)", async function () {
    const n = node();
    await blocked(n);
    const handOver = ConsumerProtection.prototype.handOver;
    ConsumerProtection.prototype.handOver = () => {
      throw new Error("handOver failed (test)");
    };
    try {
      expect(((await rejectionOf(n.ops.connect(request()))) as SessionError).message).to.equal("handOver failed (test)");
    } finally {
      ConsumerProtection.prototype.handOver = handOver;
    }
    expect(leaks()).to.deep.equal(BLOCKED);
    expect(view(n).state).to.equal("blocked");
    const next = await n.ops.connect(request());
    expect(next.state).to.equal("connected");
    await n.ops.disconnect();
    expect(await nftHasTable(GUARD_TABLE, c)).to.equal(false);
  });

  it("--reconnect: while a session that followed a reconnect winds down, the status says reconnecting (not blocked) with no reconnect of the last round; a connect then is refused as the status says (review low: the reconnect label)", async function () {
    const n = node();
    await n.ops.connect(request({ reconnect: true }));
    n.sessions[0].end("tunnel down: test");
    n.sessions[0].settle();
    // The reconnect (1 s, then one attempt) brings a new session.
    await until(() => view(n).reconnect?.state === "connected", "the reconnect to connect", 10_000);
    const again = n.sessions[1];
    again.end("tunnel down: again");
    const status = view(n);
    expect(status.state).to.equal("reconnecting");
    expect(status).to.not.have.property("reconnect");
    const connect = n.ops.connect(request());
    again.settle();
    expect(((await rejectionOf(connect)) as SessionError).code).to.equal("ALREADY_CONNECTING");
    expect(leaks()).to.deep.equal(BLOCKED);
    await n.ops.disconnect();
    expect(await nftHasTable(GUARD_TABLE, c)).to.equal(false);
  });
});
