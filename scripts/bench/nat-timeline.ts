// One connect's timeline in the NAT benchmark (`BENCH_NAT_TIMELINE=1 npm run bench -- nat`): both daemons log at
// info, and each event both nodes logged during a connect is placed in ms after the `myst connect` process started
// (the nodes share the machine's clock: every namespace has the same one). What the phases of `connect --json` lump
// together as "tunnel" (the channel's checks, the tunnels' meeting, the provider's route, the handshake) is then seen
// in order, per cell, as p50 over the connects.
import { round, summarize } from "./stats";

/** Whether this run records timelines (the daemons then log at info: a little slower, so off by default). */
export const TIMELINE = () => process.env.BENCH_NAT_TIMELINE === "1";

/** The events worth placing (log messages of node/nat/direct, node/session and services/wireguard). */
const EVENTS = [
  "session accepted",
  "probing from the tunnel's port",
  "the probing sockets' first round handed over",
  "the tunnel spray's sender takes its datagrams",
  "the peer's tunnel port reached us",
  "the tunnel sends to the consumer from the probe that met its tunnel",
  "direct channel up",
  "WireGuard toward the consumer's direct route",
];

/** `{ "consumer: direct channel up": ms, … }`: each event's first time in this connect, after `sinceEpochMs`. */
export function connectTimeline(logs: { consumer: string; provider: string }, sinceEpochMs: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [who, text] of Object.entries(logs)) {
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      let entry: { time?: number; msg?: string; stagesMs?: Record<string, number> };
      try {
        entry = JSON.parse(line);
      } catch {
        continue;
      }
      if (typeof entry.time !== "number" || entry.time < sinceEpochMs || typeof entry.msg !== "string") continue;
      if (entry.msg === "connect stages" && entry.stagesMs) {
        // The consumer's own marks are relative to its connect's start; placed by the log line's own time.
        const last = Math.max(...Object.values(entry.stagesMs));
        for (const [stage, ms] of Object.entries(entry.stagesMs)) out[`consumer stage: ${stage}`] ??= entry.time - last + ms - sinceEpochMs;
        continue;
      }
      if (EVENTS.some((e) => entry.msg!.startsWith(e))) out[`${who}: ${entry.msg}`] ??= entry.time - sinceEpochMs;
      const { firstSentAt, probe } = entry as { firstSentAt?: number; probe?: number };
      // The tunnel spray's first datagram (the sender's own clock, told when it ends), and which probe of it met.
      if (typeof firstSentAt === "number") out[`${who}: the tunnel spray's first probe left`] ??= firstSentAt - sinceEpochMs;
      if (typeof probe === "number") out[`${who}: ${SEARCH_PROBES}`] ??= probe;
    }
  }
  // Per connect: from the spray's first probe to the provider hearing the one that met (the birthday search's own time).
  const [first, heard] = [out["consumer: the tunnel spray's first probe left"], out["provider: the peer's tunnel port reached us"]];
  if (first !== undefined && heard !== undefined) out[SEARCH_MS] = heard - first;
  return out;
}

/** Not times after the connect's start: the search's own length (ms, per connect), and the index of the spray's probe that met (a count). */
const SEARCH_MS = "search: first spray probe → provider heard it (ms)";
const SEARCH_PROBES = "search: index of the spray probe that met (a count, not ms)";

/** p50 of each event over a cell's connects, in the order of their p50. */
export function timelineP50(timelines: Record<string, number>[]): Record<string, { p50: number; n: number }> {
  const by = new Map<string, number[]>();
  for (const t of timelines) for (const [k, v] of Object.entries(t)) by.set(k, [...(by.get(k) ?? []), v]);
  const rows = [...by].map(([k, v]) => [k, { p50: round(summarize(v).p50, 0), n: v.length }] as const);
  return Object.fromEntries(rows.sort((a, b) => a[1].p50 - b[1].p50));
}
