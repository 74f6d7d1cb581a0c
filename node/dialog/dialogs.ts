import { EventEmitter } from "node:events";
import type { Broker } from "../broker/broker";
import type { IdentityKey } from "../identity/key";
import { checkSigner, type PublicKeyDirectory, type SignerCheck } from "../identity/protocol-signature";
import { silentLogger, type Logger } from "../log/logger";
import { Dialog, DialogError, errorReply } from "./dialog";
import { EnvelopeError, Opener, plainRefusal } from "./envelope";
import { checkDialogMessage, withinDepth, type DialogMessage } from "./message";
import { randomBytes } from "./random-pool";
import { ReplayCache } from "./replay-cache";
import { toAddress, type Address } from "../values/address";

export { Dialog, DialogError, PeerError, peerCodeOf, type DialogErrorCode, type DialogTransport } from "./dialog";

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

const newId = () => randomBytes(16).toString("hex");

/** A message that passed `check`: its addresses made `Address` once. */
type CheckedMessage = DialogMessage & { from: Address; to: Address };

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
