import os from "node:os";
import { connect, type NatsConnection } from "nats";
import { Broker } from "../../node/broker/broker";
import { Dialogs, newInbox } from "../../node/dialog/dialogs";
import type { IdentityKey } from "../../node/identity/key";
import { verifyBytes } from "../../node/identity/protocol-signature";
import { secp256k1 } from "../../node/identity/secp256k1";
import { signProposal } from "../../node/proposal/proposal";
import { NoopConsumerService, NoopProviderService } from "../../node/services/noop/noop";
import { ConsumerSessions } from "../../node/session/consumer";
import { ProviderSessions } from "../../node/session/provider";
import { TestNetwork } from "../lib/test-network";
import { makeProposal } from "../lib/proposals";
import { nowMs, round, summarize, writeResults } from "./stats";

/** The JSON a dialog signs: the same fields and sizes as a real message (fresh id and time each). */
function messageBytes(from: IdentityKey, to: IdentityKey, kind: string, i: number, reply: string): Buffer {
  const id = i.toString(16).padStart(32, "0");
  const body = { sessionId: "ab".repeat(16) };
  return Buffer.from(
    JSON.stringify({ v: 1, kind, type: "bench.echo", from: from.address, to: to.address, dialog: "ab".repeat(16), id, ts: Date.now(), reply, body }),
  );
}

/** One way to make a round trip, timed sample by sample. */
type RoundTrip = (i: number) => Promise<unknown>;

/**
 * The floor of a dialog round trip: a plain NATS request/reply between two connections (as two
 * nodes have) that carries what a dialog cannot do without — the request signed by its sender and
 * verified by the receiver, the response signed and verified the same way — with the node's own
 * signature code, and nothing else (no envelope, schema, registry, replay or handler).
 */
async function signedRoundTrip(requester: NatsConnection, responder: NatsConnection, consumer: IdentityKey, provider: IdentityKey): Promise<RoundTrip> {
  const subject = newInbox();
  responder.subscribe(subject, {
    callback: (err, m) => {
      if (err) return;
      if (!verifyBytes(consumer.publicKey, m.data.subarray(64), m.data.subarray(0, 64))) throw new Error("the floor's request does not verify");
      const reply = messageBytes(provider, consumer, "response", 0, subject);
      m.respond(Buffer.concat([provider.signProtocol(reply), reply]));
    },
  });
  await responder.flush();
  const inbox = newInbox();
  return async (i) => {
    const request = messageBytes(consumer, provider, "request", i, inbox);
    const reply = (await requester.request(subject, Buffer.concat([consumer.signProtocol(request), request]), { timeout: 5000 })).data;
    if (!verifyBytes(provider.publicKey, reply.subarray(64), reply.subarray(0, 64))) throw new Error("the floor's response does not verify");
  };
}

/**
 * Runs the round trips interleaved, `block` of each in turn, so that a change in the machine's
 * load (it is shared) falls on all of them alike; the first `warm` of each are not counted.
 */
async function interleaved(trips: RoundTrip[], n: number, warm = 100, block = 100): Promise<number[][]> {
  const samples = trips.map(() => [] as number[]);
  for (let done = 0; done < n + warm; done += block) {
    for (const [k, trip] of trips.entries()) {
      for (let i = done; i < Math.min(done + block, n + warm); i++) {
        const t = nowMs();
        await trip(i);
        if (i >= warm) samples[k].push(nowMs() - t);
      }
    }
  }
  return samples;
}

/**
 * Dialog round trip (signed + encrypted request and response) against a plain NATS request/reply
 * and against the sign+verify floor (the same request/reply with both messages signed and
 * verified), interleaved in the same run, and session negotiation (create → accepted).
 */
