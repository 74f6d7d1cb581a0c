import { Type } from "@sinclair/typebox";
import { Strict } from "../../values/schemas";

/** A WireGuard service's settings, as the API takes them and services.json keeps them. */
export const WireGuardSettingsSchema = Type.Object(
  {
    publicIp: Type.String({ description: "the address consumers send their tunnel packets to (an IP address)" }),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: "UDP port, default 51820" })),
    uplink: Type.Optional(Type.String({ description: "internet-facing interface for NAT (default: the default route's)" })),
    allowPrivate: Type.Optional(Type.Boolean({ description: "let consumers reach private networks and this host (default false)" })),
    allowPrivateRanges: Type.Optional(Type.Array(Type.String())),
    netns: Type.Optional(Type.String({ description: "run wireguard-go and the firewall in this network namespace (tests, demo)" })),
    ipv6: Type.Optional(
      Type.Boolean({
        description:
          "carry consumers' IPv6 (a /128 each, NAT66 out of the uplink; this host needs IPv6 egress); the proposal says `ipv6: true` (default false)",
      }),
    ),
    device: Type.Optional(
      Type.String({
        pattern: "^[A-Za-z0-9_-]{1,15}$",
        description: "the interface's name (a name in use is refused: DEVICE_IN_USE), default the first free of mystwg0, mystwg1, …",
      }),
    ),
    mtu: Type.Optional(Type.Integer({ minimum: 1280, maximum: 1500, description: "the tunnel's MTU, default 1420" })),
  },
  Strict,
);
