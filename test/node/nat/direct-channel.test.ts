import { expect } from "chai";
import crypto from "node:crypto";
import dgram from "node:dgram";
import fs from "node:fs";
import { once } from "node:events";
import type { Candidate, PeerMapping } from "../../../node/nat/direct/candidates";
import { DirectChannel, DirectChannelError } from "../../../node/nat/direct/channel";
import { channelKeys, newSecret } from "../../../node/nat/direct/keys";
import { PacketType, sealPacket } from "../../../node/nat/direct/packet";
import { planPunch } from "../../../node/nat/direct/plan";
import { until } from "../../../scripts/lib/until";
import { rejectionOf } from "../../support/rejection";

async function bound(): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => s.bind(0, "127.0.0.1", resolve));
  return s;
}

/** Two channels of one session on loopback, each naming its socket as a local candidate. */
async function pair(o: { consumerMapping?: PeerMapping; providerMapping?: PeerMapping; deadlineMs?: number; keepaliveMs?: number } = {}) {
  const keys = channelKeys(crypto.randomBytes(16).toString("hex"), newSecret(), newSecret());
  const [cs, ps] = [await bound(), await bound()];
  const cand = (s: dgram.Socket): Candidate[] => [{ kind: "local", address: "127.0.0.1", port: s.address().port }];
  const common = { keys, allowLoopback: true, deadlineMs: o.deadlineMs ?? 3000, keepaliveMs: o.keepaliveMs ?? 2500 };
  const consumer = new DirectChannel({
    ...common,
    role: "consumer",
    socket: cs,
    own: { mapping: o.consumerMapping ?? "endpoint-independent", candidates: cand(cs) },
    peer: { mapping: o.providerMapping ?? "endpoint-independent", candidates: cand(ps) },
  });
  const provider = new DirectChannel({
    ...common,
    role: "provider",
    socket: ps,
    own: { mapping: o.providerMapping ?? "endpoint-independent", candidates: cand(ps) },
    peer: { mapping: o.consumerMapping ?? "endpoint-independent", candidates: cand(cs) },
  });
  return { keys, consumer, provider, cs, ps };
}

