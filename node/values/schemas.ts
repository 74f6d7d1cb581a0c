import { Type } from "@sinclair/typebox";

/**
 * The value schemas every edge shares (the API, the services file, messages): one `Address`, one
 * `Wei`, one `Myst`, checked once where the value enters, typed after that.
 */
export const Address = Type.String({ pattern: "^0x[0-9a-fA-F]{40}$", description: "an identity: Ethereum address, 0x + 40 hex" });
export const Wei = Type.String({
  pattern: "^(0|[1-9][0-9]{0,77})$",
  description: "an amount in wei (1 MYST = 10^18 wei): a decimal string, no sign, no leading zeros",
});
export const Myst = Type.String({ pattern: "^[0-9]{1,20}(\\.[0-9]{1,18})?$", description: 'an amount in MYST, decimal (e.g. "0.05")' });
/** Bodies and files refuse fields they do not know (a misspelt option must not fall back silently). */
export const Strict = { additionalProperties: false } as const;
/** The body of a POST that takes nothing. */
export const EmptyBody = Type.Object({}, { ...Strict, description: "no fields (the body may be left out)" });

/**
 * Words a peer sends for a person to read (a refusal's message, a reason): no control characters
 * but tab and newline, so a peer cannot put terminal escape sequences into `myst status` or a log.
 */
export const PeerText = (maxLength: number) => Type.String({ maxLength, pattern: "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$" });

/**
 * The path a session took, as its history and the earnings show it (docs/relay.md): how the tunnel
 * reached the provider and, relayed, through which relay. Null when unknown (a relay's own session,
 * a session that never became active, a row from before paths were kept).
 */
export const SessionPath = Type.Union(
  [
    Type.Object({
      tunnel: Type.Union([Type.Literal("public"), Type.Literal("mapped"), Type.Literal("local"), Type.Literal("punched"), Type.Literal("relayed")], {
        description: "the provider's own public address, a port its router maps, the shared LAN, a punched hole, or a relay",
      }),
      relay: Type.Optional(
        Type.Object({
          provider: Type.Optional({ ...Address, description: "the relay's identity (a provider knows it from the consumer's word)" }),
          address: Type.String({ description: "the relay's address (the consumer's TURN server; to a provider, the relayed address's host)" }),
          port: Type.Optional(Type.Integer({ description: "the consumer's: the TURN server's port" })),
          transport: Type.Optional(Type.String({ description: "how the consumer reaches the relay: udp, tcp or tls (TURN over TLS)" })),
        }),
      ),
      transport: Type.Optional(
        Type.String({ description: "a relay's own session: how its consumer reached it (udp, tcp or tls), as its TURN engine saw the allocation" }),
      ),
    }),
    Type.Null(),
  ],
  { description: "the path the session took; null when not known" },
);
