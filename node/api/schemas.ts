import { Type, type Static } from "@fastify/type-provider-typebox";
import { IP_TYPES, ProposalSchema } from "../proposal/proposal";
import { DEFAULT_SERVICE_TYPE, SERVICE_SETTINGS, SERVICE_TYPES, settingsProperties } from "../services/catalog";
import { ControlsSettingsSchema } from "../services/controls/settings-schema";
import type { ControlsStatus } from "../daemon/provider-controls";
import { Address, Myst, Strict, Wei } from "../values/schemas";

/** The schemas of the daemon's REST API: request bodies refuse unknown fields; amounts are strings. */

export { Address, Myst, Strict, Wei };
/** The vocabularies a client shows in its help. */
export { DEFAULT_SERVICE_TYPE, IP_TYPES, SERVICE_SETTINGS, SERVICE_TYPES };
/** Responses may grow fields; clients ignore what they do not know. */
const Open = { additionalProperties: true } as const;

export const AddressParams = Type.Object({ address: Address }, Strict);
export const ProviderParams = Type.Object({ provider: Address }, Strict);
export const ServiceTypeParams = Type.Object({ type: Type.String({ pattern: "^[a-z][a-z0-9-]{0,31}$" }) }, Strict);

export const Health = Type.Object({
  status: Type.Literal("ok"),
  version: Type.String(),
  identity: Type.Union([Address, Type.Null()], { description: "the node's identity (null: an offline node over an empty keystore)" }),
  uptimeSeconds: Type.Integer(),
});

