import { BrokerError } from "../broker/broker";
import { MystError, isMystError } from "../errors/MystError";
import type { Address } from "../values/address";
import type { Dialogs } from "./dialogs";
import { Sealer, readPlainRefusal } from "./envelope";
import { PEER_CODE_PATTERN, type DialogMessage } from "./message";

export type DialogErrorCode = "BAD_RESPONSE" | "DIALOG_CLOSED" | "DIALOG_TIMEOUT" | "NO_RESPONDERS" | "PEER_ERROR" | "PEER_UNREGISTERED";

export class DialogError extends MystError<DialogErrorCode> {}

/**
 * The peer answered with an error (or refused in clear text): its code is the peer's word, kept
 * as data in `peerCode` (fenced by pattern at the edge), never raised as one of our own codes —
 * a provider answering UNAUTHORIZED must not make our API say 401.
 */
export class PeerError extends DialogError {
  constructor(
    readonly peerCode: string,
    message: string,
  ) {
    super("PEER_ERROR", message);
  }
}

/** The peer's code when `err` is a PeerError, else undefined. */
export function peerCodeOf(err: unknown): string | undefined {
  return err instanceof PeerError ? err.peerCode : undefined;
}

/**
 * A second way to carry one dialog's sealed messages, beside the broker: the session's direct
 * channel (node/nat/direct). The envelopes are the same bytes and pass the same checks (signature,
 * time window, replay) whichever way they come; the dialog uses the transport while it is `up` and
 * the message fits, and the broker otherwise.
 */
export interface DialogTransport {
  readonly up: boolean;
  /** The largest envelope it carries. */
  readonly maxMessageBytes: number;
  /** Sends one frame; false when it cannot now (the broker carries it instead). */
  sendFrame(kind: "request" | "response" | "notify", corr: number, bytes: Uint8Array): boolean;
  on(event: "frame", listener: (frame: { kind: "request" | "response" | "notify"; corr: number; bytes: Uint8Array }) => void): unknown;
  off(event: "frame", listener: (frame: { kind: "request" | "response" | "notify"; corr: number; bytes: Uint8Array }) => void): unknown;
}

const PEER_CODE = new RegExp(PEER_CODE_PATTERN);

/** The response to `request` that says it failed with `error`. */
export const errorReply = (request: DialogMessage, error: { code: string; message: string }) =>
  ({ kind: "response", type: request.type, re: request.id, body: null, error }) as const;
export const INTERNAL = { code: "INTERNAL", message: "internal error" };

type RequestHandler = (body: unknown, message: DialogMessage) => unknown | Promise<unknown>;
type NotifyListener = (body: unknown, message: DialogMessage) => void;

/** One conversation between this identity and a peer: typed requests, responses and notifications. */
export class Dialog {
  readonly sealer: Sealer;
  lastActivity = Date.now();
  #closed = false;
  readonly #handlers = new Map<string, RequestHandler>();
  readonly #listeners = new Map<string, Set<NotifyListener>>();
  readonly #closeListeners = new Set<() => void>();
  #direct?: DialogTransport;
  #detach?: () => void;
  #corr = 0;
  readonly #pending = new Map<number, (bytes: Uint8Array) => void>();

  constructor(
    private readonly dialogs: Dialogs,
    readonly id: string,
    readonly peer: Address,
    peerPublicKey: Uint8Array,
    readonly peerSubject: string,
    /** This side's private inbox for the dialog, when this side opened it. */
    readonly localSubject?: string,
  ) {
    this.sealer = new Sealer(peerPublicKey);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Answers requests of `type`; what the handler returns is the response body. */
  handle(type: string, handler: RequestHandler): this {
    this.#handlers.set(type, handler);
    return this;
  }

  /** Listens to notifications of `type`. */
  on(type: string, listener: NotifyListener): this {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener);
    return this;
  }

  onClose(listener: () => void): void {
    this.#closeListeners.add(listener);
  }

