import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { Address, PeerText } from "../values/schemas";

/**
 * A subject a peer may ask us to send to: a dialog subject (`myst.dialog.<id>`) or a dialog inbox
 * (`myst.inbox.<id>`), one plain token after the prefix. Nothing else: no whitespace or control
 * characters (they would become NATS protocol lines on our connection), and no other service's
 * subject (`myst.discovery.…`, `$JS.…`, `$KV.…`), where our messages would go with our rights.
 */
export const REPLY_SUBJECT_PATTERN = "^myst\\.(dialog|inbox)\\.[A-Za-z0-9_-]{1,64}$";
/** An error code a peer may send: data to show, fenced so it reads like a code and nothing else. */
export const PEER_CODE_PATTERN = "^[A-Z][A-Z0-9_]{0,63}$";

/** What a dialog message says, signed as its exact JSON bytes. See docs/protocol.md. */
export const DialogMessageSchema = Type.Object(
  {
    v: Type.Literal(1),
    kind: Type.Union([Type.Literal("request"), Type.Literal("response"), Type.Literal("notify")]),
    type: Type.String({ pattern: "^[a-z][a-z0-9_.-]{0,63}$" }),
    from: Address,
    to: Address,
    dialog: Type.String({ pattern: "^[0-9a-f]{32}$" }),
    id: Type.String({ pattern: "^[0-9a-f]{32}$" }),
    ts: Type.Integer({ minimum: 0 }),
    /** The request a response answers. */
    re: Type.Optional(Type.String({ pattern: "^[0-9a-f]{32}$" })),
    /** The subject the sender listens on, so the peer can send to it unprompted. */
    reply: Type.Optional(Type.String({ maxLength: 128, pattern: REPLY_SUBJECT_PATTERN })),
    body: Type.Unknown(),
    /** Set on a response when the request failed. */
    error: Type.Optional(Type.Object({ code: Type.String({ pattern: PEER_CODE_PATTERN }), message: PeerText(1024) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

export type DialogMessage = Static<typeof DialogMessageSchema>;

export const checkDialogMessage = TypeCompiler.Compile(DialogMessageSchema);

/** How deep a body may nest (objects and arrays). Deeper bodies are dropped as malformed. */
export const MAX_BODY_DEPTH = 32;

/**
 * True when `value` nests no deeper than `maxDepth`. Iterative, so a hostile body cannot overflow
 * the stack here (JSON.stringify of it later would: it recurses per level).
 */
export function withinDepth(value: unknown, maxDepth = MAX_BODY_DEPTH): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth >= maxDepth) return false;
    for (const child of Object.values(v)) if (typeof child === "object" && child !== null) stack.push([child, depth + 1]);
  }
  return true;
}
