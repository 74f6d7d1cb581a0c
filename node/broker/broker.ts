import {
  connect,
  credsAuthenticator,
  ErrorCode,
  nkeyAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
  type Msg,
  type Subscription,
  NatsError,
} from "nats";
import type { BrokerCredentials } from "../config/broker-credentials";
import { MystError } from "../errors/MystError";
import { silentLogger, type Logger } from "../log/logger";

export type BrokerErrorCode =
  | "BROKER_CLOSED"
  | "BROKER_CONFIG"
  | "BROKER_ERROR"
  | "BROKER_UNAVAILABLE"
  | "BROKER_UNAUTHORIZED"
  | "INVALID_SUBJECT"
  | "NO_RESPONDERS"
  | "REQUEST_TIMEOUT";

export class BrokerError extends MystError<BrokerErrorCode> {}

/** A subject that is not a plain NATS subject; nothing is sent or subscribed. */
export class InvalidSubjectError extends BrokerError {
  constructor(
    readonly subject: string,
    why: string,
  ) {
    super("INVALID_SUBJECT", `${JSON.stringify(subject.slice(0, 80))} is not a valid subject: ${why}`);
  }
}

/** Longest subject the node sends to or listens on. */
export const MAX_SUBJECT_LENGTH = 255;
/** One subject token: no whitespace, no control characters, no wildcards, nothing NATS treats as syntax. */
const TOKEN = /^[A-Za-z0-9_$:-]+$/;

/**
 * Checks a subject before it reaches the wire. nats.js writes subjects into its protocol lines
 * as given, so a subject from a peer with "\r\n" in it would be the peer's own protocol commands
 * on our connection. `wildcards` allows `*` tokens and a final `>` (subscriptions only).
 */
export function checkSubject(subject: unknown, options: { wildcards?: boolean } = {}): string {
  if (typeof subject !== "string") throw new InvalidSubjectError(String(subject), "not a string");
  if (subject.length === 0 || subject.length > MAX_SUBJECT_LENGTH)
    throw new InvalidSubjectError(subject, `length ${subject.length}, allowed 1-${MAX_SUBJECT_LENGTH}`);
  const tokens = subject.split(".");
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (options.wildcards && (t === "*" || (t === ">" && i === tokens.length - 1))) continue;
    if (!TOKEN.test(t))
      throw new InvalidSubjectError(subject, t === "" ? "empty token" : `token ${JSON.stringify(t.slice(0, 40))} has characters outside [A-Za-z0-9_$:-]`);
  }
  return subject;
}

/**
 * The reply subjects nats.js makes for a request: `_INBOX.<nuid>` and, for the shared request
 * subscription, `_INBOX.<nuid>.<token>`. The only subjects this node answers on: a request that
 * names any other reply subject (`$JS.API.…`, `$KV.…`, `$SYS.…`, another service's subject) is
 * dropped, or the answer would be the requester's words published with this node's rights.
 */
const INBOX_REPLY = /^_INBOX\.[A-Za-z0-9]{1,64}(\.[A-Za-z0-9]{1,64})?$/;

/** Whether `reply` is a request inbox this node may answer on (see INBOX_REPLY). */
export function isInboxReply(reply: string): boolean {
  return INBOX_REPLY.test(reply);
}

/** The nats.js connection options that present `credentials` (none: the broker's default role). */
export function authOptions(credentials: BrokerCredentials | undefined): Partial<ConnectionOptions> {
  switch (credentials?.kind) {
    case undefined:
      return {};
    case "password":
      return { user: credentials.user, pass: credentials.pass };
    case "token":
      return { token: credentials.token };
    case "nkey":
      return { authenticator: nkeyAuthenticator(credentials.seed) };
    case "creds":
      return { authenticator: credsAuthenticator(credentials.creds) };
  }
}

export interface BrokerOptions {
  /** NATS server URLs; several for a cluster (the client fails over between them). */
  servers: string[];
  /** Connection name shown by the server's monitoring (and to its operator): never an identity. */
  name?: string;
  /** How long the first connection may take. Default 3 s. */
  connectTimeoutMs?: number;
  /** Pause between reconnect attempts. Default 250 ms. */
  reconnectWaitMs?: number;
  /** Who this connection logs in as. Default none: the broker's default role (a node, see docs/security.md). */
  credentials?: BrokerCredentials;
  /** Where dropped requests are reported. Default silent. */
  log?: Logger;
}

export type BrokerStatus = "connected" | "reconnecting" | "closed";

/** A message handler; `respond` is set when the sender asked for a reply. */
export type BrokerHandler = (data: Uint8Array, respond: ((data: Uint8Array) => void) | undefined, subject: string) => void;

/**
 * The node's connection to the NATS broker: subscribe, publish, request. It reconnects forever
 * (resubscribing by itself) and drains on stop. Nothing here knows about dialogs or sessions.
 */
export class Broker {
  readonly #options: BrokerOptions;
  #nc?: NatsConnection;
  #status: BrokerStatus = "closed";
  #statusListeners = new Set<(status: BrokerStatus) => void>();