export const IdentityList = Type.Object({
  identities: Type.Array(
    Type.Object({
      address: Address,
      keystoreFile: Type.String(),
      node: Type.Boolean({ description: "the identity this daemon runs as" }),
      registered: Type.Union([Type.Boolean(), Type.Null()], { description: "null: the chain could not be asked" }),
    }),
  ),
});
export const NewIdentity = Type.Object({ passphrase: Type.String({ minLength: 1, description: "encrypts the keystore file; keep it with the file" }) }, Strict);
export const CreatedIdentity = Type.Object({ address: Address, keystoreFile: Type.String() });
export const ImportIdentity = Type.Object(
  {
    keystore: Type.String({ minLength: 2, maxLength: 16_384, description: "keystore v3 JSON (geth, ethers, MetaMask)" }),
    passphrase: Type.String({ description: "the passphrase it is encrypted with" }),
    newPassphrase: Type.Optional(Type.String({ minLength: 1, description: "re-encrypt with this one (else it is stored as is)" })),
    source: Type.Optional(Type.String({ maxLength: 4096, description: "where it came from, for error messages (e.g. the file name)" })),
  },
  Strict,
);
export const ExportIdentity = Type.Object(
  {
    passphrase: Type.Optional(Type.String({ description: "with newPassphrase: the current passphrase" })),
    newPassphrase: Type.Optional(Type.String({ minLength: 1, description: "re-encrypt under this passphrase (else the stored file as is)" })),
  },
  Strict,
);
export const ExportedIdentity = Type.Object({ address: Address, keystore: Type.String({ description: "keystore v3 JSON" }) });
export const Registration = Type.Object(
  {
    state: Type.Union([
      Type.Literal("unregistered"),
      Type.Literal("in-progress"),
      Type.Literal("registered"),
      Type.Literal("failed"),
      Type.Literal("unknown", { description: "the chain could not be asked (reason says why)" }),
    ]),
    identity: Address,
    beneficiary: Type.Optional(Address),
    txHash: Type.Optional(Type.String()),
    submittedAt: Type.Optional(Type.String()),
    code: Type.Optional(Type.String()),
    reason: Type.Optional(Type.String()),
  },
  Open,
);
export const IdentityView = Type.Object({
  address: Address,
  node: Type.Boolean(),
  keystoreFile: Type.Union([Type.String(), Type.Null()]),
  publicKey: Type.Optional(Type.String({ description: "64-byte x‖y hex: when this is the node's own identity, unlocked" })),
  balanceWei: Type.Union([Wei, Type.Null()], { description: "MYST held by the account (null: the chain could not be asked)" }),
  registration: Registration,
});
export const RegisterBody = Type.Object(
  {
    passphrase: Type.Optional(Type.String({ minLength: 1, description: "needed unless it is the daemon's own identity" })),
    beneficiary: Type.Optional(Address),
    relayerKey: Type.Optional(
      Type.String({ description: "hex private key of a funded account that submits the registration and pays its gas (default: the identity itself)" }),
    ),
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
export const StartServiceBody = Type.Object(
  {
    type: Type.Union(SERVICE_TYPES.map((t) => Type.Literal(t))),
    offer: Type.Optional(OfferBody),
    // Each type's settings under its name: `{type: "wireguard", wireguard: {…}}`.
    ...settingsProperties(),
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
    country: Type.Optional(Type.String({ pattern: "^[A-Za-z]{2}$" })),
    ipType: Type.Optional(Type.Union(IP_TYPES.map((t) => Type.Literal(t)))),
    ipv6: Type.Optional(
      Type.Boolean({
        description: "filter: only providers whose tunnel carries IPv6 (IPv6 then goes through the tunnel; otherwise it is blocked while connected)",
      }),
    ),
    maxPricePerHour: Type.Optional(Myst),
    maxPricePerGiB: Type.Optional(Myst),
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
    path: Type.Optional(
      Type.Object(
        {
          tunnel: Type.Union([Type.Literal("public"), Type.Literal("mapped"), Type.Literal("local"), Type.Literal("punched")], {
            description:
              "how the tunnel reaches the provider: its own public address, a port its router maps, the shared LAN, or a hole punched through both routers",
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
        },
        { description: "the session's path (docs/nat.md)" },
      ),
    ),
    promisedWei: Type.Optional(Wei),
    invoices: Type.Optional(Type.Integer()),
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

export const Vault = Type.Object({
  consumer: Address,
  balanceWei: { ...Wei, description: "what pays providers' promises" },
  escrowWei: { ...Wei, description: "the penalty escrow an overdraft forfeits" },
  exitReadyAt: Type.Union([Type.String(), Type.Null()], { description: "when a pending exit can be withdrawn; null when none is pending" }),
  walletWei: { ...Wei, description: "MYST in the identity's own account, ready to deposit" },
});
export const DepositBody = Type.Object(
  {
    amount: Type.Optional({ ...Myst, description: "MYST added to the balance (default 0)" }),
    escrow: Type.Optional({ ...Myst, description: "MYST added to the escrow (default 0)" }),
  },
  Strict,
);
export const DepositResult = Type.Object({ depositedWei: Wei, escrowWei: Wei, txHash: Type.String(), gasUsed: Type.String(), vault: Vault });
export const EmptyBody = Type.Object({}, { ...Strict, description: "no fields (the body may be left out)" });
export const ExitResult = Type.Object({ txHash: Type.String(), vault: Vault });
export const WithdrawalResult = Type.Object({ txHash: Type.String(), withdrawnWei: Wei, vault: Vault });
export const Earnings = Type.Object({
  sessions: Type.Array(Type.Object({ sessionId: Type.String(), consumer: Address, promisedWei: Wei })),
  totalPromisedWei: Wei,
  settledWei: Wei,
  unsettledWei: Wei,
  feesWei: { ...Wei, description: "relayers' fees taken out of the settled amounts" },
  netWei: { ...Wei, description: "settled less fees" },
  settlements: Type.Array(
    Type.Object({
      pairId: { ...Type.String(), description: "the (consumer, provider) pair's id: keccak256(abi.encode(consumer, provider))" },
      amountWei: Wei,
      paidWei: Type.Optional(Wei),
      feeWei: Type.Optional(Wei),
      txHash: Type.Union([Type.String(), Type.Null()]),
      at: Type.String(),
    }),
  ),
  pendingSettlements: Type.Array(
    Type.Object({
      pairId: Type.String(),
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
/** The provider controls a service is started with (CLI flags, services.json, the API body). */
export type ControlsSettings = Static<typeof ControlsSettingsSchema>;
/** A service as `GET /v1/services` shows it, with its controls' status typed as the node reports it. */
export type ServiceViewWithControls = Omit<Static<typeof ServiceView>, "controls"> & { controls?: ControlsStatus };
export type ConnectBody = Static<typeof ConnectBody>;
export type Vault = Static<typeof Vault>;
export type DepositBody = Static<typeof DepositBody>;
export type DepositResult = Static<typeof DepositResult>;
export type ExitResult = Static<typeof ExitResult>;
export type WithdrawalResult = Static<typeof WithdrawalResult>;
export type Earnings = Static<typeof Earnings>;