  /**
   * Carries this dialog over `transport` too (the session's direct channel): requests,
   * notifications and answers go there while it is up, over the broker otherwise; what arrives on
   * it is checked as if it came from the broker. Undefined: the broker only.
   */
  useTransport(transport: DialogTransport | undefined): void {
    this.#detach?.();
    this.#direct = transport;
    this.#detach = undefined;
    if (!transport) return;
    const onFrame = (frame: { kind: "request" | "response" | "notify"; corr: number; bytes: Uint8Array }) => {
      if (this.#closed) return;
      if (frame.kind === "response") return this.#pending.get(frame.corr)?.(frame.bytes);
      const respond = frame.kind === "request" ? (bytes: Uint8Array) => void transport.sendFrame("response", frame.corr, bytes) : undefined;
      void this.dialogs.receiveDirect(this, frame.bytes, respond);
    };
    transport.on("frame", onFrame);
    this.#detach = () => transport.off("frame", onFrame);
  }

  /** Whether the dialog's own transport (its direct channel) carries it now. */
  get direct(): boolean {
    return this.#direct?.up === true;
  }

  /** Over the direct channel when it is up and the message fits; null: send it over the broker. */
  #requestDirect(bytes: Uint8Array, timeoutMs: number): Promise<Uint8Array> | null {
    const direct = this.#direct;
    if (!direct?.up || bytes.length > direct.maxMessageBytes) return null;
    const corr = (this.#corr = (this.#corr + 1) >>> 0);
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(corr);
        reject(new BrokerError("REQUEST_TIMEOUT", "no answer over the direct channel"));
      }, timeoutMs);
      this.#pending.set(corr, (reply) => {
        clearTimeout(timer);
        this.#pending.delete(corr);
        resolve(reply);
      });
      if (!direct.sendFrame("request", corr, bytes)) {
        clearTimeout(timer);
        this.#pending.delete(corr);
        resolve(this.dialogs.options.broker.request(this.peerSubject, bytes, timeoutMs));
      }
    });
  }

  /** Sends a request and resolves with the peer's response body. */
  async request<T = unknown>(type: string, body: unknown, options: { timeoutMs?: number } = {}): Promise<T> {
    this.#assertOpen();
    const timeoutMs = options.timeoutMs ?? this.dialogs.options.requestTimeoutMs;
    const { id, bytes } = this.dialogs.seal(this, { kind: "request", type, body });
    let reply: Uint8Array;
    try {
      reply = await (this.#requestDirect(bytes, timeoutMs) ?? this.dialogs.options.broker.request(this.peerSubject, bytes, timeoutMs));
    } catch (err) {
      if (err instanceof BrokerError && err.code === "REQUEST_TIMEOUT") {
        throw new DialogError("DIALOG_TIMEOUT", `${this.peer} did not answer ${type} within ${timeoutMs} ms`, { cause: err });
      }
      if (err instanceof BrokerError && err.code === "NO_RESPONDERS") {
        throw new DialogError("NO_RESPONDERS", `${this.peer} is not listening on ${this.peerSubject}`, { cause: err });
      }
      throw err;
    }
    const refusal = readPlainRefusal(reply);
    if (refusal) throw new PeerError(refusal.code, `${this.peer} refused ${type}: ${refusal.code}: ${refusal.message}`);
    const checked = await this.dialogs.check(reply);
    if ("drop" in checked) {
      this.dialogs.drop(checked.drop, checked.detail);
      throw new DialogError("BAD_RESPONSE", `the response to ${type} was dropped: ${checked.drop} (${checked.detail})`);
    }
    const m = checked.message;
    if (m.kind !== "response" || m.re !== id || m.dialog !== this.id || m.from !== this.peer) {
      this.dialogs.drop("unexpected", "a response that does not answer this request", m);
      throw new DialogError("BAD_RESPONSE", `the response to ${type} does not answer it`);
    }
    this.touch();
    if (m.error) throw new PeerError(m.error.code, `${this.peer} answered ${type} with ${m.error.code}: ${m.error.message}`);
    return m.body as T;
  }

  /** Sends a one-way message. */
  notify(type: string, body: unknown): void {
    this.#assertOpen();
    const { bytes } = this.dialogs.seal(this, { kind: "notify", type, body });
    const direct = this.#direct;
    if (direct?.up && bytes.length <= direct.maxMessageBytes && direct.sendFrame("notify", 0, bytes)) return;
    this.dialogs.options.broker.publish(this.peerSubject, bytes);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#detach?.();
    this.dialogs.forget(this);
    for (const l of this.#closeListeners) l();
  }

  touch(): void {
    this.lastActivity = Date.now();
  }

  async answer(message: DialogMessage, respond: (data: Uint8Array) => void): Promise<void> {
    const handler = this.#handlers.get(message.type);
    let reply: Pick<DialogMessage, "kind" | "type" | "body" | "re" | "error">;
    if (!handler) {
      reply = errorReply(message, { code: "UNKNOWN_TYPE", message: `no handler for ${message.type}` });
    } else {
      try {
        reply = { kind: "response", type: message.type, re: message.id, body: (await handler(message.body, message)) ?? null };
      } catch (err) {
        if (!isMystError(err)) this.dialogs.options.log.error({ err, type: message.type }, "dialog handler failed");
        reply = errorReply(message, isMystError(err) && PEER_CODE.test(err.code) ? { code: err.code, message: err.message.slice(0, 1024) } : INTERNAL);
      }
    }
    let bytes: Uint8Array;
    try {
      bytes = this.dialogs.seal(this, reply).bytes;
    } catch (err) {
      // A body that cannot be serialized (a cycle, or nesting beyond the stack) fails this request only.
      this.dialogs.options.log.error({ err, type: message.type }, "dialog response could not be sealed");
      bytes = this.dialogs.seal(this, errorReply(message, INTERNAL)).bytes;
    }
    respond(bytes);
  }

  deliver(message: DialogMessage): void {
    const listeners = this.#listeners.get(message.type);
    if (!listeners?.size) return this.dialogs.drop("unexpected", `no listener for ${message.type}`, message);
    for (const l of listeners) {
      try {
        l(message.body, message);
      } catch (err) {
        this.dialogs.options.log.error({ err, type: message.type, code: (err as { code?: unknown })?.code ?? "INTERNAL" }, "dialog listener failed");
      }
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new DialogError("DIALOG_CLOSED", `the dialog with ${this.peer} is closed`);
  }
}
