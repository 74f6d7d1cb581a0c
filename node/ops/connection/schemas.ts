import { Type } from "@sinclair/typebox";
import { IP_TYPES, ProposalSchema } from "../../proposal/proposal";
import { DEFAULT_SERVICE_TYPE, SERVICE_TYPES } from "../../services/catalog";
import { Address, Myst, Strict, Wei } from "../../values/schemas";

/** The schemas of the consumer's routes: proposals, the connection, its statistics. */

/** Responses may grow fields; clients ignore what they do not know. */
const Open = { additionalProperties: true } as const;

/**
 * One proposal filter, one spelling: camelCase, prices in MYST. `GET /v1/proposals` takes it as its
 * query, `PUT /v1/connection` in its body; the route makes one `ProposalFilter` of it (filter.ts).
 */
export const FilterFields = {
  country: Type.Optional(Type.String({ pattern: "^[A-Za-z]{2}$", description: "ISO 3166-1 alpha-2" })),
  ipType: Type.Optional(Type.Union(IP_TYPES.map((t) => Type.Literal(t)))),
  ipv6: Type.Optional(
    Type.Boolean({
      description: "only providers whose tunnel carries IPv6 (when connecting, IPv6 then goes through the tunnel; otherwise it is blocked while connected)",
    }),
  ),
  metering: Type.Optional(Type.Union([Type.Literal("hour"), Type.Literal("gib")], { description: "only proposals that charge by this unit" })),
  accessPolicy: Type.Optional(Type.Union([Type.Literal("open"), Type.Literal("allowlist")], { description: "the provider's access policy" })),
  maxPricePerHour: Type.Optional({ ...Myst, description: 'the most per hour, in MYST (e.g. "0.05")' }),
  maxPricePerGiB: Type.Optional({ ...Myst, description: "the most per GiB, in MYST" }),
  minBandwidthMbps: Type.Optional(Type.Number({ minimum: 0, description: "Mbit/s" })),
  minQuality: Type.Optional(
    Type.Number({
      minimum: 0,
      maximum: 100,
      description: "discovery's quality score, 0–100: leave out rated providers below it (unrated ones stay; docs/quality.md)",
    }),
  ),
  sort: Type.Optional(
    Type.Literal("quality", { description: "best quality score first (unrated providers at the neutral 50); a connect always picks this way" }),
  ),
};

/** The old spelling of `GET /v1/proposals` (snake_case, prices in wei): deprecated, removed in the next version. */
const deprecated = (use: string) => `deprecated: use ${use}; removed in the next version`;
const Deprecated = { deprecated: true } as const;
export const DeprecatedFilterFields = {
  service_type: Type.Optional(Type.String({ ...Deprecated, description: deprecated("serviceType") })),
  ip_type: Type.Optional(Type.String({ ...Deprecated, description: deprecated("ipType") })),
  access_policy: Type.Optional(Type.String({ ...Deprecated, description: deprecated("accessPolicy") })),
  max_price_per_hour: Type.Optional({ ...Wei, ...Deprecated, description: deprecated("maxPricePerHour (MYST)") }),
  max_price_per_gib: Type.Optional({ ...Wei, ...Deprecated, description: deprecated("maxPricePerGiB (MYST)") }),
  min_bandwidth: Type.Optional(Type.String({ ...Deprecated, description: deprecated("minBandwidthMbps") })),
  provider_id: Type.Optional(Type.Array(Type.String(), { ...Deprecated, description: deprecated("providerId") })),
};

export const ProposalQuery = Type.Object(
  {
    serviceType: Type.Optional(Type.String({ pattern: "^[a-z][a-z0-9-]{0,31}$" })),
    ...FilterFields,
    providerId: Type.Optional(Type.Array(Address, { maxItems: 100, description: "only these providers (repeat the key)" })),
    ...DeprecatedFilterFields,
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
    cursor: Type.Optional(Type.String({ maxLength: 256 })),
  },
  Strict,
);
export const ProposalPage = Type.Object({
  proposals: Type.Array(ProposalSchema),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
  rejected: Type.Integer({ description: "proposals discovery returned that failed verification and were left out" }),
});