  constructor(options: BrokerOptions) {
    if (options.servers.length === 0) throw new BrokerError("BROKER_CONFIG", "no broker URL given");
    this.#options = options;
  }

  get status(): BrokerStatus {
    return this.#status;
  }

  async start(): Promise<void> {
    if (this.#nc) return;
    try {
      this.#nc = await connect({
        servers: this.#options.servers,
        name: this.#options.name,
        timeout: this.#options.connectTimeoutMs ?? 3000,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: this.#options.reconnectWaitMs ?? 250,
        pingInterval: 10_000,
        // No Error captured per request for its stack: it cost as much as a dialog message's envelope.
        noAsyncTraces: true,
        ...authOptions(this.#options.credentials),
      });
    } catch (err) {
      if (err instanceof NatsError && (err.code === ErrorCode.AuthorizationViolation || err.code === ErrorCode.AuthenticationExpired)) {
        throw new BrokerError(
          "BROKER_UNAUTHORIZED",
          `the NATS server at ${this.#options.servers.join(", ")} refused this node's credentials (${err.message})`,
          {
            cause: err,
          },
        );
      }
      throw new BrokerError("BROKER_UNAVAILABLE", `no NATS server answered at ${this.#options.servers.join(", ")} (is nats-server running?)`, { cause: err });
    }
    this.#setStatus("connected");
    void this.#watch(this.#nc);
  }

  async stop(): Promise<void> {
    const nc = this.#nc;
    if (!nc) return;
    this.#nc = undefined;
    if (!nc.isClosed()) {
      await nc.drain().catch(() => nc.close());
    }
    this.#setStatus("closed");
  }

  /** Calls `listener` on every status change; returns the unsubscribe function. */
  onStatus(listener: (status: BrokerStatus) => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  /**
   * Subscribes at once on this side; the server learns of it a little later. Before telling a
   * peer to send (or announcing anything), `await flush()`: until then the peer may get
   * NO_RESPONDERS. Callers flush once after all their subscriptions (see `Dialogs.start`).
   */
  subscribe(subject: string, handler: BrokerHandler, options: { queue?: string } = {}): { unsubscribe(): void } {
    checkSubject(subject, { wildcards: true });
    if (options.queue !== undefined) checkSubject(options.queue);
    const sub: Subscription = this.#conn().subscribe(subject, {
      queue: options.queue,
      callback: (err, msg: Msg) => {
        if (err) return;
        if (msg.reply && !isInboxReply(msg.reply)) {
          (this.#options.log ?? silentLogger).warn(
            { subject: msg.subject, reply: msg.reply.slice(0, 80) },
            "dropped a request whose reply subject is not a request inbox (_INBOX.…)",
          );
          return;
        }
        const respond = msg.reply ? (data: Uint8Array) => void msg.respond(data) : undefined;
        handler(msg.data, respond, msg.subject);
      },
    });
    return { unsubscribe: () => sub.unsubscribe() };
  }

  /** Throws InvalidSubjectError (nothing sent) for anything but a plain subject. */
  publish(subject: string, data: Uint8Array): void {
    checkSubject(subject);
    this.#conn().publish(subject, data);
  }

  /** Request/reply; a missing responder and a timeout become typed errors. */
  async request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    checkSubject(subject);
    try {
      return (await this.#conn().request(subject, data, { timeout: timeoutMs })).data;
    } catch (err) {
      if (err instanceof NatsError && err.code === ErrorCode.NoResponders) {
        throw new BrokerError("NO_RESPONDERS", `nobody listens on ${subject}`, { cause: err });
      }
      if (err instanceof NatsError && err.code === ErrorCode.Timeout) {
        throw new BrokerError("REQUEST_TIMEOUT", `no answer on ${subject} within ${timeoutMs} ms`, { cause: err });
      }
      throw new BrokerError("BROKER_ERROR", `request on ${subject} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Waits until the server has seen everything published so far (e.g. before announcing "ready"). */
  async flush(): Promise<void> {
    await this.#conn().flush();
  }

  #conn(): NatsConnection {
    if (!this.#nc || this.#nc.isClosed()) throw new BrokerError("BROKER_CLOSED", "the broker connection is not open");
    return this.#nc;
  }

  async #watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnecting") this.#setStatus("reconnecting");
      else if (s.type === "reconnect") this.#setStatus("connected");
      else if (s.type === "error" && s.data === ErrorCode.PermissionsViolation) {
        // The broker refused a subscription or a publish: the operator's permissions and the protocol disagree.
        const ctx = (s as { permissionContext?: { operation: string; subject: string } }).permissionContext;
        (this.#options.log ?? silentLogger).error(
          { code: "BROKER_PERMISSION", operation: ctx?.operation, subject: ctx?.subject },
          "the broker refused this connection a subject (permissions violation)",
        );
      }
    }
  }

  #setStatus(status: BrokerStatus): void {
    if (this.#status === status) return;
    this.#status = status;
    for (const l of this.#statusListeners) l(status);
  }
}
