import { Type, type Static } from "@sinclair/typebox";
import { CONTROLS_DEFAULTS } from "../../config/defaults";
import { Address, Strict } from "../../values/schemas";

/**
 * A service's provider controls, as the API takes them and services.json keeps them (every tunnel
 * type: caps, schedule and access apply to any service; bandwidth and egress to those with a tunnel).
 */
export const ControlsSettingsSchema = Type.Object(
  {
    trafficCap: Type.Optional(
      Type.Object(
        {
          dailyGiB: Type.Optional(
            Type.Number({
              exclusiveMinimum: 0,
              description: "stop selling for the rest of the local day past this much traffic (all sessions and services, both directions)",
            }),
          ),
          monthlyGiB: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: "the same per month" })),
          monthStartDay: Type.Optional(
            Type.Integer({ minimum: 1, maximum: 28, description: `the day of the month a monthly period starts (default ${CONTROLS_DEFAULTS.monthStartDay})` }),
          ),
        },
        Strict,
      ),
    ),
    noticeSeconds: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 3600,
        description: `a cap reached: running sessions are told, then end this many seconds later (default ${CONTROLS_DEFAULTS.noticeSeconds})`,
      }),
    ),
    serviceBandwidthMbps: Type.Optional(
      Type.Number({
        minimum: 0,
        description: "all sessions of the service together, each direction (default: no limit); each session is limited to the offer's bandwidthMbps",
      }),
    ),
    schedule: Type.Optional(
      Type.Array(Type.String({ maxLength: 64 }), {
        maxItems: 32,
        description: 'local-time windows when the service is offered, e.g. "mon-fri 08:00-22:00" (default: always)',
      }),
    ),
    access: Type.Optional(
      Type.Object(
        {
          allow: Type.Optional(Type.Array(Address, { maxItems: 10_000, description: "only these consumers may connect" })),
          deny: Type.Optional(Type.Array(Address, { maxItems: 10_000, description: "these consumers may not" })),
          allowFile: Type.Optional(Type.String({ minLength: 1, description: "a file of allowed identities, one a line; re-read when it changes" })),
          denyFile: Type.Optional(Type.String({ minLength: 1, description: "a file of denied identities, one a line; re-read when it changes" })),
        },
        Strict,
      ),
    ),
    egress: Type.Optional(
      Type.Object(
        {
          allowSmtp: Type.Optional(Type.Boolean({ description: "let consumers send mail directly on TCP 25 (default false: blocked)" })),
          blockPorts: Type.Optional(
            Type.Array(Type.Union([Type.Integer({ minimum: 1, maximum: 65535 }), Type.String({ pattern: "^\\d{1,5}(-\\d{1,5})?$" })]), {
              maxItems: 256,
              description: "destination ports blocked, TCP and UDP (e.g. 6881-6889)",
            }),
          ),
          blockCidrs: Type.Optional(
            Type.Array(Type.String({ maxLength: 64 }), { maxItems: 1024, description: "destination networks blocked (IPv4 or IPv6 CIDR)" }),
          ),
        },
        Strict,
      ),
    ),
  },
  Strict,
);
export type ControlsSettings = Static<typeof ControlsSettingsSchema>;
