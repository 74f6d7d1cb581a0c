import { Type, type Static } from "@fastify/type-provider-typebox";
import { IP_TYPES, ProposalSchema } from "../proposal/proposal";
import { SERVICE_TYPES } from "../services/catalog";
import { OpenVpnSettingsSchema } from "../services/openvpn/settings-schema";
import { ControlsSettingsSchema } from "../services/controls/settings-schema";
import { Address, Myst, Strict, Wei } from "../values/schemas";

/** The schemas of the daemon's REST API: request bodies refuse unknown fields; amounts are strings. */

export { Address, Myst, Strict, Wei };
/** Responses may grow fields; clients ignore what they do not know. */
const Open = { additionalProperties: true } as const;

export const AddressParams = Type.Object({ address: Address }, Strict);
export const ProviderParams = Type.Object({ provider: Address }, Strict);
export const ServiceTypeParams = Type.Object({ type: Type.String({ pattern: "^[a-z][a-z0-9-]{0,31}$" }) }, Strict);

export const Health = Type.Object({ status: Type.Literal("ok"), version: Type.String(), identity: Address, uptimeSeconds: Type.Integer() });

export const IdentityList = Type.Object({
  identities: Type.Array(
    Type.Object({
      address: Address,
      keystoreFile: Type.String(),
      node: Type.Boolean({ description: "the identity this daemon runs as" }),
      registered: Type.Boolean(),
    }),
  ),
});
export const NewIdentity = Type.Object({ passphrase: Type.String({ minLength: 1, description: "encrypts the keystore file; keep it with the file" }) }, Strict);
export const CreatedIdentity = Type.Object({ address: Address, keystoreFile: Type.String() });
export const Registration = Type.Object(
  {
    state: Type.Union([Type.Literal("unregistered"), Type.Literal("in-progress"), Type.Literal("registered"), Type.Literal("failed")]),
    identity: Address,
    beneficiary: Type.Optional(Address),
    txHash: Type.Optional(Type.String()),
    code: Type.Optional(Type.String()),
    reason: Type.Optional(Type.String()),
  },
  Open,
);
export const IdentityView = Type.Object({
  address: Address,
  node: Type.Boolean(),
  keystoreFile: Type.Union([Type.String(), Type.Null()]),
  balanceWei: Wei,
  registration: Registration,
});
export const RegisterBody = Type.Object(
  {
    passphrase: Type.Optional(Type.String({ minLength: 1, description: "needed unless it is the daemon's own identity" })),
    beneficiary: Type.Optional(Address),
  },
  Strict,
);

export const OfferBody = Type.Object(
  {
    country: Type.String({ pattern: "^[A-Za-z]{2}$", default: "ZZ", description: "where traffic exits, ISO 3166-1 alpha-2" }),
    city: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    asn: Type.Optional(Type.Integer({ minimum: 0 })),
    isp: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    ipType: Type.Union(
      IP_TYPES.map((t) => Type.Literal(t)),
      { default: "unknown" },
    ),
    pricePerHour: Type.Optional(Myst),
    pricePerGiB: Type.Optional(Myst),
    bandwidthMbps: Type.Number({
      minimum: 0,
      default: 100,
      description: "each session's bandwidth, Mbit/s each way: advertised in the proposal and enforced on tunnel services (0: no limit)",
    }),
  },
  Strict,
);
export const OpenVpnBody = OpenVpnSettingsSchema;
export const StartServiceBody = Type.Object(
  {
    type: Type.Union(SERVICE_TYPES.map((t) => Type.Literal(t))),
    offer: Type.Optional(OfferBody),
    openvpn: Type.Optional(OpenVpnBody),
    controls: Type.Optional(ControlsSettingsSchema),
  },
  Strict,
);
export const ServiceView = Type.Object({
  type: Type.String(),
  spec: Type.Object({}, Open),
  offer: Type.Object({ country: Type.String(), ipType: Type.String(), pricePerHourWei: Wei, pricePerGiBWei: Wei, bandwidthMbps: Type.Number() }, Open),
  announcement: Type.Object({ state: Type.String(), lastError: Type.Optional(Type.String()), expiresAt: Type.Optional(Type.String()) }),
  sessions: Type.Integer({ description: "sessions running now" }),
  controls: Type.Optional(
    Type.Object(
      {
        offered: Type.Boolean({ description: "announced now; false while a traffic cap is reached or the schedule is closed" }),
        withdrawnBecause: Type.Optional(Type.Union([Type.Literal("TRAFFIC_CAP"), Type.Literal("OUTSIDE_SCHEDULE")])),
        trafficCap: Type.Optional(Type.Object({}, { ...Open, description: "daily / monthly: capBytes, usedBytes, remainingBytes, resetsAt; reached" })),
        schedule: Type.Optional(Type.Object({}, { ...Open, description: "open, windows, nextChange" })),
        access: Type.Optional(Type.Object({}, { ...Open, description: "policy: open | allowlist" })),
      },
      Open,
    ),
  ),
});
export const ServiceList = Type.Object({ services: Type.Array(ServiceView) });