export async function benchDialog(): Promise<void> {
  const N = Number(process.env.BENCH_N ?? 2000);
  const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 200);
  const net = await new TestNetwork().start();
  try {
    const [provider, consumer] = [await net.registeredIdentity(), await net.registeredIdentity()];

    // Baseline: plain NATS request/reply, same payload size class, on a subject a node may use.
    const [nc, nc2] = await Promise.all([connect({ servers: net.nats.url }), connect({ servers: net.nats.url })]);
    const echo = newInbox();
    nc2.subscribe(echo, { callback: (err, m) => err || m.respond(m.data) });
    await nc2.flush();
    const payload = Buffer.from(JSON.stringify({ sessionId: "ab".repeat(16) }));

    const pb = new Broker({ servers: [net.nats.url] });
    const cb = new Broker({ servers: [net.nats.url] });
    await Promise.all([pb.start(), cb.start()]);
    const pd = new Dialogs({ broker: pb, key: provider, directory: net.registry });
    const cd = new Dialogs({ broker: cb, key: consumer, directory: net.registry });
    pd.onDialog((d) => d.handle("bench.echo", (body) => body));
    await pd.start();
    await cd.start();
    const dialog = await cd.open(provider.address, pd.subject);
    const [plain, floor, sealed] = await interleaved(
      [
        () => nc.request(echo, payload, { timeout: 5000 }),
        await signedRoundTrip(nc, nc2, consumer, provider),
        () => dialog.request("bench.echo", { sessionId: "ab".repeat(16) }),
      ],
      N,
    );
    pd.stop();

    // Session negotiation: create → accepted, then torn down.
    const providerDialogs = new Dialogs({ broker: pb, key: provider, directory: net.registry });
    const proposal = makeProposal(provider);
    const ps = new ProviderSessions({
      dialogs: providerDialogs,
      services: new Map([["noop", new NoopProviderService()]]),
      currentProposal: () => proposal,
      maxSessions: SESSIONS + 10,
    });
    await providerDialogs.start();
    ps.start();
    const cs = new ConsumerSessions(cd);
    const signed = signProposal(provider, proposal);
    const negotiation: number[] = [];
    const connectTotal: number[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const session = await cs.connect({ proposal: signed, service: new NoopConsumerService() });
      negotiation.push(session.timings.accepted - session.timings.started);
      connectTotal.push(session.timings.confirmed - session.timings.started);
      await session.destroy();
    }
    await ps.stop();
    providerDialogs.stop();
    cd.stop();
    await Promise.all([pb.stop(), cb.stop(), nc.drain(), nc2.drain()]);

    const p = summarize(plain);
    const f = summarize(floor);
    const d = summarize(sealed);
    const toFloor = { p50: round(d.p50 / f.p50, 2), p99: round(d.p99 / f.p99, 2) };
    const neg = summarize(negotiation);
    const total = summarize(connectTotal);
    const ratio = { p50: round(d.p50 / p.p50, 2), p99: round(d.p99 / p.p99, 2) };
    writeResults(
      "dialog",
      {
        secp256k1: secp256k1.implementation,
        loadAverage: os.loadavg().map((l) => round(l, 2)),
        plainNatsRoundTripMs: p,
        signVerifyFloorMs: f,
        dialogRoundTripMs: d,
        ratio,
        ratioToFloor: toFloor,
        sessionCreateToAcceptedMs: neg,
        sessionCreateToConfirmedMs: total,
        target: "dialog p50 ≤ 1.3× the sign+verify floor",
      },
      [
        ["measure", "n", "p50 ms", "p99 ms", "mean ms"],
        ["plain NATS request/reply", String(p.n), String(p.p50), String(p.p99), String(p.mean)],
        [`sign+verify floor (request/reply, both signed and verified; ${secp256k1.implementation})`, String(f.n), String(f.p50), String(f.p99), String(f.mean)],
        ["dialog request/response (signed+sealed)", String(d.n), String(d.p50), String(d.p99), String(d.mean)],
        ["ratio dialog / plain", "", `${ratio.p50}×`, `${ratio.p99}×`, ""],
        ["ratio dialog / floor (aim p50 ≤ 1.3×)", "", `${toFloor.p50}×`, `${toFloor.p99}×`, ""],
        ["session create → accepted", String(neg.n), String(neg.p50), String(neg.p99), String(neg.mean)],
        ["session create → confirmed (no-op tunnel)", String(total.n), String(total.p50), String(total.p99), String(total.mean)],
      ],
    );
  } finally {
    await net.stop();
  }
}
