import { Type } from "@fastify/type-provider-typebox";
import { Address, EmptyBody, SessionPath, Strict, Wei } from "../../values/schemas";
import { ConnectionView } from "../connection/schemas";
import { Earnings } from "../earnings/schemas";
import { ServiceView } from "../services/schemas";

/** The schemas of the dashboard's routes (login, events, the reads the page needs). */

export { EmptyBody };
export const LoginLink = Type.Object({
  url: Type.String({ description: "open it in a browser on this machine; the code after #login= is spent on first use" }),
  expiresAt: Type.String(),
});
export const LoginBody = Type.Object({ code: Type.String({ minLength: 16, maxLength: 128, pattern: "^[A-Za-z0-9_-]+$" }) }, Strict);
export const LoginResult = Type.Object({ identity: Address });

const UtcOffset = Type.Integer({
  minimum: -840,
  maximum: 840,
  default: 0,
  description: "the viewer's time zone, minutes east of UTC (days start at its midnight)",
});
const Days = Type.Integer({ minimum: 1, maximum: 90, default: 14, description: "how many days, up to today" });

/** The topics of the event stream. */
export const TOPICS = ["provider", "earnings", "connection", "health"] as const;
export type Topic = (typeof TOPICS)[number];
export const EventsQuery = Type.Object(
  {
    utcOffsetMinutes: UtcOffset,
    days: Days,
    topics: Type.Optional(
      Type.Array(Type.Union(TOPICS.map((t) => Type.Literal(t))), {
        description: "only these topics (repeat the key; default all): `myst connect` follows `connection` alone",
      }),
    ),
  },
  Strict,
);
export const DailyQuery = Type.Object({ utcOffsetMinutes: UtcOffset, days: Days }, Strict);

export const LiveSession = Type.Object({
  id: Type.String(),
  consumer: Address,
  serviceType: Type.String(),
  state: Type.String(),
  startedAt: Type.String(),
  durationSeconds: Type.Integer(),
  bytesIn: Type.Integer(),
  bytesOut: Type.Integer(),
  earnedWei: Wei,
  path: Type.Optional(SessionPath),
});
export const LiveSessions = Type.Object({ sessions: Type.Array(LiveSession) });

export const DayEarnings = Type.Object({ date: Type.String({ description: "YYYY-MM-DD" }), earnedWei: Wei });
export const DailyEarnings = Type.Object({
  utcOffsetMinutes: Type.Integer(),
  days: Type.Array(DayEarnings),
  gasFeesWei: Type.String({
    description: "gas paid for mined settlements, in wei of the chain's coin (ETH), not MYST (relayer fees in MYST are `feesWei` of /v1/earnings)",
  }),
  settlements: Type.Integer({ description: "mined settlements" }),
});

const Check = Type.Object({ ok: Type.Boolean(), detail: Type.String() });
export const SessionNote = Type.Object({
  at: Type.String(),
  kind: Type.Union([Type.Literal("refused"), Type.Literal("ended")]),
  consumer: Address,
  sessionId: Type.Optional(Type.String()),
  serviceType: Type.Optional(Type.String()),
  code: Type.Optional(Type.String()),
  reason: Type.String(),
});
export const NodeHealth = Type.Object({
  checkedAt: Type.String(),
  nats: Check,
  chain: Type.Object({ ok: Type.Boolean(), detail: Type.String(), block: Type.Optional(Type.Integer()) }),
  discovery: Check,
  registration: Check,
  store: Type.Object(
    { ok: Type.Boolean(), detail: Type.String() },
    {
      description:
        "whether the node can write its state in its data dir: not ok while the disk is full or read-only (promises are then refused with STORE_FULL / STORE_READ_ONLY), with the file and the cause",
    },
  ),
  visibility: Type.Array(
    Type.Object({
      serviceType: Type.String(),
      announcement: Type.String(),
      listed: Type.Union([Type.Boolean(), Type.Null()], { description: "null: discovery could not be asked" }),
      reasons: Type.Array(Type.String(), { description: "why it is not listed (empty when it is)" }),
    }),
  ),
  notes: Type.Array(SessionNote, { description: "the last sessions refused or ended, newest first, with the reason" }),
});

/** The event stream's topics: each the shape of its REST routes (what the dashboard renders). */
export const ProviderTopic = Type.Object({ sessions: Type.Array(LiveSession), services: Type.Array(ServiceView) });
export const EarningsTopic = Type.Intersect([
  Earnings,
  Type.Object({
    daily: Type.Array(DayEarnings),
    gasFeesWei: Type.String({ description: "gas paid for mined settlements, ETH wei" }),
    settlementsMined: Type.Integer(),
  }),
]);
export const HealthTopic = NodeHealth;
export const ConnectionTopic = ConnectionView;

export const VisibleIpQuery = Type.Object(
  { netns: Type.Optional(Type.String({ maxLength: 64, description: "ask from inside this network namespace (where the tunnel runs: tests, demo)" })) },
  Strict,
);
export const VisibleIp = Type.Object({ ip: Type.String(), url: Type.String(), netns: Type.Optional(Type.String()), checkedAt: Type.String() });

export const EVENTS_DESCRIPTION = [
  "A `text/event-stream` that sends each topic's whole current value at once, then again whenever it changes",
  "(checked every second, and at once when the connection changes; health every 5 s; the earnings totals at once after a settlement, at most every 3 s for new promises). Events: `provider` {sessions (as /v1/provider/sessions), services (as /v1/services)},",
  "`earnings` (as /v1/earnings, plus `daily`, `gasFeesWei`, `settlementsMined`), `connection` (as /v1/connection),",
  "`health` (as /v1/node/health); `topics` limits the stream to some. Each event has an `id`; a `: keepalive` comment every 15 s. Browsers follow it",
  "with `new EventSource('/v1/events')` (the session cookie); scripts with the bearer token:",
  "`curl -N -H 'Authorization: Bearer …' http://127.0.0.1:4449/v1/events`.",
].join(" ");
