import { connect } from "nats";
import { Broker } from "../../node/broker/broker";
import { Dialogs } from "../../node/dialog/dialogs";
import { signProposal } from "../../node/proposal/proposal";
import { NoopConsumerService, NoopProviderService } from "../../node/services/noop/noop";
import { ConsumerSessions } from "../../node/session/consumer";
import { ProviderSessions } from "../../node/session/provider";
import { TestNetwork } from "../lib/test-network";
import { makeProposal } from "../lib/proposals";
import { nowMs, round, summarize, writeResults } from "./stats";

/**
 * Dialog round trip (signed + encrypted request and response) against a plain NATS request/reply
 * on the same server in the same run, and session negotiation (create → accepted).
 */
export async function benchDialog(): Promise<void> {
  const N = Number(process.env.BENCH_N ?? 2000);
  const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 200);
  const net = await new TestNetwork().start();
  try {
    const [provider, consumer] = [await net.registeredIdentity(), await net.registeredIdentity()];

    // Baseline: plain NATS request/reply, same payload size class.
    const nc = await connect({ servers: net.nats.url });
    nc.subscribe("bench.echo", { callback: (_e, m) => m.respond(m.data) });
    const payload = Buffer.from(JSON.stringify({ sessionId: "ab".repeat(16) }));
    const plain: number[] = [];
    for (let i = 0; i < N + 100; i++) {
      const t = nowMs();
      await nc.request("bench.echo", payload, { timeout: 5000 });
      if (i >= 100) plain.push(nowMs() - t);
    }

    const pb = new Broker({ servers: [net.nats.url] });
    const cb = new Broker({ servers: [net.nats.url] });
    await Promise.all([pb.start(), cb.start()]);
    const pd = new Dialogs({ broker: pb, key: provider, directory: net.registry });
    const cd = new Dialogs({ broker: cb, key: consumer, directory: net.registry });
    pd.onDialog((d) => d.handle("bench.echo", (body) => body));
    await pd.start();
    await cd.start();
    const dialog = await cd.open(provider.address, pd.subject);
    const sealed: number[] = [];
    for (let i = 0; i < N + 100; i++) {
      const t = nowMs();
      await dialog.request("bench.echo", { sessionId: "ab".repeat(16) });
      if (i >= 100) sealed.push(nowMs() - t);
    }
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
    await Promise.all([pb.stop(), cb.stop(), nc.drain()]);

    const p = summarize(plain);
    const d = summarize(sealed);
    const neg = summarize(negotiation);
    const total = summarize(connectTotal);
    const ratio = { p50: round(d.p50 / p.p50, 2), p99: round(d.p99 / p.p99, 2) };
    writeResults(
      "dialog",
      {
        plainNatsRoundTripMs: p,
        dialogRoundTripMs: d,
        ratio,
        sessionCreateToAcceptedMs: neg,
        sessionCreateToConfirmedMs: total,
        target: "dialog p50 ≤ 10× plain",
      },
      [
        ["measure", "n", "p50 ms", "p99 ms", "mean ms"],
        ["plain NATS request/reply", String(p.n), String(p.p50), String(p.p99), String(p.mean)],
        ["dialog request/response (signed+sealed)", String(d.n), String(d.p50), String(d.p99), String(d.mean)],
        ["ratio dialog / plain", "", `${ratio.p50}×`, `${ratio.p99}×`, ""],
        ["session create → accepted", String(neg.n), String(neg.p50), String(neg.p99), String(neg.mean)],
        ["session create → confirmed (no-op tunnel)", String(total.n), String(total.p50), String(total.p99), String(total.mean)],
      ],
    );
  } finally {
    await net.stop();
  }
}
