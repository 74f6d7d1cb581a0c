import { Type } from "@sinclair/typebox";
import { Strict } from "../../values/schemas";

/** An OpenVPN service's settings, as the API takes them and services.json keeps them. */
export const OpenVpnSettingsSchema = Type.Object(
  {
    publicIp: Type.String({ description: "the address consumers connect to" }),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: "UDP port, default 1194" })),
    bind: Type.Optional(Type.String()),
    uplink: Type.Optional(Type.String({ description: "internet-facing interface for NAT (default: the default route's)" })),
    allowPrivate: Type.Optional(Type.Boolean({ description: "let consumers reach private networks and this host (default false)" })),
    allowPrivateRanges: Type.Optional(Type.Array(Type.String())),
    netns: Type.Optional(Type.String({ description: "run the server in this network namespace (tests, demo)" })),
    ipv6: Type.Optional(
      Type.Boolean({
        description: "carry consumers' IPv6 (NAT66 out of the uplink; this host needs IPv6 egress); the proposal says `ipv6: true` (default false)",
      }),
    ),
  },
  Strict,
);
