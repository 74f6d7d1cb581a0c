import { Type } from "@sinclair/typebox";
import { OFFER_DEFAULTS } from "../../config/defaults";
import { IP_TYPES } from "../../proposal/proposal";
import { SERVICE_TYPES, settingsProperties } from "../../services/catalog";
import { ControlsSettingsSchema } from "../../services/controls/settings-schema";
import { Myst, Strict, Wei } from "../../values/schemas";

/** The schemas of the service routes: request bodies refuse unknown fields; amounts are strings. */

/** Responses may grow fields; clients ignore what they do not know. */
const Open = { additionalProperties: true } as const;

export const ServiceTypeParams = Type.Object({ type: Type.String({ pattern: "^[a-z][a-z0-9-]{0,31}$" }) }, Strict);

export const OfferBody = Type.Object(
  {
    country: Type.String({ pattern: "^[A-Za-z]{2}$", default: OFFER_DEFAULTS.country, description: "where traffic exits, ISO 3166-1 alpha-2" }),
    city: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    asn: Type.Optional(Type.Integer({ minimum: 0 })),
    isp: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    ipType: Type.Union(
      IP_TYPES.map((t) => Type.Literal(t)),
      { default: OFFER_DEFAULTS.ipType },
    ),
    pricePerHour: Type.Optional(Myst),
    pricePerGiB: Type.Optional(Myst),
    bandwidthMbps: Type.Number({
      minimum: 0,
      default: OFFER_DEFAULTS.bandwidthMbps,
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

const CapUsage = Type.Object({ capBytes: Type.Integer(), usedBytes: Type.Integer(), remainingBytes: Type.Integer(), resetsAt: Type.String() }, Open);
/** A service's controls now, as the node reports them (caps, schedule, access). */
export const ControlsStatus = Type.Object(
  {
    offered: Type.Boolean({ description: "announced now; false while a traffic cap is reached or the schedule is closed" }),
    withdrawnBecause: Type.Optional(Type.Union([Type.Literal("TRAFFIC_CAP"), Type.Literal("OUTSIDE_SCHEDULE")])),
    trafficCap: Type.Optional(
      Type.Object(
        {
          daily: Type.Optional(CapUsage),
          monthly: Type.Optional(CapUsage),
          reached: Type.Union([Type.Literal("daily"), Type.Literal("monthly"), Type.Null()]),
        },
        { ...Open, description: "daily / monthly: capBytes, usedBytes, remainingBytes, resetsAt; reached" },
      ),
    ),
    schedule: Type.Optional(
      Type.Object(
        { open: Type.Boolean(), windows: Type.Array(Type.String()), nextChange: Type.Optional(Type.String()) },
        { ...Open, description: "open, windows, nextChange" },
      ),
    ),
    access: Type.Optional(
      Type.Object({ policy: Type.Union([Type.Literal("open"), Type.Literal("allowlist")]) }, { ...Open, description: "policy: open | allowlist" }),
    ),
  },
  Open,
);
export const ServiceView = Type.Object({
  type: Type.String(),
  spec: Type.Object({}, Open),
  offer: Type.Object({ country: Type.String(), ipType: Type.String(), pricePerHourWei: Wei, pricePerGiBWei: Wei, bandwidthMbps: Type.Number() }, Open),
  announcement: Type.Object({ state: Type.String(), lastError: Type.Optional(Type.String()), expiresAt: Type.Optional(Type.String()) }),
  sessions: Type.Integer({ description: "sessions running now" }),
  controls: Type.Optional(ControlsStatus),
});
export const ServiceList = Type.Object({ services: Type.Array(ServiceView) });
export const StoppedService = Type.Object({ type: Type.String(), stopped: Type.Boolean() });