describe("the direct channel between a session's two nodes", function () {
  const open: DirectChannel[] = [];
  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });

  it("comes up from both sides at once on the best pair, and carries dialog frames both ways", async function () {
    const { consumer, provider } = await pair();
    open.push(consumer, provider);
    const providerUp = once(provider, "up");
    const [path] = await Promise.all([consumer.connect(), provider.connect()]);
    await providerUp;
    expect(path.kind).to.equal("local");
    expect(consumer.up && provider.up).to.equal(true);
    const got = once(provider, "frame");
    expect(consumer.sendFrame("request", 7, Buffer.from("keepalive"))).to.equal(true);
    const [frame] = await got;
    expect(frame).to.deep.include({ kind: "request", corr: 7 });
    expect(Buffer.from(frame.bytes).toString()).to.equal("keepalive");
    const back = once(consumer, "frame");
    provider.sendFrame("response", 7, Buffer.from("ok"));
    expect(Buffer.from((await back)[0].bytes).toString()).to.equal("ok");
  });

  it("refuses a frame too big for one datagram (the broker carries it)", async function () {
    const { consumer, provider } = await pair();
    open.push(consumer, provider);
    await Promise.all([consumer.connect(), provider.connect()]);
    expect(consumer.sendFrame("notify", 0, Buffer.alloc(consumer.maxMessageBytes + 1))).to.equal(false);
    expect(consumer.sendFrame("notify", 0, Buffer.alloc(consumer.maxMessageBytes))).to.equal(true);
  });

  it("drops a forged probe and a replayed frame, and delivers neither", async function () {
    const { consumer, provider, ps, keys } = await pair();
    open.push(consumer, provider);
    await Promise.all([consumer.connect(), provider.connect()]);
    const frames: unknown[] = [];
    provider.on("frame", (f) => frames.push(f));
    // A genuine frame (sealed with the consumer's key) delivered twice, an altered copy, and a
    // well-formed datagram sealed for the other direction.
    const genuine = sealPacket(keys.consumerToProvider, PacketType.data, 1_000_000n, Buffer.concat([Buffer.of(3, 0, 0, 0, 0), Buffer.from("invoice")]));
    const forged = Buffer.from(genuine);
    forged[20] ^= 0xff;
    const dropped = new Map<string, number>();
    provider.on("dropped", (d) => dropped.set(d.reason, (dropped.get(d.reason) ?? 0) + 1));
    const attacker = await bound();
    for (const d of [genuine, genuine, forged]) attacker.send(d, ps.address().port, "127.0.0.1");
    const wellFormedProbe = sealPacket(keys.providerToConsumer, PacketType.probe, 5n, Buffer.alloc(9)); // wrong direction
    attacker.send(wellFormedProbe, ps.address().port, "127.0.0.1");
    while ((dropped.get("replayed") ?? 0) < 1 || (dropped.get("forged") ?? 0) < 1 || (dropped.get("unknown-receiver") ?? 0) < 1)
      await once(provider, "dropped");
    expect(frames).to.have.length(1);
    attacker.close();
  });

  it("fails at once, with the reason in words, when both routers map ports per destination", async function () {
    const { consumer, provider } = await pair({ consumerMapping: "endpoint-dependent", providerMapping: "endpoint-dependent" });
    open.push(consumer, provider);
    // Their candidates here are loopback ones, which count as a shared LAN: take them away.
    const plan = planPunch(
      { mapping: "endpoint-dependent", candidates: [{ kind: "reflexive", address: "198.18.5.2", port: 4000 }] },
      { mapping: "endpoint-dependent", candidates: [{ kind: "reflexive", address: "198.18.6.2", port: 5000 }] },
    );
    expect(plan).to.deep.include({ kind: "impossible", reason: "both sides map ports per destination: needs a relay" });
    const alone = new DirectChannel({
      role: "consumer",
      keys: channelKeys(crypto.randomBytes(16).toString("hex"), newSecret(), newSecret()),
      socket: await bound(),
      own: { mapping: "endpoint-dependent", candidates: [] },
      peer: { mapping: "endpoint-dependent", candidates: [{ kind: "reflexive", address: "198.18.6.2", port: 5000 }] },
    });
    open.push(alone);
    const err = await rejectionOf(alone.connect());
    expect(err).to.be.instanceOf(DirectChannelError);
    expect((err as DirectChannelError).code).to.equal("NO_DIRECT_PATH");
    expect((err as Error).message).to.equal("both sides map ports per destination: needs a relay");
  });

  it("fails with NO_DIRECT_PATH and what it tried when the peer never answers", async function () {
    const { consumer, provider } = await pair({ deadlineMs: 400 });
    open.push(consumer, provider);
    provider.close();
    const err = await rejectionOf(consumer.connect());
    expect((err as DirectChannelError).code).to.equal("NO_DIRECT_PATH");
    expect((err as Error).message).to.match(/none of the provider's candidates \(local\) answered within 0\.4 s/);
  });

  it("plans a birthday search when exactly one router maps per destination", function () {
    const easy = { mapping: "endpoint-independent" as const, candidates: [{ kind: "reflexive" as const, address: "198.18.5.2", port: 4000 }] };
    const hard = { mapping: "endpoint-dependent" as const, candidates: [{ kind: "reflexive" as const, address: "198.18.6.2", port: 5000 }] };
    expect(planPunch(easy, hard).kind).to.equal("easy-side");
    expect(planPunch(hard, easy).kind).to.equal("hard-side");
    expect(planPunch(hard, { ...easy, mapping: "none" }).kind).to.equal("plain");
  });

  it("on the hard side: binds its probing sockets as it is made, before its checks start (their first probes then leave as they are sealed)", async function () {
    const fds = () => fs.readdirSync("/proc/self/fd").length;
    const before = fds();
    const hard = new DirectChannel({
      role: "provider",
      keys: channelKeys(crypto.randomBytes(16).toString("hex"), newSecret(), newSecret()),
      socket: await bound(),
      allowLoopback: true,
      hardSockets: 16,
      own: { mapping: "endpoint-dependent", candidates: [] },
      peer: { mapping: "endpoint-independent", candidates: [{ kind: "reflexive", address: "127.0.0.1", port: 9 }] },
    });
    open.push(hard);
    expect(hard.plan.kind).to.equal("hard-side");
    // The channel's own socket (bound above) and its 16 probing sockets; connect() was never called.
    await until(() => fds() >= before + 17, "16 probing sockets bound before connect()", 5000);
    hard.close();
    await until(() => fds() <= before, "the probing sockets closed with the channel", 5000);
  });

  it("on the hard side: closes its probing sockets when the search fails, keeping its own socket for its owner (review L3)", async function () {
    const fds = () => fs.readdirSync("/proc/self/fd").length;
    const before = fds();
    const own = await bound();
    const hard = new DirectChannel({
      role: "provider",
      keys: channelKeys(crypto.randomBytes(16).toString("hex"), newSecret(), newSecret()),
      socket: own,
      allowLoopback: true,
      hardSockets: 16,
      deadlineMs: 300,
      own: { mapping: "endpoint-dependent", candidates: [] },
      // Nobody listens there: the search cannot meet.
      peer: { mapping: "endpoint-independent", candidates: [{ kind: "reflexive", address: "127.0.0.1", port: 9 }] },
    });
    open.push(hard);
    await until(() => fds() >= before + 17, "the channel's own socket and its 16 probing sockets", 5000);
    expect(((await rejectionOf(hard.connect())) as DirectChannelError).code).to.equal("NO_DIRECT_PATH");
    // Before, all 16 stayed open until the session ended (closed with the channel).
    await until(() => fds() === before + 1, "the 16 probing sockets closed as the search failed", 5000);
    expect(own.address().port).to.be.a("number"); // its own socket is still open (address() throws on a closed one)
    hard.close();
    await until(() => fds() <= before, "its own socket closed with the channel", 5000);
  });

  it("on the hard side: a round of probes running when the search fails seals and sends no more of them (review L4)", async function () {
    const hard = new DirectChannel({
      role: "provider",
      keys: channelKeys(crypto.randomBytes(16).toString("hex"), newSecret(), newSecret()),
      socket: await bound(),
      allowLoopback: true,
      hardSockets: 256,
      // Due inside the first round: 4 + 256 × 4 probes, sealed 64 at a time with the loop yielding between.
      deadlineMs: 1,
      own: { mapping: "endpoint-dependent", candidates: [] },
      // Nobody listens there: the search cannot meet.
      peer: { mapping: "endpoint-independent", candidates: [9, 10, 11, 12].map((port) => ({ kind: "reflexive" as const, address: "127.0.0.1", port })) },
    });
    open.push(hard);
    const sockets = dgram.Socket.prototype as unknown as { send: (...args: unknown[]) => void };
    const send = sockets.send;
    const sent = { before: 0, after: 0 };
    let failed = false;
    sockets.send = function (this: dgram.Socket, ...args: unknown[]) {
      sent[failed ? "after" : "before"]++;
      return send.apply(this, args);
    };
    try {
      const err = await hard.connect().then(
        () => undefined,
        (e: DirectChannelError) => {
          failed = true;
          return e;
        },
      );
      expect(err?.code).to.equal("NO_DIRECT_PATH");
      // A round hands over one batch per turn of the loop: 17 turns finish one of 1,028 probes.
      for (let turn = 0; turn < 40; turn++) await new Promise(setImmediate);
      expect(sent.before, "the search failed inside its first round")
        .to.be.greaterThan(0)
        .and.lessThan(4 + 256 * 4);
      // Before, the round went on: every probe left was sealed and handed to a socket the failure had closed.
      expect(sent.after).to.equal(0);
    } finally {
      sockets.send = send;
    }
  });

  it("on the hard side as provider: probes the consumer's tunnel port from every socket, and takes the one its tunnel spray reached", async function () {
    const keys = channelKeys(crypto.randomBytes(16).toString("hex"), newSecret(), newSecret());
    const [ps, cs, tunnel] = [await bound(), await bound(), await bound()];
    const provider = new DirectChannel({
      role: "provider",
      keys,
      socket: ps,
      allowLoopback: true,
      hardSockets: 8,
      peerTunnelPort: tunnel.address().port,
      own: { mapping: "endpoint-dependent", candidates: [{ kind: "reflexive", address: "127.0.0.1", port: ps.address().port }] },
      peer: { mapping: "endpoint-independent", candidates: [{ kind: "reflexive", address: "127.0.0.1", port: cs.address().port }] },
    });
    open.push(provider);
    expect(provider.plan.kind).to.equal("hard-side");
    // The consumer's tunnel (wireguard-go's socket) hears the provider's probing sockets.
    const probers = new Set<number>();
    tunnel.on("message", (_m, r) => probers.add(r.port));
    provider.connect().catch(() => undefined);
    await until(() => probers.size === 8, "a probe from each of the provider's 8 sockets at the tunnel's port");
    const [winner, other] = [...probers];
    const probe = (key: typeof keys.consumerTunnelToProvider, seq: bigint) =>
      sealPacket(key, PacketType.probe, seq, Buffer.concat([crypto.randomBytes(8), Buffer.of(2)]));
    const punched = provider.tunnelPunch(3000);
    // A probe sealed with another direction's key is no tunnel spray; the consumer's tunnel key is.
    tunnel.send(probe(keys.providerTunnelToConsumer, 0n), other, "127.0.0.1");
    tunnel.send(probe(keys.consumerTunnelToProvider, 1n), winner, "127.0.0.1");
    expect(await punched).to.deep.equal({ localPort: winner, address: "127.0.0.1", port: tunnel.address().port });
    // The channel still checks: its other sockets probe on, the winner (now the tunnel's) no more.
    probers.clear();
    await until(() => probers.size === 7, "the 7 other sockets probing on after the winner went to the tunnel");
    expect(probers.has(winner)).to.equal(false);
    for (const s of [cs, tunnel]) s.close();
  });

  describe("when the consumer nominates a pair", function () {
    /** A consumer and a provider whose internet candidate (`reflexive`) answers; the provider also names a LAN address that never does. */
    async function nominating(o: { providerLan: string; consumerLan: string }) {
      const keys = channelKeys(crypto.randomBytes(16).toString("hex"), newSecret(), newSecret());
      const [cs, ps, silent] = [await bound(), await bound(), await bound()];
      // A long wait for a better pair: a nomination that waits for it cannot come before the deadline.
      const common = { keys, allowLoopback: true, nominateAfterMs: 60_000, deadlineMs: 1500 };
      const consumer = new DirectChannel({
        ...common,
        role: "consumer",
        socket: cs,
        own: { mapping: "endpoint-independent", candidates: [{ kind: "local", address: o.consumerLan, port: cs.address().port }] },
        peer: {
          mapping: "endpoint-independent",
          candidates: [
            { kind: "local", address: o.providerLan, port: silent.address().port },
            { kind: "reflexive", address: "127.0.0.1", port: ps.address().port },
          ],
        },
      });
      const provider = new DirectChannel({
        ...common,
        role: "provider",
        socket: ps,
        own: { mapping: "endpoint-independent", candidates: [{ kind: "reflexive", address: "127.0.0.1", port: ps.address().port }] },
        peer: { mapping: "endpoint-independent", candidates: [{ kind: "reflexive", address: "127.0.0.1", port: cs.address().port }] },
      });
      open.push(consumer, provider);
      provider.connect().catch(() => undefined);
      return { consumer, silent };
    }

    it("nominates the first pair that answered at once when the provider's LAN is not ours (no better pair can answer)", async function () {
      // The provider's LAN address is on another /24 than ours (another home's LAN): it cannot answer.
      const { consumer, silent } = await nominating({ consumerLan: "127.0.0.1", providerLan: "127.0.5.1" });
      expect(consumer.plan.sharedLan).to.equal(false);
      const path = await consumer.connect();
      expect(path).to.deep.include({ kind: "reflexive", address: "127.0.0.1" });
      silent.close();
    });

    it("still waits for a better pair when the offers share a LAN (its local pair may answer yet)", async function () {
      const { consumer, silent } = await nominating({ consumerLan: "127.0.0.1", providerLan: "127.0.0.1" });
      silent.close(); // the LAN pair never answers
      expect(consumer.plan.sharedLan).to.equal(true);
      const err = await rejectionOf(consumer.connect());
      expect((err as DirectChannelError).code).to.equal("NO_DIRECT_PATH");
      expect((err as Error).message).to.match(/one answered but the nomination did not get through/);
    });
  });

  it("marks the path lost when the peer goes silent, and takes it up again when the peer answers (the re-punch)", async function () {
    // The path runs through a relay the test can cut, as a router that lost its mappings would.
    const keys = channelKeys(crypto.randomBytes(16).toString("hex"), newSecret(), newSecret());
    const [cs, ps, relay] = [await bound(), await bound(), await bound()];
    let cut = false;
    relay.on("message", (msg, from) => {
      if (cut) return;
      relay.send(msg, from.port === cs.address().port ? ps.address().port : cs.address().port, "127.0.0.1");
    });
    const via: Candidate[] = [{ kind: "reflexive", address: "127.0.0.1", port: relay.address().port }];
    const common = { keys, allowLoopback: true, keepaliveMs: 100 };
    const consumer = new DirectChannel({
      ...common,
      role: "consumer",
      socket: cs,
      own: { mapping: "endpoint-independent", candidates: [] },
      peer: { mapping: "endpoint-independent", candidates: via },
    });
    const provider = new DirectChannel({
      ...common,
      role: "provider",
      socket: ps,
      own: { mapping: "endpoint-independent", candidates: [] },
      peer: { mapping: "endpoint-independent", candidates: via },
    });
    open.push(consumer, provider);
    await Promise.all([consumer.connect(), provider.connect()]);
    cut = true;
    await Promise.all([once(consumer, "lost"), once(provider, "lost")]);
    expect(consumer.up || provider.up).to.equal(false);
    cut = false;
    await Promise.all([once(consumer, "up"), once(provider, "up")]);
    const got = once(provider, "frame");
    expect(consumer.sendFrame("notify", 0, Buffer.from("still here"))).to.equal(true);
    expect(Buffer.from((await got)[0].bytes).toString()).to.equal("still here");
    relay.close();
  });
});
