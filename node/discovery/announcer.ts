import type { Broker } from "../broker/broker";
import type { IdentityKey } from "../identity/key";
import { silentLogger, type Logger } from "../log/logger";
import { signProposal, type Proposal } from "../proposal/proposal";
import { DISCOVERY_SUBJECTS, signUnregister, type AnnounceReply } from "./announcements";
import { AbortError, retry, retryDelayMs } from "../lifecycle/retry";

export interface AnnouncerOptions {
  broker: Broker;
  key: IdentityKey;
  /** The proposal to announce, without times (the announcer stamps createdAt/expiresAt). */
  proposal: () => Omit<Proposal, "createdAt" | "expiresAt">;
  /** How often to re-announce. Default 30 s; each signed proposal lives three periods. */
  pingMs?: number;
  /** Backoff bounds while discovery refuses (e.g. identity not registered yet) or the broker is down. */
  retryMinMs?: number;
  retryMaxMs?: number;
  log?: Logger;
}

export type AnnouncerState = "idle" | "announcing" | "announced" | "retrying";

/**
 * The provider side of discovery: announces a freshly signed proposal when the service starts,
 * re-announces (ping) while it runs, unregisters on stop, and retries with backoff while its
 * identity is not yet registered or no discovery replica / broker answers.
 */
export class ProposalAnnouncer {
  state: AnnouncerState = "idle";
  lastError?: string;
  /** The proposal as last announced. */
  current?: Proposal;
  readonly #o: Required<Omit<AnnouncerOptions, "log">> & { log: Logger };
  #timer?: NodeJS.Timeout;
  #stopped = true;
  /** Ends the retrying when the announcer stops. */
  #stop = new AbortController();
  #inFlight = false;
  #refreshAfter = false;

  constructor(options: AnnouncerOptions) {
    this.#o = {
      ...options,
      pingMs: options.pingMs ?? 30_000,
      retryMinMs: options.retryMinMs ?? 1000,
      retryMaxMs: options.retryMaxMs ?? 30_000,
      log: options.log ?? silentLogger,
    };
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#stop = new AbortController();
    void this.#keepAnnounced(DISCOVERY_SUBJECTS.register);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stop.abort();
    clearTimeout(this.#timer);
    await this.#unregister();
  }

  /**
   * Stops announcing and unregisters even if this announcer never announced: a provider that
   * starts with the service withdrawn (a cap reached, a schedule closed) takes back what an
   * earlier run may have left listed.
   */
  async withdraw(): Promise<void> {
    if (!this.#stopped) return this.stop();
    await this.#unregister();
  }

  async #unregister(): Promise<void> {
    const serviceType = this.#o.proposal().serviceType;
    try {
      this.#o.broker.publish(DISCOVERY_SUBJECTS.unregister, Buffer.from(JSON.stringify(signUnregister(this.#o.key, serviceType))));
      await this.#o.broker.flush();
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message }, "could not unregister the proposal; it expires by itself");
    }
    this.state = "idle";
  }

  /** Announces again now (the proposal changed) rather than at the next ping; nothing while stopped or still registering. */
  refresh(): void {
    if (this.#stopped || this.state !== "announced") return;
    // One announcement at a time: one under way is followed by another at once.
    if (this.#inFlight) {
      this.#refreshAfter = true;
      return;
    }
    clearTimeout(this.#timer);
    void this.#keepAnnounced(DISCOVERY_SUBJECTS.ping);
  }

  /** Signs the proposal now, valid for three ping periods. */
  fresh(): Proposal {
    const now = Date.now();
    return { ...this.#o.proposal(), createdAt: now, expiresAt: now + 3 * this.#o.pingMs } as Proposal;
  }

  /**
   * Announces on `first` (a ping, or the first registration), then, while discovery refuses or does
   * not answer, registers again with backoff until it takes the proposal; then pings on schedule.
   */
  async #keepAnnounced(first: string): Promise<void> {
    this.#inFlight = true;
    try {
      await this.#announceUntilTaken(first);
    } finally {
      this.#inFlight = false;
    }
  }

  async #announceUntilTaken(first: string): Promise<void> {
    const { signal } = this.#stop;
    if (this.state !== "announced") this.state = "announcing";
    let proposal: Proposal;
    try {
      proposal = await retry((attempt) => this.#announceOnce(attempt === 1 ? first : DISCOVERY_SUBJECTS.register, signal), {
        attempts: Number.POSITIVE_INFINITY,
        baseMs: this.#o.retryMinMs,
        maxMs: this.#o.retryMaxMs,
        signal,
        onFailure: (err, attempt) => {
          if (signal.aborted) return;
          this.state = "retrying";
          const { code, message } = err as AnnounceRefused;
          this.lastError = `${code}: ${message}`;
          const retryInMs = retryDelayMs(attempt, { baseMs: this.#o.retryMinMs, maxMs: this.#o.retryMaxMs });
          this.#o.log.warn({ code, message, retryInMs }, "proposal not announced; retrying");
        },
      });
    } catch (err) {
      // Only a stop ends the retrying; anything else is a bug worth seeing.
      if (!signal.aborted) this.#o.log.error({ err: (err as Error).message }, "announcing stopped unexpectedly");
      return;
    }
    if (signal.aborted) return;
    this.current = proposal;
    this.state = "announced";
    this.lastError = undefined;
    const soon = this.#refreshAfter;
    this.#refreshAfter = false;
    this.#timer = setTimeout(() => void this.#keepAnnounced(DISCOVERY_SUBJECTS.ping), soon ? 0 : this.#o.pingMs);
    this.#timer.unref();
  }

  /** One announcement: the proposal discovery took, or an `AnnounceRefused`. */
  async #announceOnce(subject: string, signal: AbortSignal): Promise<Proposal> {
    if (signal.aborted) throw new AbortError("the announcer stopped");
    const proposal = this.fresh();
    const body = Buffer.from(JSON.stringify(signProposal(this.#o.key, proposal)));
    let reply: AnnounceReply;
    try {
      reply = JSON.parse(Buffer.from(await this.#o.broker.request(subject, body, 3000)).toString("utf8"));
    } catch (err) {
      reply = { ok: false, code: (err as { code?: string }).code ?? "BROKER_ERROR", message: (err as Error).message };
    }
    if (!reply.ok) throw new AnnounceRefused(reply.code, reply.message);
    return proposal;
  }
}

/** Discovery refused an announcement (`code` is its code: e.g. the identity is not registered yet), or no replica answered. */
class AnnounceRefused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