export const ConnectBody = Type.Object(
  {
    provider: Type.Optional(Address),
    serviceType: Type.Union(
      SERVICE_TYPES.map((t) => Type.Literal(t)),
      { default: DEFAULT_SERVICE_TYPE },
    ),
    ...FilterFields,
    netns: Type.Optional(
      Type.String({ description: "run the tunnel in this network namespace (tests, demo); the kill switch and resolver settings apply there" }),
    ),
    killSwitch: Type.Optional(Type.Boolean({ default: true, description: "keep traffic blocked when the tunnel drops, until disconnect (state `blocked`)" })),
    allowLan: Type.Optional(Type.Boolean({ default: false, description: "keep the local network reachable while connected" })),
    reconnect: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          "when the session ends by itself, negotiate a new one (the same provider first, then the next match for the same filters) while the kill switch holds: 5 attempts after 1, 2, 4, 8 and 16 s, then the kill switch keeps blocking until disconnect; not with `killSwitch: false`",
      }),
    ),
    viaRelay: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          "through a relay (a public node selling `relay`, paid from the same vault) even when a direct path may exist: for networks whose direct paths are unreliable, and to measure (docs/relay.md)",
      }),
    ),
    confine: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          "confined apps: the tunnel carries only a fresh network namespace's traffic (named in `confined.netns`: run apps there with `ip netns exec`, or use `myst run`); the consumer's own routes, resolver and firewall stay untouched; the namespace has no route while the tunnel is down and goes at disconnect",
      }),
    ),
    listen: Type.Optional(
      Type.String({
        maxLength: 64,
        description:
          "the proxy service: where the local SOCKS5 and HTTP proxy listens (`host:port`, default 127.0.0.1:1080; port 0: any free one); no root, no tunnel. While another connection is up it runs alongside it",
      }),
    ),
  },
  Strict,
);
export const DisconnectQuery = Type.Object(
  {
    sessionId: Type.Optional(
      Type.String({ maxLength: 128, description: "end only this connection beside the current one (a proxy's); default: every connection" }),
    ),
  },
  Strict,
);
const Phases = Type.Object({ discovery: Type.Number(), negotiation: Type.Number(), tunnel: Type.Number(), confirm: Type.Number() });
export const ConnectionView = Type.Object(
  {
    state: Type.Union(
      [Type.Literal("connected"), Type.Literal("disconnected"), Type.Literal("connecting"), Type.Literal("blocked"), Type.Literal("reconnecting")],
      {
        description:
          "`blocked`: the tunnel is down and the kill switch holds (nothing leaves until disconnect); `reconnecting`: the same, while a new session is negotiated (`reconnect`)",
      },
    ),
    sessionId: Type.Optional(Type.String()),
    provider: Type.Optional(Address),
    serviceType: Type.Optional(Type.String()),
    country: Type.Optional(Type.String()),
    ipType: Type.Optional(Type.String()),
    pricePerHourWei: Type.Optional(Wei),
    pricePerGiBWei: Type.Optional(Wei),
    since: Type.Optional(Type.String()),
    durationSeconds: Type.Optional(Type.Integer()),
    bytesIn: Type.Optional(Type.Integer()),
    bytesOut: Type.Optional(Type.Integer()),
    listen: Type.Optional(Type.String({ description: "the proxy service: where this connection's local SOCKS5 and HTTP proxy listens" })),
    phasesMs: Type.Optional(Phases),
    path: Type.Optional(
      Type.Object(
        {
          tunnel: Type.Union([Type.Literal("public"), Type.Literal("mapped"), Type.Literal("local"), Type.Literal("punched"), Type.Literal("relayed")], {
            description:
              "how the tunnel reaches the provider: its own public address, a port its router maps, the shared LAN, a hole punched through both routers, or through a relay the consumer pays",
          }),
          channel: Type.Union([Type.Literal("direct"), Type.Literal("broker")], {
            description: "what carries the session's messages now: the direct channel between the two nodes, or the broker",
          }),
          direct: Type.Optional(
            Type.Object({
              kind: Type.String({ description: "which of the provider's candidates answered: local, mapped, public, reflexive or punched" }),
              address: Type.String(),
              port: Type.Integer(),
              tookMs: Type.Integer({ description: "from the first probe to the path chosen" }),
            }),
          ),
          relayBytes: Type.Optional(Type.Integer({ description: "bytes between this node and the relay (TURN, both ways), as this node counts them" })),
          relayPromisedWei: Type.Optional(Wei),
          relay: Type.Optional(
            Type.Object(
              {
                provider: Type.String({ description: "the relay's identity (it is paid from the same vault)" }),
                address: Type.String({ description: "its TURN server" }),
                port: Type.Integer(),
                transport: Type.Union([Type.Literal("udp"), Type.Literal("tcp"), Type.Literal("tls")], {
                  description: "how this node reaches the relay: UDP, TCP, or TURN over TLS (TCP with the relay's pinned certificate)",
                }),
              },
              { description: "relayed: through which relay (docs/relay.md)" },
            ),
          ),
        },
        { description: "the session's path (docs/direct-channel.md)" },
      ),
    ),
    promisedWei: Type.Optional(Wei),
    invoices: Type.Optional(Type.Integer()),
    fellOver: Type.Optional(
      Type.Array(Type.Object({ provider: Type.String(), stage: Type.String(), message: Type.String() }), {
        description: "candidates tried first in the same connect (by filters) and the stage each failed at (docs/quality.md)",
      }),
    ),
    endReason: Type.Optional(Type.String()),
    protection: Type.Optional(
      Type.Object({
        state: Type.Union([Type.Literal("off"), Type.Literal("protecting"), Type.Literal("blocked")]),
        killSwitch: Type.Boolean(),
        allowLan: Type.Boolean(),
        message: Type.String(),
      }),
    ),
    paymentRefused: Type.Optional(
      Type.Object(
        {
          code: Type.String({ description: "the provider's code: STORE_FULL, STORE_READ_ONLY, STORE_FAILED, PROMISE_…; PEER_ERROR for any other" }),
          message: Type.String(),
        },
        { description: "the provider did not acknowledge the last promise, and why (until it acknowledges one again)" },
      ),
    ),
    lastFailure: Type.Optional(
      Type.Object(
        {
          at: Type.String(),
          code: Type.String({ description: "our code: SESSION_REFUSED when the provider said no, NO_PROPOSAL, DIALOG_TIMEOUT…" }),
          refusal: Type.Optional(
            Type.String({ description: "the provider's refusal code: ACCESS_DENIED, OUTSIDE_SCHEDULE, TRAFFIC_CAP, PAYMENT_NOT_COVERED…" }),
          ),
          message: Type.String({ description: "in words, the provider's own included" }),
        },
        { description: "why the last connect failed (kept until one succeeds)" },
      ),
    ),
    leftBehind: Type.Optional(
      Type.Object(
        {
          pid: Type.Integer({ description: "the myst that made it, no longer running" }),
          netns: Type.Optional(Type.String()),
          killSwitch: Type.Boolean({ description: "true: all traffic is blocked; false: only the resolver settings were left" }),
          message: Type.String(),
        },
        {
          description:
            "With no myst running: what one that ended without disconnecting (a crash, SIGKILL) left in force; `myst disconnect` (or the next start) removes it",
        },
      ),
    ),
    reconnect: Type.Optional(
      Type.Object(
        {
          state: Type.Union([Type.Literal("reconnecting"), Type.Literal("connected"), Type.Literal("gave-up")]),
          attempts: Type.Integer({ description: "attempts made so far" }),
          maxAttempts: Type.Integer(),
          since: Type.String({ description: "when the session that started this reconnect ended" }),
          lastError: Type.String({ description: "why that session ended, then why the last attempt failed" }),
          nextAttemptAt: Type.Optional(Type.String()),
          provider: Type.Optional(Address),
        },
        { description: "the reconnect in progress, or the last one of this connection (with `reconnect: true`)" },
      ),
    ),
    beside: Type.Optional(
      Type.Array(
        Type.Object({
          sessionId: Type.String(),
          provider: Address,
          listen: Type.String(),
          bytesIn: Type.Integer(),
          bytesOut: Type.Integer(),
          promisedWei: Wei,
        }),
        { description: "proxy connections running beside this one, each on its own local port (`listen`)" },
      ),
    ),
    confined: Type.Optional(
      Type.Object(
        {
          netns: Type.String({ description: "the confined network namespace" }),
          address: Type.String({ description: "its IPv4 address on the veth to the consumer's namespace" }),
          tunnel: Type.Union([Type.Literal("up"), Type.Literal("down")]),
          message: Type.String(),
        },
        { description: "with `confine: true`: the namespace whose only route is the tunnel" },
      ),
    ),
    recovered: Type.Optional(
      Type.Array(Type.String(), {
        description: "disconnect with no connection: what a myst that died while connected left behind (kill switch, confined namespace) and this removed",
      }),
    ),
  },
  Open,
);
export const Statistics = Type.Object({
  state: Type.String(),
  sessionId: Type.String(),
  bytesIn: Type.Integer(),
  bytesOut: Type.Integer(),
  durationSeconds: Type.Integer(),
  promisedWei: Wei,
  invoices: Type.Integer(),
  phasesMs: Phases,
});