export const ProposalQuery = Type.Object(
  {
    service_type: Type.Optional(Type.String()),
    country: Type.Optional(Type.String()),
    ip_type: Type.Optional(Type.String()),
    ipv6: Type.Optional(Type.String({ description: "true: only providers whose tunnel carries IPv6" })),
    metering: Type.Optional(Type.String({ description: "hour | gib" })),
    access_policy: Type.Optional(Type.String({ description: "open | allowlist: the provider's access policy" })),
    max_price_per_hour: Type.Optional(Wei),
    max_price_per_gib: Type.Optional(Wei),
    min_bandwidth: Type.Optional(Type.String({ description: "Mbit/s" })),
    provider_id: Type.Optional(Type.Array(Type.String())),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
    cursor: Type.Optional(Type.String({ maxLength: 256 })),
  },
  Strict,
);
export const ProposalPage = Type.Object({ proposals: Type.Array(ProposalSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) });

export const ConnectBody = Type.Object(
  {
    provider: Type.Optional(Address),
    serviceType: Type.Union(
      SERVICE_TYPES.map((t) => Type.Literal(t)),
      { default: "openvpn" },
    ),
    country: Type.Optional(Type.String({ pattern: "^[A-Za-z]{2}$" })),
    ipType: Type.Optional(Type.Union(IP_TYPES.map((t) => Type.Literal(t)))),
    ipv6: Type.Optional(
      Type.Boolean({
        description: "filter: only providers whose tunnel carries IPv6 (IPv6 then goes through the tunnel; otherwise it is blocked while connected)",
      }),
    ),
    maxPricePerHour: Type.Optional(Myst),
    maxPricePerGiB: Type.Optional(Myst),
    topUp: Type.Optional({ ...Myst, description: "before connecting, deposit so the channel holds at least this much MYST" }),
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
    confine: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          "confined apps: the tunnel carries only a fresh network namespace's traffic (named in `confined.netns`: run apps there with `ip netns exec`, or use `myst run`); the consumer's own routes, resolver and firewall stay untouched; the namespace has no route while the tunnel is down and goes at disconnect",
      }),
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
    phasesMs: Type.Optional(Phases),
    promisedWei: Type.Optional(Wei),
    invoices: Type.Optional(Type.Integer()),
    deposit: Type.Optional(Type.Object({ amountWei: Wei, txHash: Type.String(), gasUsed: Type.String() })),
    endReason: Type.Optional(Type.String()),
    protection: Type.Optional(
      Type.Object({
        state: Type.Union([Type.Literal("off"), Type.Literal("protecting"), Type.Literal("blocked")]),
        killSwitch: Type.Boolean(),
        allowLan: Type.Boolean(),
        message: Type.String(),
      }),
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

export const SessionQuery = Type.Object(
  { limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }), role: Type.Optional(Type.Union([Type.Literal("provider"), Type.Literal("consumer")])) },
  Strict,
);
export const SessionList = Type.Object({
  sessions: Type.Array(
    Type.Object({
      id: Type.String(),
      role: Type.String(),
      peer: Address,
      serviceType: Type.String(),
      startedAt: Type.String(),
      endedAt: Type.Union([Type.String(), Type.Null()]),
      endReason: Type.Union([Type.String(), Type.Null()]),
      bytes: Type.Integer(),
      promisedWei: Wei,
    }),
  ),
});

export const Channel = Type.Object({
  channelId: Type.String(),
  consumer: Address,
  provider: Address,
  balanceWei: Wei,
  spentWei: Wei,
  withdrawalReadyAt: Type.Union([Type.String(), Type.Null()]),
});
export const TopUpBody = Type.Object({ amount: Myst }, Strict);
export const TopUpResult = Type.Object({ depositedWei: Wei, txHash: Type.String(), gasUsed: Type.String(), channel: Channel });
export const EmptyBody = Type.Object({}, { ...Strict, description: "no fields (the body may be left out)" });
export const WithdrawalResult = Type.Object({
  requested: Type.Boolean(),
  txHash: Type.String(),
  readyAt: Type.Optional(Type.String()),
  withdrawnWei: Type.Optional(Wei),
});
export const Earnings = Type.Object({
  sessions: Type.Array(Type.Object({ sessionId: Type.String(), consumer: Address, promisedWei: Wei })),
  totalPromisedWei: Wei,
  settledWei: Wei,
  unsettledWei: Wei,
  settlements: Type.Array(
    Type.Object({ channelId: Type.String(), amountWei: Wei, paidWei: Type.Optional(Wei), txHash: Type.Union([Type.String(), Type.Null()]), at: Type.String() }),
  ),
  pendingSettlements: Type.Array(
    Type.Object({
      channelId: Type.String(),
      consumer: Address,
      amountWei: Wei,
      state: Type.Union(["queued", "submitted", "retrying", "waiting-top-up", "rejected"].map((s) => Type.Literal(s))),
      attempts: Type.Integer(),
      lastError: Type.Optional(Type.String()),
      nextAttemptAt: Type.Optional(Type.String()),
      txHash: Type.Optional(Type.String()),
    }),
  ),
});

export type StartServiceBody = Static<typeof StartServiceBody>;
export type ConnectBody = Static<typeof ConnectBody>;
