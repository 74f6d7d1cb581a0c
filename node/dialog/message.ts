import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";

/** What a dialog message says, signed as its exact JSON bytes. See docs/protocol.md. */
export const DialogMessageSchema = Type.Object(
  {
    v: Type.Literal(1),
    kind: Type.Union([Type.Literal("request"), Type.Literal("response"), Type.Literal("notify")]),
    type: Type.String({ pattern: "^[a-z][a-z0-9_.-]{0,63}$" }),
    from: Type.String({ pattern: "^0x[0-9a-fA-F]{40}$" }),
    to: Type.String({ pattern: "^0x[0-9a-fA-F]{40}$" }),
    dialog: Type.String({ pattern: "^[0-9a-f]{32}$" }),
    id: Type.String({ pattern: "^[0-9a-f]{32}$" }),
    ts: Type.Integer({ minimum: 0 }),
    /** The request a response answers. */
    re: Type.Optional(Type.String({ pattern: "^[0-9a-f]{32}$" })),
    /** The subject the sender listens on, so the peer can send to it unprompted. */
    reply: Type.Optional(Type.String({ maxLength: 256 })),
    body: Type.Unknown(),
    /** Set on a response when the request failed. */
    error: Type.Optional(Type.Object({ code: Type.String({ maxLength: 64 }), message: Type.String({ maxLength: 1024 }) })),
  },
  { additionalProperties: false },
);

export type DialogMessage = Static<typeof DialogMessageSchema>;

export const checkDialogMessage = TypeCompiler.Compile(DialogMessageSchema);
