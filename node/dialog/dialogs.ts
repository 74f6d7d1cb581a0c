import { EventEmitter } from "node:events";
import type { Broker } from "../broker/broker";
import { BrokerError } from "../broker/broker";
import { MystError, isMystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import { checkSigner, type PublicKeyDirectory, type SignerCheck } from "../identity/protocol-signature";
import { silentLogger, type Logger } from "../log/logger";
import { EnvelopeError, Opener, Sealer, plainRefusal, readPlainRefusal } from "./envelope";
import { checkDialogMessage, PEER_CODE_PATTERN, withinDepth, type DialogMessage } from "./message";
import { randomBytes } from "./random-pool";
import { ReplayCache } from "./replay-cache";
import { toAddress, type Address } from "../values/address";

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

/** Why a received message was dropped; each is logged and emitted as a "dropped" event. */
export type DropReason =
  | "oversized"
  | "undecryptable"
  | "malformed"
  | "misaddressed"
  | "unregistered-sender"
  | "directory-unavailable"
  | "bad-signature"
  | "stale"
  | "replayed"
  | "flooding"
  | "wrong-peer"
  | "unexpected"
  | "capacity";

export interface DialogsOptions {
  broker: Broker;
  key: IdentityKey;
  directory: PublicKeyDirectory;
  log?: Logger;
  /** The subject this identity listens on. Default `subjectOf(address)`. */
  subject?: string;
  /** Larger envelopes are dropped unread. Default 64 KiB. */
  maxMessageBytes?: number;
  /** Accepted clock difference between sender and receiver. Default 30 s. */
  clockWindowMs?: number;
  /**
   * Message ids one sender may have inside the time window; past it that sender's new messages are
   * dropped (`flooding`) until its older ids leave the window. Never evicted: no flood can make a
   * live id replayable. Default 10,000.
   */
  maxRecentPerPeer?: number;
  /** The same for all senders together. Default 1,000,000. */
  maxRecent?: number;
  /** Default time a request waits for its response. Default 5 s. */
  requestTimeoutMs?: number;
  /** Open dialogs at most; new ones are refused past it. Default 10,000. */
  maxDialogs?: number;
  /** Dialogs one peer may open with us at once; past it its new dialogs are refused (TOO_MANY_DIALOGS). Default 8. */
  maxDialogsPerPeer?: number;
  /** A dialog with no traffic for this long is closed. Default 10 min. */
  idleTimeoutMs?: number;
}

export const MAX_MESSAGE_BYTES = 64 * 1024;

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

/** The subject an identity listens on for dialogs. */
export function subjectOf(identity: string): string {
  return `myst.dialog.${identity.toLowerCase()}`;
}

/**
 * A fresh, unguessable subject for one dialog this node opens: the peer answers and notifies there,
 * so nobody watching the broker learns who opened the dialog (no address in any subject).
 */
export function newInbox(): string {
  return `myst.inbox.${randomBytes(16).toString("hex")}`;
}

const PEER_CODE = new RegExp(PEER_CODE_PATTERN);
const newId = () => randomBytes(16).toString("hex");

/** A message that passed `check`: its addresses made `Address` once. */
type CheckedMessage = DialogMessage & { from: Address; to: Address };

/** The response to `request` that says it failed with `error`. */
const errorReply = (request: DialogMessage, error: { code: string; message: string }) =>
  ({ kind: "response", type: request.type, re: request.id, body: null, error }) as const;
const INTERNAL = { code: "INTERNAL", message: "internal error" };

type RequestHandler = (body: unknown, message: DialogMessage) => unknown | Promise<unknown>;
type NotifyListener = (body: unknown, message: DialogMessage) => void;

/** `dropped`: a message refused before any handler saw it (metrics count these); `failed`: a handler threw. */
export interface DialogsEvents {
  dropped: [drop: { reason: DropReason; detail: string }];
  failed: [error: unknown];
}

/**
 * The dialogs of one identity over the broker: it opens dialogs to peers, accepts dialogs peers
 * open, and checks every message (size, decryption, schema, recipient, signature, time window,
 * replay, and only then the registry: registered sender) before anything else sees it.
 */
export class Dialogs extends EventEmitter<DialogsEvents> {
  readonly address: Address;
  readonly subject: string;
  readonly #o: Required<Omit<DialogsOptions, "log" | "subject" | "maxRecentPerPeer" | "maxRecent">> & { log: Logger };
  readonly #opener: Opener;
  readonly #replay: ReplayCache;
  readonly #dialogs = new Map<string, Dialog>();
  /** Open dialogs per peer: what `maxDialogsPerPeer` counts. */
  readonly #perPeer = new Map<string, number>();
  #subscription?: { unsubscribe(): void };
  #sweeper?: NodeJS.Timeout;
  #onDialog?: (dialog: Dialog) => void;

  constructor(options: DialogsOptions) {
    super();
    this.address = options.key.address;
    this.subject = options.subject ?? subjectOf(this.address);
    this.#o = {
      broker: options.broker,
      key: options.key,
      directory: options.directory,
      log: options.log ?? silentLogger,
      maxMessageBytes: options.maxMessageBytes ?? MAX_MESSAGE_BYTES,
      clockWindowMs: options.clockWindowMs ?? 30_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
      maxDialogs: options.maxDialogs ?? 10_000,
      maxDialogsPerPeer: options.maxDialogsPerPeer ?? 8,
      idleTimeoutMs: options.idleTimeoutMs ?? 600_000,
    };
    this.#opener = new Opener(options.key);
    this.#replay = new ReplayCache({ windowMs: this.#o.clockWindowMs, perPeer: options.maxRecentPerPeer, total: options.maxRecent });
  }

  get options() {
    return this.#o;
  }

  /** Whether the broker connection is up (while it is down, silence from a peer proves nothing). */
  get connected(): boolean {
    return this.#o.broker.status === "connected";
  }

  /**
   * Subscribes to the identity's subject and waits until the broker has it: a peer's request
   * sent after this resolves reaches the node, instead of failing with NO_RESPONDERS.
   */
  async start(): Promise<void> {
    if (this.#subscription) return;
    this.#subscription = this.#o.broker.subscribe(this.subject, (data, respond) => void this.#receiveSafely(data, respond));
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(60_000, this.#o.idleTimeoutMs)).unref();
    await this.#o.broker.flush();
  }

  stop(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    clearInterval(this.#sweeper);
    for (const dialog of [...this.#dialogs.values()]) dialog.close();
  }

  /** Called with every dialog a peer opens, before its first message is handled. */
  onDialog(handler: (dialog: Dialog) => void): void {
    this.#onDialog = handler;
  }

  /**
   * Opens a dialog with a registered peer listening on `peerSubject`. The peer answers on a
   * per-dialog inbox (`newInbox()`), subscribed here and dropped when the dialog closes; the
   * subscription reaches the server before the first request, which travels on the same connection.
   */
  async open(to: string, peerSubject: string): Promise<Dialog> {
    const peer = toAddress(to, "peer");
    const publicKey = await this.#o.directory.publicKeyOf(peer);
    if (!publicKey) throw new DialogError("PEER_UNREGISTERED", `${peer} is not a registered identity`);
    const inbox = newInbox();
    const dialog = new Dialog(this, newId(), peer, publicKey, peerSubject, inbox);
    const subscription = this.#o.broker.subscribe(inbox, (data, respond) => void this.#receiveSafely(data, respond, dialog));
    dialog.onClose(() => {
      try {
        subscription.unsubscribe();
      } catch {
        // the connection is already closed: so is the subscription
      }
    });
    this.#add(dialog);
    return dialog;
  }

  get openDialogs(): number {
    return this.#dialogs.size;
  }

  /** Signs and seals a message for `dialog`'s peer. */
  seal(dialog: Dialog, fields: Pick<DialogMessage, "kind" | "type" | "body" | "re" | "error">): { id: string; bytes: Uint8Array } {
    const message: DialogMessage = {
      v: 1,
      kind: fields.kind,
      type: fields.type,
      from: this.address,
      to: dialog.peer,
      dialog: dialog.id,
      id: newId(),
      ts: Date.now(),
      ...(fields.re ? { re: fields.re } : {}),
      reply: dialog.localSubject ?? this.subject,
      body: fields.body ?? null,
      ...(fields.error ? { error: fields.error } : {}),
    };
    const bytes = Buffer.from(JSON.stringify(message));
    return { id: message.id, bytes: dialog.sealer.seal(this.#o.key.signProtocol(bytes), bytes) };
  }

  /** Runs every check on an envelope; returns the message or the reason to drop it. */
  async check(data: Uint8Array): Promise<{ message: CheckedMessage; publicKey: Uint8Array } | { drop: DropReason; detail: string; from?: string }> {
    if (data.length > this.#o.maxMessageBytes) return { drop: "oversized", detail: `${data.length} bytes` };
    let opened: { signature: Uint8Array; message: Uint8Array };
    try {
      opened = this.#opener.open(data);
    } catch (err) {
      return { drop: "undecryptable", detail: err instanceof EnvelopeError ? err.message : String(err) };
    }
    let parsed: DialogMessage;
    try {
      parsed = JSON.parse(Buffer.from(opened.message).toString("utf8"));
    } catch {
      return { drop: "malformed", detail: "not JSON" };
    }
    if (!checkDialogMessage.Check(parsed)) {
      const first = checkDialogMessage.Errors(parsed).First();
      return { drop: "malformed", detail: first ? `${first.path || "/"}: ${first.message}` : "schema" };
    }
    if (!withinDepth(parsed.body)) return { drop: "malformed", detail: "/body: nested too deep" };
    // Addresses made once here (the schema checked their shape); compared with === from now on.
    const message: CheckedMessage = { ...parsed, from: toAddress(parsed.from), to: toAddress(parsed.to) };
    if (message.to !== this.address) return { drop: "misaddressed", detail: `to ${message.to}` };
    // Cheap checks before the registry: a signature that is not the claimed sender's, a stale or a
    // replayed message cost no chain call.
    let signer: SignerCheck;
    try {
      signer = await checkSigner(message.from, opened.message, opened.signature, this.#o.directory);
    } catch (err) {
      return { drop: "directory-unavailable", detail: (err as Error).message };
    }
    if ("fail" in signer) {
      return signer.fail === "unregistered"
        ? { drop: "unregistered-sender", detail: message.from, from: message.from }
        : { drop: "bad-signature", detail: `claims ${message.from}` };
    }
    const skew = Math.abs(Date.now() - message.ts);
    if (skew > this.#o.clockWindowMs) return { drop: "stale", detail: `${skew} ms off` };
    const seen = this.#replay.remember(message.from, message.id, message.ts);
    if (seen === "replayed") return { drop: "replayed", detail: message.id };
    if (seen === "full")
      return { drop: "flooding", detail: `no room for another message of ${message.from} within the time window (at most ${this.#replay.perPeer} per sender)` };
    return { message, publicKey: signer.publicKey };
  }

  /** A sealed message that came over a dialog's own transport (its direct channel): checked like any other. */
  receiveDirect(dialog: Dialog, data: Uint8Array, respond?: (data: Uint8Array) => void): Promise<void> {
    return this.#receiveSafely(data, respond, dialog);
  }

  drop(reason: DropReason, detail: string, message?: DialogMessage): void {
    this.#o.log.warn({ reason, detail, from: message?.from, type: message?.type }, "dialog message dropped");
    this.emit("dropped", { reason, detail });
  }

  forget(dialog: Dialog): void {
    if (!this.#dialogs.delete(dialog.id)) return;
    const peer = dialog.peer;
    const n = (this.#perPeer.get(peer) ?? 1) - 1;
    if (n > 0) this.#perPeer.set(peer, n);
    else this.#perPeer.delete(peer);
  }

  #add(dialog: Dialog): void {
    this.#dialogs.set(dialog.id, dialog);
    const peer = dialog.peer;
    this.#perPeer.set(peer, (this.#perPeer.get(peer) ?? 0) + 1);
  }

  /** Says no to a new dialog, sealed to the (verified) sender when it asked for an answer. */
  #refuse(message: CheckedMessage, publicKey: Uint8Array, respond: ((data: Uint8Array) => void) | undefined, code: string, detail: string): void {
    if (message.kind === "request" && respond) {
      const dialog = new Dialog(this, message.dialog, message.from, publicKey, message.reply ?? subjectOf(message.from));
      respond(this.seal(dialog, errorReply(message, { code, message: detail })).bytes);
    }
    this.drop("capacity", detail, message);
  }

  /** The last line of defence: whatever one peer's message does, the others are still served. */
  async #receiveSafely(data: Uint8Array, respond: ((data: Uint8Array) => void) | undefined, inboxOf?: Dialog): Promise<void> {
    try {
      await this.#receive(data, respond, inboxOf);
    } catch (err) {
      this.#o.log.error({ err, code: (err as { code?: unknown })?.code ?? "INTERNAL" }, "handling a dialog message failed");
      this.emit("failed", err);
    }
  }

  /** `inboxOf`: the dialog whose private inbox the message came in on; only that dialog's messages belong there. */
  async #receive(data: Uint8Array, respond: ((data: Uint8Array) => void) | undefined, inboxOf?: Dialog): Promise<void> {
    const checked = await this.check(data);
    if ("drop" in checked) {
      // The only answer we can give an unregistered sender is in clear: we have no key to seal to.
      if (checked.drop === "unregistered-sender" && respond) {
        respond(plainRefusal("SENDER_UNREGISTERED", `${checked.from} is not a registered identity; register it first`));
      }
      return this.drop(checked.drop, checked.detail);
    }
    const { message, publicKey } = checked;
    if (message.kind === "response") return this.drop("unexpected", "a response outside a request", message);

    if (inboxOf && (message.dialog !== inboxOf.id || message.from !== inboxOf.peer)) {
      return this.drop("wrong-peer", `a message for dialog ${message.dialog} on the inbox of ${inboxOf.id}`, message);
    }
    let dialog = this.#dialogs.get(message.dialog);
    if (dialog && dialog.peer !== message.from) {
      return this.drop("wrong-peer", `dialog ${message.dialog} belongs to ${dialog.peer}`, message);
    }
    if (!dialog) {
      if (inboxOf) return this.drop("unexpected", `dialog ${message.dialog} is closed`, message);
      if (!this.#onDialog) return this.drop("unexpected", `unknown dialog ${message.dialog}`, message);
      if (this.#dialogs.size >= this.#o.maxDialogs)
        return this.#refuse(message, publicKey, respond, "TOO_MANY_DIALOGS", `${this.#dialogs.size} dialogs open; try later`);
      const ofPeer = this.#perPeer.get(message.from) ?? 0;
      const tooMany = `${message.from} has ${ofPeer} dialogs open, the most one peer may; close one first`;
      if (ofPeer >= this.#o.maxDialogsPerPeer) return this.#refuse(message, publicKey, respond, "TOO_MANY_DIALOGS", tooMany);
      dialog = new Dialog(this, message.dialog, message.from, publicKey, message.reply ?? subjectOf(message.from));
      this.#add(dialog);
      this.#onDialog(dialog);
    }
    dialog.touch();
    if (message.kind === "request" && respond) await dialog.answer(message, respond);
    else dialog.deliver(message);
  }

  #sweep(): void {
    this.#replay.sweep();
    const cutoff = Date.now() - this.#o.idleTimeoutMs;
    for (const dialog of [...this.#dialogs.values()]) if (dialog.lastActivity < cutoff) dialog.close();
  }
}

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
